#include "core/loopdev.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace nsbox {
namespace {

// Another process may take the device LOOP_CTL_GET_FREE named before we configure it.
constexpr int kLoopAttempts = 16;

void close_fd(int fd) {
  if (fd >= 0) close(fd);
}

}  // namespace

LoopResult attach_loop(const std::string& file, bool readonly) {
  LoopResult r;
  int backing = open(file.c_str(), (readonly ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC);
  if (backing < 0) return {-1, "", errno, "open"};
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) {
    r = {-1, "", errno, "open /dev/loop-control"};
    close_fd(backing);
    return r;
  }
  r = {-1, "", EBUSY, "ioctl LOOP_CONFIGURE"};
  for (int attempt = 0; attempt < kLoopAttempts; attempt++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      r = {-1, "", errno, "ioctl LOOP_CTL_GET_FREE"};
      break;
    }
    char dev[32];
    snprintf(dev, sizeof dev, "/dev/loop%d", n);
    int lfd = open(dev, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (lfd < 0) {
      r = {-1, "", errno, "open /dev/loopN"};
      if (errno == ENOENT || errno == ENXIO) continue;  // taken and removed meanwhile
      break;
    }
    struct loop_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fd = static_cast<uint32_t>(backing);
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (readonly ? LO_FLAGS_READ_ONLY : 0);
    // What losetup -a shows: the image's path, cut to the field's size.
    snprintf(reinterpret_cast<char*>(cfg.info.lo_file_name), LO_NAME_SIZE, "%s", file.c_str());
    if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
      r = {lfd, dev, 0, ""};
      break;
    }
    r = {-1, "", errno, "ioctl LOOP_CONFIGURE"};
    close_fd(lfd);
    if (r.err != EBUSY) break;
  }
  close_fd(ctl);
  close_fd(backing);  // the loop device holds the file itself
  return r;
}

DetachedMount mount_detached(const std::string& fstype, const std::string& source, bool readonly, uint64_t attrs) {
  DetachedMount r;
  int fsfd = static_cast<int>(syscall(SYS_fsopen, fstype.c_str(), FSOPEN_CLOEXEC));
  if (fsfd < 0) return {-1, errno, "fsopen"};
  bool ok = syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "source", source.c_str(), 0) == 0;
  if (ok && readonly) ok = syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_FLAG, "ro", nullptr, 0) == 0;
  if (!ok || syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    r = {-1, errno, "fsconfig"};
    close_fd(fsfd);
    return r;
  }
  int mfd = static_cast<int>(syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, static_cast<unsigned>(attrs)));
  if (mfd < 0) r = {-1, errno, "fsmount"};
  else r = {mfd, 0, ""};
  close_fd(fsfd);
  return r;
}

}  // namespace nsbox
