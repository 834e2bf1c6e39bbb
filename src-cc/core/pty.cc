#include "core/pty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace nsbox {

PtyPair open_pty(unsigned short cols, unsigned short rows) {
  PtyPair p;
  p.master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (p.master < 0) {
    p.err = errno;
    p.sys = "posix_openpt";
    return p;
  }
  // TIOCGPTPEER opens the slave through the master: no path lookup that could be raced.
  if (unlockpt(p.master) < 0 ||
      (p.slave = ioctl(p.master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
    p.err = errno;
    p.sys = p.slave < 0 ? "ioctl(TIOCGPTPEER)" : "unlockpt";
    close(p.master);
    p.master = -1;
    return p;
  }
  if (int err = resize_pty(p.master, cols, rows)) {
    p.err = err;
    p.sys = "ioctl(TIOCSWINSZ)";
    close(p.master);
    close(p.slave);
    p.master = p.slave = -1;
  }
  return p;
}

int resize_pty(int master, unsigned short cols, unsigned short rows) {
  struct winsize ws = {};
  ws.ws_col = cols;
  ws.ws_row = rows;
  return ioctl(master, TIOCSWINSZ, &ws) < 0 ? errno : 0;
}

}  // namespace nsbox
