// Terminal helpers for `tty: true` containers (the pair itself is opened by the child, in
// the container's own devpts instance: see child.cc).
#pragma once

namespace nsbox {

int resize_pty(int master, unsigned short cols, unsigned short rows);  // 0 or errno

}  // namespace nsbox
