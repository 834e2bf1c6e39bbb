// N-API glue for core/fsat: directory-fd file system calls for commit and removal.
#pragma once

#include <napi.h>

namespace nsbox {

// Adds openDir, openDirAt, openParentDir, openFileAt, createFileAt, listDir, listDirAsync, statFd, readLinkAt, getXattrFd,
// mkdirAt, linkAt, symlinkAt, setAttrsFd, setLinkAttrsAt, copyData, removeTree, removeTreeAsync,
// writeFileAsync, and for cp
// openInRoot, statAt, unlinkAt and mountOverlayFd to exports.
void RegisterFsAt(Napi::Env env, Napi::Object exports);

// Whether JS may still run in `env`: false once a worker is being torn down (process.exit,
// terminate()), when any call that could run JS fails, and node-addon-api turns such a failure
// into a fatal error. Work finishing on the loop then (a pool job, a start) must not call back.
bool env_can_run_js(napi_env env);

}  // namespace nsbox
