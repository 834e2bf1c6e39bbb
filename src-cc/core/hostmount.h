// Mounts made on the host, for inspecting or committing a stopped container's workspace.
// Container mounts never go through here: they live in the container's mount namespace.
#pragma once

#include <string>
#include <vector>

namespace nsbox {

struct HostMountResult {
  int err = 0;  // errno, 0 on success
  const char* sys = "";
};

// `lowerdir` comes escaped (src/plan.ts overlayLowerdir).
HostMountResult mount_overlay(const std::string& lowerdir, const std::string& upper, const std::string& work, const std::string& target,
                              bool readonly);
HostMountResult unmount(const std::string& target);

}  // namespace nsbox
