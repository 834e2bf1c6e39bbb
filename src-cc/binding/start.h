// The start path: spawn (attached or detached), spawnAsync and exec.
#pragma once

#include <napi.h>

namespace nsbox {

Napi::Value Spawn(const Napi::CallbackInfo& info);
Napi::Value SpawnAsync(const Napi::CallbackInfo& info);
Napi::Value Exec(const Napi::CallbackInfo& info);

}  // namespace nsbox
