// A container's disk-limited write layer (limits.disk): a filesystem image attached to a loop
// device, and detached mounts of it for commit. Nothing here is ever attached to a path on
// the host: a detached mount goes with its fd, and an autoclear loop device with its last
// user, so a killed supervisor leaves neither behind.
#pragma once

#include <cstdint>
#include <string>

namespace nsbox {

struct LoopResult {
  int fd = -1;         // the loop device, O_CLOEXEC; the caller closes it
  std::string device;  // /dev/loopN
  int err = 0;
  const char* sys = "";
};

// Attaches `file` (never through a symlink) to a free loop device with LO_FLAGS_AUTOCLEAR:
// the device is detached by the kernel once its last opener (this fd, a mount) is gone.
LoopResult attach_loop(const std::string& file, bool readonly);

struct DetachedMount {
  int fd = -1;  // a mount in no namespace, O_CLOEXEC; gone with its last fd
  int err = 0;
  const char* sys = "";
};

// A new superblock of `fstype` on the block device `source`, mounted nowhere, with `attrs`
// (MOUNT_ATTR_*). `readonly` also makes the superblock read-only.
DetachedMount mount_detached(const std::string& fstype, const std::string& source, bool readonly, uint64_t attrs);

}  // namespace nsbox
