// System calls for nsbox-init, which is built without a C library (-nostdlib -ffreestanding):
// a static program of a few pages starts in microseconds and pulls nothing from the image.
// Only the kernel's UAPI headers are used.
#pragma once

#include <asm/unistd.h>
#include <linux/errno.h>
#include <stddef.h>
#include <stdint.h>

namespace nsbox::init {

// Returns the raw result: a negative errno on failure, as the kernel gives it.
inline long syscall6(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
  return x0;
#else
#error "nsbox-init: unsupported architecture"
#endif
}

template <typename... Args>
inline long sys(long nr, Args... args) {
  return syscall6(nr, ((long)args)...);
}

[[noreturn]] inline void exit_now(int code) {
  for (;;) sys(__NR_exit_group, code);
}

inline size_t str_len(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

inline bool starts_with(const char* s, const char* prefix, const char** rest) {
  while (*prefix) {
    if (*s++ != *prefix++) return false;
  }
  *rest = s;
  return true;
}

inline bool str_eq(const char* a, const char* b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

}  // namespace nsbox::init
