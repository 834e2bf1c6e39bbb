// Small calls on the host for JS: pty size, host mounts, xattrs, device programs, pidfds,
// loop devices, detached mounts. Each checks its arguments and calls into core/.
#pragma once

#include <napi.h>

namespace nsbox {

Napi::Value ResizePty(const Napi::CallbackInfo& info);
Napi::Value MountOverlay(const Napi::CallbackInfo& info);
Napi::Value RunInUserns(const Napi::CallbackInfo& info);
Napi::Value Unmount(const Napi::CallbackInfo& info);
Napi::Value GetXattr(const Napi::CallbackInfo& info);
Napi::Value AttachDeviceProgram(const Napi::CallbackInfo& info);
Napi::Value PidfdOpen(const Napi::CallbackInfo& info);
Napi::Value CloseFd(const Napi::CallbackInfo& info);
Napi::Value AdoptFd(const Napi::CallbackInfo& info);
Napi::Value PidfdAlive(const Napi::CallbackInfo& info);
Napi::Value TryLockFd(const Napi::CallbackInfo& info);
Napi::Value AttachLoop(const Napi::CallbackInfo& info);
Napi::Value MountDetached(const Napi::CallbackInfo& info);

}  // namespace nsbox
