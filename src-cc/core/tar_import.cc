#include "core/tar_import.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace nsbox {

namespace {

// 1 MiB reads, four buffers: the reading thread runs up to four buffers ahead of the parsing
// before it waits.
constexpr size_t kReadChunk = 1 << 20;
constexpr int kRing = 4;
constexpr size_t kInflateChunk = 256 << 10;

// ---- Reading and SHA-256, on a thread of their own ----

// Reads the tarball into a ring of buffers and hashes each one, on its own thread, while the
// caller parses and writes the buffers already read: every byte is read once, by pread, and
// the same buffer goes to the hash and to the parser. The copy out of the page cache and the
// hash are then both off the thread that writes the files (the longest of the two).
// A buffer is read into again only once the caller has released it (Release()), and the
// thread hashes a buffer right after handing it out, long before it comes round again.
class Reader {
 public:
  Reader(int fd, std::atomic<uint64_t>* consumed) : fd_(fd), consumed_(consumed), ctx_(EVP_MD_CTX_new()) {
    ok_ = ctx_ && EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1;
    for (auto& b : ring_) b.reset(new uint8_t[kReadChunk]);
  }
  ~Reader() {
    Stop();
    if (ctx_) EVP_MD_CTX_free(ctx_);
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // Without a thread (pthread_create failed), Next() reads and hashes inline.
  void Start() {
    threaded_ = pthread_create(&thread_, nullptr, &Reader::Main, this) == 0;
    if (threaded_) pthread_setname_np(thread_, "nsbox-tar-read");
  }

  // The next buffer read, in order; false at the end of the file or on a read error (error()).
  // The buffer stays the caller's until Release().
  bool Next(const uint8_t** data, size_t* len) {
    if (!threaded_) {
      if (eof_) return false;
      uint8_t* buf = ring_[0].get();
      ssize_t n = ReadAt(buf);
      if (n <= 0) return false;
      Hash(buf, static_cast<size_t>(n));
      *data = buf;
      *len = static_cast<size_t>(n);
      return true;
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return produced_ > taken_ || eof_; });
    if (produced_ == taken_) return false;
    int slot = static_cast<int>(taken_ % kRing);
    taken_++;
    *data = ring_[slot].get();
    *len = lens_[slot];
    return true;
  }

  // The caller is done with the buffer Next() gave last.
  void Release() {
    if (!threaded_) return;
    std::lock_guard<std::mutex> lock(mu_);
    released_++;
    cv_.notify_all();
  }

  int error() const { return err_; }

  // Waits for the thread (stopping it if it has not reached the end); the digest of every
  // byte read, "" when OpenSSL failed.
  std::string Digest() {
    Stop();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!ok_ || EVP_DigestFinal_ex(ctx_, md, &n) != 1) return "";
    static const char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < n; i++) {
      hex += kHex[md[i] >> 4];
      hex += kHex[md[i] & 15];
    }
    return hex;
  }

  // Stops reading (a failure: the rest is not needed) and waits for the thread.
  void Stop() {
    if (!threaded_) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    pthread_join(thread_, nullptr);
    threaded_ = false;
  }

 private:
  static void* Main(void* self) {
    static_cast<Reader*>(self)->Loop();
    return nullptr;
  }

  // One pread into `buf`: its length, 0 at the end, -1 on an error (then eof_ and err_ set).
  ssize_t ReadAt(uint8_t* buf) {
    ssize_t n;
    do {
      n = pread(fd_, buf, kReadChunk, static_cast<off_t>(position_));
    } while (n < 0 && errno == EINTR);
    if (n < 0) err_ = errno;
    if (n <= 0) {
      eof_ = true;
      return n;
    }
    position_ += static_cast<uint64_t>(n);
    if (consumed_) consumed_->store(position_, std::memory_order_relaxed);
    return n;
  }

  void Hash(const uint8_t* data, size_t len) { ok_ = ok_ && EVP_DigestUpdate(ctx_, data, len) == 1; }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (uint64_t k = 0;; k++) {
      cv_.wait(lock, [&] { return stop_ || k - released_ < kRing; });
      if (stop_) return;
      lock.unlock();
      int slot = static_cast<int>(k % kRing);
      uint8_t* buf = ring_[slot].get();
      ssize_t n;
      do {
        n = pread(fd_, buf, kReadChunk, static_cast<off_t>(position_));
      } while (n < 0 && errno == EINTR);
      lock.lock();
      if (n <= 0) {
        if (n < 0) err_ = errno;
        eof_ = true;
        cv_.notify_all();
        return;
      }
      position_ += static_cast<uint64_t>(n);
      if (consumed_) consumed_->store(position_, std::memory_order_relaxed);
      lens_[slot] = static_cast<size_t>(n);
      produced_++;
      cv_.notify_all();
      // Hashed while the caller parses it: both only read the buffer.
      lock.unlock();
      Hash(buf, static_cast<size_t>(n));
      lock.lock();
    }
  }

  int fd_;
  std::atomic<uint64_t>* consumed_;
  EVP_MD_CTX* ctx_;
  bool ok_ = false;
  bool threaded_ = false;
  pthread_t thread_{};
  std::unique_ptr<uint8_t[]> ring_[kRing];
  size_t lens_[kRing] = {};
  uint64_t position_ = 0;
  int err_ = 0;
  // Guarded by mu_ when threaded: buffers read, handed out, released; the end; a stop.
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t produced_ = 0, taken_ = 0, released_ = 0;
  bool eof_ = false;
  bool stop_ = false;
};

// ---- The policy ----

// The entry's name relative to the root: '/', '.' and empty components dropped, '..' refused.
bool RelativeName(const std::string& name, std::string* out) {
  out->clear();
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    size_t len = end - start;
    if (len == 2 && name[start] == '.' && name[start + 1] == '.') return false;
    if (len > 0 && !(len == 1 && name[start] == '.')) {
      if (!out->empty()) *out += '/';
      out->append(name, start, len);
    }
    start = end + 1;
  }
  return true;
}

int Depth(const std::string& rel) {
  if (rel.empty()) return -1;
  return static_cast<int>(std::count(rel.begin(), rel.end(), '/'));
}

class Importer : public TarSink {
 public:
  Importer(int root_fd, const ImportOptions& options, ImportResult* result)
      : writer_(root_fd), o_(options), r_(result), euid_(geteuid()), egid_(getegid()) {}

  bool OnEntry(const TarEntry& e, TarError* error) override {
    r_->entries++;
    std::string rel;
    if (!RelativeName(e.name, &rel)) return Unsafe(error, e.name, "leaves the image root");
    switch (e.type) {
      case TarType::kDirectory: return Directory(rel, e);
      case TarType::kFile: return File(rel, e, error);
      case TarType::kSymlink: return Symlink(rel, e, error);
      case TarType::kHardlink: return Hardlink(rel, e, error);
      default:
        // Devices and fifos: an exported rootfs has none that matter (/dev is mounted at run
        // time). Data of unknown types is skipped.
        r_->skipped++;
        return true;
    }
  }

  bool OnData(const uint8_t* data, size_t len, TarError*) override {
    if (!current_) return true;
    return Check(writer_.Data(data, len), current_name_);
  }

  bool OnEntryEnd(TarError*) override {
    if (!current_) return true;
    current_ = false;
    r_->bytes += current_size_;
    return Check(writer_.FileEnd(), current_name_);
  }

  // Directories get their owner, mode and times last, deepest first: adding entries changes a
  // directory's mtime, and a read-only directory could not be filled.
  bool Finish() {
    std::vector<std::pair<const std::string*, Dir*>> order;
    order.reserve(dirs_.size());
    for (auto& [rel, d] : dirs_) order.emplace_back(&rel, &d);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      int da = Depth(*a.first), db = Depth(*b.first);
      return da != db ? da > db : a.second->seq < b.second->seq;
    });
    for (auto& [rel, d] : order) {
      ExtractStep s = Step(d->entry_mode, d->uid, d->gid, d->mtime, d->nsec, NeedsChown(d->uid, d->gid) ? kFlagChown : 0);
      s.path = *rel;
      if (!Check(writer_.DirAttrs(s), d->name)) return false;
    }
    return true;
  }

 private:
  struct Dir {
    uint64_t seq;
    uint32_t entry_mode, uid, gid;
    int64_t mtime;
    uint32_t nsec;
    std::string name;
  };

  static ExtractStep Step(uint32_t mode, uint32_t uid, uint32_t gid, int64_t mtime, uint32_t nsec, uint8_t flags) {
    ExtractStep s;
    s.flags = flags;
    s.mode = static_cast<mode_t>(mode);
    s.uid = static_cast<uid_t>(uid);
    s.gid = static_cast<gid_t>(gid);
    s.mtime.tv_sec = static_cast<time_t>(mtime);
    s.mtime.tv_nsec = static_cast<long>(nsec);
    return s;
  }
  static ExtractStep Step(const TarEntry& e, uint8_t flags) { return Step(e.mode, e.uid, e.gid, e.mtime, e.mtime_nsec, flags); }

  bool Unsafe(TarError* error, const std::string& name, const std::string& why) {
    error->code = "UNSAFE_PATH";
    error->message = o_.what + ": entry \"" + name + "\": " + why;
    error->path = name;
    error->has_path = true;
    return false;
  }

  bool Check(const ExtractError& e, const std::string& name) {
    if (!e.err) return true;
    r_->write = e;
    r_->write_entry = name;
    return false;
  }

  bool NeedsChown(uint32_t uid, uint32_t gid) {
    if (euid_ != 0) {
      if (uid != 0 || gid != 0) r_->owners_squashed++;
      return false;
    }
    return o_.always_chown || uid != euid_ || gid != egid_;
  }

  bool Directory(const std::string& rel, const TarEntry& e) {
    // "./" is the root itself: only its attributes, at the end.
    if (!rel.empty()) {
      files_.erase(rel);
      ExtractStep s = Step(e, 0);
      s.path = rel;
      if (!Check(writer_.Dir(s), e.name)) return false;
    }
    auto [it, added] = dirs_.try_emplace(rel);
    if (added) it->second.seq = next_seq_++;
    it->second.entry_mode = e.mode;
    it->second.uid = e.uid;
    it->second.gid = e.gid;
    it->second.mtime = e.mtime;
    it->second.nsec = e.mtime_nsec;
    it->second.name = e.name;
    return true;
  }

  bool File(const std::string& rel, const TarEntry& e, TarError* error) {
    if (rel.empty()) return Unsafe(error, e.name, "replaces the image root");
    bool chown = NeedsChown(e.uid, e.gid);
    // chown clears setuid and setgid, and open() applies the umask: then the mode is set.
    bool chmod = chown || (e.mode & (07000 | o_.umask)) != 0;
    dirs_.erase(rel);
    ExtractStep s = Step(e, static_cast<uint8_t>((chown ? kFlagChown : 0) | (chmod ? kFlagChmod : 0)));
    s.path = rel;
    // user.* and file capabilities; anything else (trusted.*, security.selinux) is the host's
    // business, and so is user.overlay.*: a rootless overlay's own metadata, which an image
    // could otherwise plant to steer the overlay it becomes the lower layer of.
    for (const auto& x : e.xattrs) {
      bool user = x.first.compare(0, 5, "user.") == 0 && x.first.compare(0, 13, "user.overlay.") != 0;
      if (user || x.first == "security.capability") s.xattrs.push_back(x);
      else r_->skipped_xattrs++;
    }
    if (!Check(writer_.File(s), e.name)) return false;
    current_ = true;
    current_name_ = e.name;
    current_size_ = e.size;
    files_.insert(rel);
    return true;
  }

  bool Symlink(const std::string& rel, const TarEntry& e, TarError* error) {
    if (rel.empty()) return Unsafe(error, e.name, "replaces the image root");
    files_.erase(rel);
    dirs_.erase(rel);
    ExtractStep s = Step(e, NeedsChown(e.uid, e.gid) ? kFlagChown : 0);
    s.path = rel;
    s.link = e.linkname;
    return Check(writer_.Symlink(s), e.name);
  }

  bool Hardlink(const std::string& rel, const TarEntry& e, TarError* error) {
    if (rel.empty()) return Unsafe(error, e.name, "replaces the image root");
    std::string target;
    if (!RelativeName(e.linkname, &target)) return Unsafe(error, e.name, "hardlink to a host file");
    // Only a regular file this archive put here: not a directory, not a symlink, nothing
    // that was there before.
    if (files_.find(target) == files_.end()) {
      return Unsafe(error, e.name, "hardlink to a host file or to no regular file extracted before (\"" + e.linkname + "\")");
    }
    if (target == rel) return true;
    dirs_.erase(rel);
    ExtractStep s = Step(e, 0);
    s.path = rel;
    s.link = target;
    if (!Check(writer_.Hardlink(s), e.name)) return false;
    files_.insert(rel);
    return true;
  }

  ExtractWriter writer_;
  const ImportOptions& o_;
  ImportResult* r_;
  uid_t euid_;
  gid_t egid_;
  bool current_ = false;
  std::string current_name_;
  uint64_t current_size_ = 0;
  // Relative paths of regular files extracted so far: the only allowed hardlink targets.
  std::unordered_set<std::string> files_;
  // Directory entries whose owner, mode and times are set once everything is in them.
  std::unordered_map<std::string, Dir> dirs_;
  uint64_t next_seq_ = 0;
};

// ---- gzip ----

// Inflates gzip members one after another as Node's gunzip does: another member may follow
// one that ended; trailing zero bytes (padding) end the input.
class Gunzip {
 public:
  Gunzip() {
    memset(&zs_, 0, sizeof zs_);
    ok_ = inflateInit2(&zs_, 15 + 16) == Z_OK;
    out_.resize(kInflateChunk);
  }
  ~Gunzip() {
    if (ok_) inflateEnd(&zs_);
  }
  Gunzip(const Gunzip&) = delete;
  Gunzip& operator=(const Gunzip&) = delete;

  // Feeds `len` bytes; `emit(data, n)` gets each inflated piece and returns false to stop.
  // False with why() on a gzip error.
  template <typename Emit>
  bool Feed(const uint8_t* data, size_t len, Emit&& emit) {
    if (!ok_) return Fail("could not start inflating");
    zs_.next_in = const_cast<Bytef*>(data);
    zs_.avail_in = static_cast<uInt>(len);
    while (zs_.avail_in > 0 && !done_) {
      if (ended_) {
        if (*zs_.next_in == 0) {
          done_ = true;
          break;
        }
        if (inflateReset(&zs_) != Z_OK) return Fail("could not start inflating");
        ended_ = false;
      }
      zs_.next_out = out_.data();
      zs_.avail_out = static_cast<uInt>(out_.size());
      int rc = inflate(&zs_, Z_NO_FLUSH);
      size_t produced = out_.size() - zs_.avail_out;
      if (produced > 0 && !emit(out_.data(), produced)) return true;
      if (rc == Z_STREAM_END) {
        ended_ = true;
      } else if (rc == Z_NEED_DICT) {
        return Fail("Missing dictionary");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return Fail(zs_.msg ? zs_.msg : "zlib error");
      }
    }
    return true;
  }

  // At the end of input: false when a member stopped in the middle.
  bool Finish() {
    if (!ended_ && !done_) return Fail("unexpected end of file");
    return true;
  }
  const std::string& why() const { return why_; }

 private:
  bool Fail(const char* why) {
    why_ = why;
    return false;
  }

  z_stream zs_;
  bool ok_ = false;
  bool ended_ = false;
  bool done_ = false;
  std::vector<uint8_t> out_;
  std::string why_;
};

}  // namespace

ImportResult ImportTarball(int tar_fd, int root_fd, const ImportOptions& o, std::atomic<uint64_t>* consumed) {
  ImportResult r;
  TarParser parser(o.label);
  Importer importer(root_fd, o, &r);
  Reader reader(tar_fd, consumed);
  reader.Start();
  std::unique_ptr<Gunzip> gunzip;
  bool stopped = false;  // the parse or the writer failed

  // Sets r.refused from the parser, unless the importer already said why it stopped.
  auto parse = [&](const uint8_t* data, size_t len) {
    if (stopped || parser.finished()) return true;
    if (parser.Write(data, len, &importer)) return true;
    stopped = true;
    if (!r.write.err && r.refused.code.empty()) r.refused = parser.error();
    return false;
  };
  auto gzip_failed = [&](const std::string& why) {
    const std::string& entry = parser.last_name();
    std::string where = entry.empty() ? "" : " in or after entry \"" + entry + "\"";
    r.refused.code = "BAD_ARCHIVE";
    r.refused.message = o.label + ": gzip: " + why + " (at offset " + std::to_string(parser.position()) + " of the tar" + where + ")";
    r.refused.path = entry.empty() ? o.tarball : entry;
    r.refused.has_path = true;
  };

  // The whole file is read, also after the end-of-archive blocks: the digest is of the file.
  bool first = true;
  const uint8_t* buf;
  size_t len;
  while (!stopped && reader.Next(&buf, &len)) {
    if (first && len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) gunzip = std::make_unique<Gunzip>();
    first = false;
    if (gunzip) {
      if (!gunzip->Feed(buf, len, parse)) {
        if (!stopped) gzip_failed(gunzip->why());
        stopped = true;
      }
    } else {
      parse(buf, len);
    }
    reader.Release();
  }
  r.digest = reader.Digest();
  if (r.failed()) return r;
  if (reader.error()) {
    r.read_errno = reader.error();
    return r;
  }
  if (gunzip && !gunzip->Finish()) {
    gzip_failed(gunzip->why());
    return r;
  }
  if (!parser.End()) {
    r.refused = parser.error();
    return r;
  }
  importer.Finish();
  if (!r.failed() && r.digest.empty()) r.read_errno = EIO;
  return r;
}

}  // namespace nsbox
