#include "core/init_image.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/syscall.h>
#include <unistd.h>

// From the assembly file scripts/embed-init.js generates at build time.
extern "C" const unsigned char nsbox_init_image[];
extern "C" const unsigned char nsbox_init_image_end[];

namespace nsbox {

int make_init_image() {
  // A raw syscall: memfd_create's glibc wrapper is newer than the oldest glibc we run on.
  int fd = static_cast<int>(syscall(SYS_memfd_create, "nsbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd < 0) return -errno;
  const unsigned char* p = nsbox_init_image;
  while (p < nsbox_init_image_end) {
    ssize_t n = write(fd, p, static_cast<size_t>(nsbox_init_image_end - p));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      close(fd);
      return -err;
    }
    p += n;
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

}  // namespace nsbox
