#include "core/hostmount.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace nsbox {

HostMountResult mount_overlay(const std::vector<std::string>& lower, const std::string& upper,
                              const std::string& work, const std::string& target, bool readonly) {
  HostMountResult r;
  int fsfd = static_cast<int>(syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC));
  if (fsfd < 0) return {errno, "fsopen"};
  auto set = [&](const char* key, const std::string& value) {
    return syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, key, value.c_str(), 0) == 0;
  };
  // fsconfig takes each value whole, so only overlay's own ':' separator needs escaping.
  std::string lowerdir;
  for (const std::string& l : lower) {
    if (!lowerdir.empty()) lowerdir += ':';
    for (char ch : l) {
      if (ch == ':' || ch == '\\') lowerdir += '\\';
      lowerdir += ch;
    }
  }
  bool ok = set("lowerdir", lowerdir);
  if (!upper.empty()) ok = ok && set("upperdir", upper) && set("workdir", work);
  if (!ok || syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    r = {errno, "fsconfig"};
    close(fsfd);
    return r;
  }
  int mfd = static_cast<int>(
      syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, readonly ? MOUNT_ATTR_RDONLY : 0));
  close(fsfd);
  if (mfd < 0) return {errno, "fsmount"};
  if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0)
    r = {errno, "move_mount"};
  close(mfd);
  return r;
}

HostMountResult unmount(const std::string& target) {
  if (umount2(target.c_str(), UMOUNT_NOFOLLOW) < 0) return {errno, "umount2"};
  return {};
}

}  // namespace nsbox
