// Stdio plumbing for a start (see stdio.h).

#include "binding/stdio.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace nsbox {

bool setup_stdio(Reader& r, Napi::Object js, Plan& plan, Stdio& io) {
  Napi::Value tty = js.Get("tty");
  if (tty.IsObject()) {
    // The pair itself is made by the child in the container's devpts (child.cc, kOpenPty).
    Napi::Object t = tty.As<Napi::Object>();
    plan.pty_cols = static_cast<unsigned short>(r.Num(t, "cols"));
    plan.pty_rows = static_cast<unsigned short>(r.Num(t, "rows"));
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, io.pty_socket) < 0) {
      io.err = errno;
      io.sys = "socketpair";
      return false;
    }
    io.pty_socket[1] = io.above_stdio(io.pty_socket[1]);
    plan.pty_socket = io.pty_socket[1];
    return true;
  }
  std::vector<std::string> modes = r.Strs(js, "stdio");
  if (modes.size() != 3) {
    r.Fail("stdio must list three modes");
    return false;
  }
  for (int i = 0; i < 3; i++) {
    if (modes[i] == "inherit") continue;
    if (modes[i] == "ignore") {
      if (io.devnull < 0) io.devnull = io.above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
      if (io.devnull < 0) {
        io.err = errno;
        io.sys = "open";
        return false;
      }
      io.child[i] = io.devnull;
    } else if (modes[i] == "pipe") {
      int fds[2];
      if (pipe2(fds, O_CLOEXEC) < 0) {
        io.err = errno;
        io.sys = "pipe2";
        return false;
      }
      // stdin: the child reads; stdout, stderr: the child writes.
      int child_end = i == 0 ? fds[0] : fds[1];
      io.parent[i] = i == 0 ? fds[1] : fds[0];
      io.child[i] = io.above_stdio(child_end);
    } else if (modes[i] == "fd") {
      // An fd of the caller's (child_process's number and stream forms): the child gets a
      // duplicate above 2, closed here after the start like a pipe's end, the caller's own kept.
      Napi::Value fds = js.Get("stdioFds");
      Napi::Value fd = fds.IsArray() ? fds.As<Napi::Array>().Get(i) : fds;
      if (!fd.IsNumber()) {
        r.Fail("stdioFds must give an fd for each 'fd' mode");
        return false;
      }
      io.child[i] = fcntl(fd.As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 3);
      if (io.child[i] < 0) {
        io.err = errno;
        io.sys = "fcntl";
        io.child[i] = i;
        return false;
      }
    } else {
      r.Fail("stdio modes are inherit, pipe, ignore or fd");
      return false;
    }
  }
  return true;
}

}  // namespace nsbox
