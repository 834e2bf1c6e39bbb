// A pseudo-terminal pair for `tty: true` containers.
#pragma once

namespace nsbox {

struct PtyPair {
  int master = -1;
  int slave = -1;
  int err = 0;  // errno when opening failed
  const char* sys = "";
};

PtyPair open_pty(unsigned short cols, unsigned short rows);
int resize_pty(int master, unsigned short cols, unsigned short rows);  // 0 or errno

}  // namespace nsbox
