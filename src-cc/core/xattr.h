// Extended attributes read on the host (never through a container root).
#pragma once

#include <stddef.h>
#include <sys/types.h>

namespace nsbox {

// lgetxattr: the attribute's length, or -errno (-ENODATA: no such attribute). A symlink's own
// attribute, never its target's.
ssize_t get_xattr_nofollow(const char* path, const char* name, void* buf, size_t size);

}  // namespace nsbox
