// N-API glue for core/fsat: directory-fd file system calls for commit and removal.
#pragma once

#include <napi.h>

namespace nsbox {

// Adds openDir, openDirAt, openParentDir, openFileAt, createFileAt, listDir, statFd, readLinkAt, getXattrFd,
// mkdirAt, linkAt, symlinkAt, setAttrsFd, setLinkAttrsAt, copyData, removeTree, and for cp
// openInRoot, statAt, unlinkAt and mountOverlayFd to exports.
void RegisterFsAt(Napi::Env env, Napi::Object exports);

}  // namespace nsbox
