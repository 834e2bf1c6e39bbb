#include "core/pty.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <termios.h>

namespace nsbox {

int resize_pty(int master, unsigned short cols, unsigned short rows) {
  struct winsize ws = {};
  ws.ws_col = cols;
  ws.ws_row = rows;
  return ioctl(master, TIOCSWINSZ, &ws) < 0 ? errno : 0;
}

}  // namespace nsbox
