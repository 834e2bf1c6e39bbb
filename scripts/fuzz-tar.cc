// A mutation fuzzer of the tar parser alone (src-cc/core/tar.cc), built with AddressSanitizer
// and UBSan by scripts/fuzz-tar.sh (no libFuzzer here: the image has g++, not clang). It
// starts from valid archives with every feature the parser reads, mutates them (bytes
// flipped, header fields overwritten with extreme numbers, pax lengths changed, blocks cut,
// repeated, swapped), feeds each one whole and in random pieces, and checks:
// - the sanitizers: no read or write out of bounds, no overflow, no use after free;
// - the sink's order: entry, data, end; never data outside an entry;
// - exactly `size` data bytes between an entry and its end;
// - the same events and the same refusal whatever the chunking;
// - position() never beyond the bytes given.
//
//   scripts/fuzz-tar.sh [SECONDS] [SEED]
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <string>
#include <vector>

#include "core/tar.h"

using nsbox::TarEntry;
using nsbox::TarError;
using nsbox::TarParser;
using nsbox::TarSink;

namespace {

uint64_t state = 88172645463325252ull;
uint64_t Next() {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}
size_t Below(size_t n) { return n ? static_cast<size_t>(Next() % n) : 0; }

[[noreturn]] void Die(const char* why, const std::string& input) {
  fprintf(stderr, "fuzz-tar: %s\n", why);
  FILE* f = fopen("/tmp/fuzz-tar-crash.tar", "wb");
  if (f) {
    fwrite(input.data(), 1, input.size(), f);
    fclose(f);
    fprintf(stderr, "input kept in /tmp/fuzz-tar-crash.tar\n");
  }
  abort();
}

// Records what the parser calls, checking the order as it goes.
struct Recorder : TarSink {
  std::string log;
  bool open = false;
  uint64_t want = 0, got = 0;
  const std::string* input = nullptr;
  bool OnEntry(const TarEntry& e, TarError*) override {
    if (open) Die("entry inside an entry", *input);
    open = true;
    want = e.size;
    got = 0;
    log += "E" + e.name + "|" + e.linkname + "|" + std::to_string(e.size) + "|" + std::to_string(e.mode) + "|" + std::to_string(e.uid) + "|" +
           std::to_string(e.mtime) + "." + std::to_string(e.mtime_nsec) + "|" + std::to_string(e.xattrs.size()) + "\n";
    return true;
  }
  bool OnData(const uint8_t* p, size_t n, TarError*) override {
    if (!open) Die("data outside an entry", *input);
    got += n;
    if (got > want) Die("more data than the entry's size", *input);
    // Touch every byte, so that ASan sees a read past the buffer.
    uint32_t h = 0;
    for (size_t i = 0; i < n; i++) h = h * 31 + p[i];
    log += "D" + std::to_string(n ? h : 0) + "\n";
    return true;
  }
  bool OnEntryEnd(TarError*) override {
    if (!open) Die("end outside an entry", *input);
    if (got != want) Die("fewer data bytes than the entry's size", *input);
    open = false;
    log += "Z\n";
    return true;
  }
};

// Data events merged, so that chunkings compare: only the sum matters.
std::string Normal(const std::string& log) {
  std::string out;
  size_t pos = 0;
  bool data = false;
  while (pos < log.size()) {
    size_t nl = log.find('\n', pos);
    std::string line = log.substr(pos, nl - pos);
    pos = nl + 1;
    if (line[0] == 'D') {
      data = true;
      continue;
    }
    if (data) out += "D\n";
    data = false;
    out += line + "\n";
  }
  return out;
}

std::string Run(const std::string& input, bool whole) {
  TarParser parser("fuzz");
  Recorder rec;
  rec.input = &input;
  // Copied into a buffer of exactly its size, so that ASan catches any read past it.
  std::vector<uint8_t> copy(input.begin(), input.end());
  size_t pos = 0;
  bool ok = true;
  while (ok && pos < copy.size()) {
    size_t n = whole ? copy.size() : 1 + Below(std::min<size_t>(copy.size() - pos, Below(4) == 0 ? 3 : 2048));
    uint8_t* piece = static_cast<uint8_t*>(malloc(n));
    memcpy(piece, copy.data() + pos, n);
    ok = parser.Write(piece, n, &rec);
    free(piece);
    pos += n;
    if (parser.position() > pos) Die("position beyond the input", input);
  }
  if (ok) ok = parser.End();
  std::string out = Normal(rec.log);
  if (!ok) out += "!" + parser.error().code + " " + parser.error().message + "\n";
  return out;
}

void Octal(std::string& b, size_t at, size_t len, uint64_t v) {
  for (size_t i = 0; i + 1 < len; i++) {
    b[at + len - 2 - i] = static_cast<char>('0' + (v & 7));
    v >>= 3;
  }
  b[at + len - 1] = 0;
}

void Checksum(std::string& b, size_t at) {
  memset(&b[at + 148], ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; i++) sum += static_cast<uint8_t>(b[at + i]);
  char field[9];
  snprintf(field, sizeof field, "%06o", sum);
  memcpy(&b[at + 148], field, 7);
  b[at + 154] = 0;
}

std::string Header(const std::string& name, char flag, uint64_t size, const std::string& link = "") {
  std::string b(512, '\0');
  memcpy(&b[0], name.data(), std::min<size_t>(name.size(), 100));
  Octal(b, 100, 8, 0644);
  Octal(b, 108, 8, 1000);
  Octal(b, 116, 8, 1000);
  Octal(b, 124, 12, size);
  Octal(b, 136, 12, 1700000000);
  b[156] = flag;
  memcpy(&b[157], link.data(), std::min<size_t>(link.size(), 100));
  memcpy(&b[257],
         "ustar\0"
         "00",
         8);
  Checksum(b, 0);
  return b;
}

std::string Padded(const std::string& data) {
  std::string out = data;
  out.resize((data.size() + 511) / 512 * 512, '\0');
  return out;
}

std::string Record(const std::string& key, const std::string& value) {
  size_t body = key.size() + value.size() + 3;
  size_t len = body + std::to_string(body).size();
  if (std::to_string(len).size() + body != len) len = body + std::to_string(len).size();
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

std::vector<std::string> Corpus() {
  std::string end(1024, '\0');
  std::string longname(300, 'n');
  std::string pax = Record("path", "pax/" + std::string(200, 'p')) + Record("mtime", "-12.5") +
                    Record("SCHILY.xattr.user.a", std::string("\x01\x02", 2)) + Record("uid", "4294967294") + Record("size", "5");
  return {
      Header("a", '5', 0) + Header("a/f", '0', 700) + Padded(std::string(700, 'x')) + Header("a/l", '2', 0, "f") + Header("a/h", '1', 0, "a/f") + end,
      Header("././@LongLink", 'L', longname.size() + 1) + Padded(longname + std::string(1, '\0')) + Header("x", '0', 3) + Padded("abc") +
          Header("././@LongLink", 'K', 201) + Padded(std::string(200, 't') + std::string(1, '\0')) + Header("s", '2', 0) + end,
      Header("PaxHeaders/x", 'x', pax.size()) + Padded(pax) + Header("ignored", '0', 0) + Padded("hello") + Header("g", 'g', 8) +
          Padded("8 c=d\n\n\n") + Header("dev", '3', 0) + Header("fifo", '6', 0) + end,
  };
}

void Mutate(std::string& b) {
  int rounds = 1 + static_cast<int>(Below(4));
  for (int r = 0; r < rounds && !b.empty(); r++) {
    size_t header = Below(b.size() / 512 + 1) * 512;
    if (header >= b.size()) header = 0;
    switch (Below(9)) {
      case 0: b[Below(b.size())] ^= static_cast<char>(1 << Below(8)); break;
      case 1: b[Below(b.size())] = static_cast<char>(Next()); break;
      case 2: {  // an extreme number in a numeric field, checksum fixed
        static const size_t fields[][2] = {{100, 8}, {108, 8}, {116, 8}, {124, 12}, {136, 12}, {329, 8}, {337, 8}};
        auto f = fields[Below(7)];
        if (header + 512 > b.size()) break;
        switch (Below(4)) {
          case 0: memset(&b[header + f[0]], '7', f[1]); break;
          case 1: memset(&b[header + f[0]], 0xff, f[1]); break;
          case 2:
            memset(&b[header + f[0]], 0, f[1]);
            b[header + f[0]] = static_cast<char>(0x80);
            for (size_t i = 1; i < f[1]; i++) b[header + f[0] + i] = static_cast<char>(Next());
            break;
          default: Octal(b, header + f[0], f[1], Next() % 1000000); break;
        }
        Checksum(b, header);
        break;
      }
      case 3: b.resize(Below(b.size() + 1)); break;
      case 4: {  // a block repeated
        size_t at = Below(b.size() / 512) * 512;
        if (at + 512 <= b.size()) b.insert(at, b.substr(at, 512));
        break;
      }
      case 5: {  // two blocks swapped
        size_t n = b.size() / 512;
        if (n < 2) break;
        size_t x = Below(n) * 512, y = Below(n) * 512;
        std::string t = b.substr(x, 512);
        b.replace(x, 512, b.substr(y, 512));
        b.replace(y, 512, t);
        break;
      }
      case 6: {  // a digit of a pax length or value changed, anywhere
        size_t at = Below(b.size());
        if (b[at] >= '0' && b[at] <= '9') b[at] = static_cast<char>('0' + Below(10));
        break;
      }
      case 7: {  // a type flag changed, checksum fixed
        static const char flags[] = "0125673457LKxgSVA\0";
        if (header + 512 > b.size()) break;
        b[header + 156] = flags[Below(sizeof flags - 1)];
        Checksum(b, header);
        break;
      }
      default:  // bytes inserted
        b.insert(Below(b.size() + 1), std::string(1 + Below(600), static_cast<char>(Next())));
        break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 60;
  state ^= argc > 2 ? strtoull(argv[2], nullptr, 0) : static_cast<uint64_t>(time(nullptr));
  std::vector<std::string> corpus = Corpus();
  for (const std::string& c : corpus) {
    std::string r = Run(c, true);
    if (r.find('!') != std::string::npos) {
      fprintf(stderr, "seed refused: %s", r.c_str());
      return 1;
    }
  }
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t runs = 0, refused = 0;
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds) break;
    std::string input = corpus[Below(corpus.size())];
    Mutate(input);
    std::string whole = Run(input, true);
    std::string pieces = Run(input, false);
    if (whole != pieces) {
      fprintf(stderr, "whole:\n%s\npieces:\n%s\n", whole.c_str(), pieces.c_str());
      Die("a different result in pieces", input);
    }
    runs++;
    if (whole.find('!') != std::string::npos) refused++;
    // Sometimes a mutant that still parses joins the corpus, to mutate further.
    else if (corpus.size() < 64 && Below(8) == 0) corpus.push_back(input);
  }
  printf("fuzz-tar: %llu inputs in %.0f s (%llu refused, %llu read), no failure\n", static_cast<unsigned long long>(runs), seconds,
         static_cast<unsigned long long>(refused), static_cast<unsigned long long>(runs - refused));
  return 0;
}
