// N-API glue for core/extract: the ExtractWriter class, whose batches run on libuv's thread pool.
#pragma once

#include <napi.h>

namespace nsbox {

// Adds the ExtractWriter constructor to exports.
void RegisterExtract(Napi::Env env, Napi::Object exports);

}  // namespace nsbox
