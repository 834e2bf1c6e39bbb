// Decimal digits without allocating or locale: what code after clone (the child, a helper
// about to exec, P2 of a detached start) uses to compose /proc/PID/... paths and argv.
#pragma once

namespace nsbox {

// Writes v in decimal at p, then a terminating NUL; returns the position of the NUL, so that
// more can be appended there.
inline char* put_decimal(char* p, unsigned v) {
  char digits[12];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = digits[--n];
  *p = '\0';
  return p;
}

}  // namespace nsbox
