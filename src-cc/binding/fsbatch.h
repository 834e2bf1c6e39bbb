// fsBatchAsync: small file system calls in order, in one job of libuv's pool (fsbatch.cc);
// fsBatchSync: the same on the calling thread.
#pragma once

#include <napi.h>

namespace nsbox {

void RegisterFsBatch(Napi::Env env, Napi::Object exports);

}  // namespace nsbox
