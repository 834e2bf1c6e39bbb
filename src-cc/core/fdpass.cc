#include "core/fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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

namespace {
union ManyControl {
  char buf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  struct cmsghdr align;
};
}  // namespace

int send_fds(int sock, const int* fds, int count) {
  if (count < 0 || count > kMaxFdsPerMessage) {
    errno = EINVAL;
    return -1;
  }
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  struct iovec iov;
  char byte = 'g';
  iov.iov_base = &byte;
  iov.iov_len = 1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ManyControl control;
  memset(&control, 0, sizeof control);
  if (count > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<size_t>(count));
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<size_t>(count));
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * static_cast<size_t>(count));
  }
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -1 : 0;
}

int receive_fds(int sock, int* out, int max) {
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  struct iovec iov;
  char byte;
  iov.iov_base = &byte;
  iov.iov_len = 1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ManyControl control;
  memset(&control, 0, sizeof control);
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return static_cast<int>(n);
  int count = 0;
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    int got = static_cast<int>((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < got; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
      if (count < max) out[count++] = fd;
      else close(fd);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    errno = EMSGSIZE;
    return -1;
  }
  return count;
}

}  // namespace nsbox
