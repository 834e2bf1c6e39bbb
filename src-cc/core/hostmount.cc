#include "core/hostmount.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/fsat.h"

namespace nsbox {

HostMountResult mount_overlay(const std::string& lowerdir, const std::string& upper, const std::string& work, const std::string& target,
                              bool readonly) {
  HostMountResult r;
  FdResult m = mount_overlay_fd(lowerdir, upper, work, readonly ? MOUNT_ATTR_RDONLY : 0);
  if (m.fd < 0) return {m.error.err, m.error.sys};
  int mfd = m.fd;
  if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0) r = {errno, "move_mount"};
  close(mfd);
  return r;
}

HostMountResult unmount(const std::string& target) {
  if (umount2(target.c_str(), UMOUNT_NOFOLLOW) < 0) return {errno, "umount2"};
  return {};
}

}  // namespace nsbox
