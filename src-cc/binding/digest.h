// N-API glue: SHA-256 with Node's own OpenSSL, its updates on the thread pool.
#pragma once

#include <napi.h>

namespace nsbox {

// Adds the Sha256 constructor to exports.
void RegisterDigest(Napi::Env env, Napi::Object exports);

}  // namespace nsbox
