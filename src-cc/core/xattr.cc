#include "core/xattr.h"

#include <errno.h>
#include <sys/xattr.h>

namespace nsbox {

ssize_t get_xattr_nofollow(const char* path, const char* name, void* buf, size_t size) {
  ssize_t n = lgetxattr(path, name, buf, size);
  return n < 0 ? -errno : n;
}

}  // namespace nsbox
