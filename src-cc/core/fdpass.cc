#include "core/fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

namespace nsbox {
namespace {

union Control {
  char buf[CMSG_SPACE(sizeof(int))];
  struct cmsghdr align;
};

// One byte of data: a message with only ancillary data is not delivered on every socket type.
void prepare(struct msghdr& msg, struct iovec& iov, char& byte, Control& control) {
  memset(&msg, 0, sizeof msg);
  memset(&control, 0, sizeof control);
  iov.iov_base = &byte;
  iov.iov_len = 1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
}

}  // namespace

int send_fd(int sock, int fd) {
  struct msghdr msg;
  struct iovec iov;
  char byte = 0;
  Control control;
  prepare(msg, iov, byte, control);
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

int receive_fd(int sock) {
  struct msghdr msg;
  struct iovec iov;
  char byte;
  Control control;
  prepare(msg, iov, byte, control);
  if (recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0) return -1;
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
    errno = EPROTO;
    return -1;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
  return fd;
}

}  // namespace nsbox
