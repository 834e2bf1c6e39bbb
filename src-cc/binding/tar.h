// N-API glue for core/tar and core/tar_import: ImportJob, TarParser, tarParseNumber.
#pragma once

#include <napi.h>

namespace nsbox {

// Adds ImportJob, TarParser and tarParseNumber to exports.
void RegisterTar(Napi::Env env, Napi::Object exports);

}  // namespace nsbox
