// killAllSync: the end of this environment's containers when JS is about to end it
// (process.exit(), the 'exit' event), synchronous and bounded in time.
#pragma once

#include <napi.h>

namespace nsbox {

// killAllSync(budgetMs) -> [{ pid, reaped, clean, code, signal, usage }]
Napi::Value KillAllSync(const Napi::CallbackInfo& info);

}  // namespace nsbox
