#include "core/tar_import.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace nsbox {

namespace {

// 1 MiB reads, four buffers: the hash may lag up to three buffers behind the parsing before
// the reader waits for it.
constexpr size_t kReadChunk = 1 << 20;
constexpr int kRing = 4;
constexpr size_t kInflateChunk = 256 << 10;

// ---- SHA-256 on a thread of its own ----

// The buffers of the ring, hashed in the order they were read. Submit() marks a buffer busy
// until its hash is done; the reader waits for that (WaitFree) before reading into it again.
class Hasher {
 public:
  Hasher() : ctx_(EVP_MD_CTX_new()) { ok_ = ctx_ && EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1; }
  ~Hasher() {
    Stop();
    if (ctx_) EVP_MD_CTX_free(ctx_);
  }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  // Without a thread (pthread_create failed) every buffer is hashed inline, by Submit().
  void Start() { threaded_ = pthread_create(&thread_, nullptr, &Hasher::Main, this) == 0; }

  void Submit(int slot, const uint8_t* data, size_t len) {
    if (!threaded_) {
      Update(data, len);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    busy_[slot] = true;
    queue_.push_back(Job{slot, data, len});
    cv_.notify_all();
  }

  void WaitFree(int slot) {
    if (!threaded_) return;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !busy_[slot]; });
  }

  // Waits for every buffer submitted; "" when OpenSSL failed.
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

 private:
  struct Job {
    int slot;
    const uint8_t* data;
    size_t len;
  };

  void Update(const uint8_t* data, size_t len) { ok_ = ok_ && EVP_DigestUpdate(ctx_, data, len) == 1; }

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

  static void* Main(void* self) {
    static_cast<Hasher*>(self)->Loop();
    return nullptr;
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopped, and nothing left
      Job job = queue_.front();
      queue_.pop_front();
      lock.unlock();
      Update(job.data, job.len);
      lock.lock();
      busy_[job.slot] = false;
      cv_.notify_all();
    }
  }

  EVP_MD_CTX* ctx_;
  bool ok_ = false;
  bool threaded_ = false;
  pthread_t thread_{};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool busy_[kRing] = {};
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
  // Declared before the hasher, so that they outlive its thread.
  std::vector<std::unique_ptr<uint8_t[]>> ring;
  for (int i = 0; i < kRing; i++) ring.emplace_back(new uint8_t[kReadChunk]);
  Hasher hasher;
  hasher.Start();
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

  uint64_t position = 0;
  for (int k = 0;; k = (k + 1) % kRing) {
    hasher.WaitFree(k);
    uint8_t* buf = ring[k].get();
    ssize_t n;
    do {
      n = pread(tar_fd, buf, kReadChunk, static_cast<off_t>(position));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      r.read_errno = errno;
      break;
    }
    if (n == 0) break;
    size_t len = static_cast<size_t>(n);
    if (position == 0 && len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) gunzip = std::make_unique<Gunzip>();
    position += len;
    // The same bytes go to the hash and to the parser: the digest is of what was imported.
    hasher.Submit(k, buf, len);
    if (consumed) consumed->store(position, std::memory_order_relaxed);
    if (stopped) break;
    if (gunzip) {
      if (!gunzip->Feed(buf, len, parse)) {
        if (!stopped) gzip_failed(gunzip->why());
        stopped = true;
      }
    } else {
      parse(buf, len);
    }
    if (stopped) break;
  }
  // The hash thread is done with the ring only once Digest() returns.
  r.digest = hasher.Digest();
  if (r.failed()) return r;
  if (gunzip && !gunzip->Finish()) {
    gzip_failed(gunzip->why());
    return r;
  }
  if (!parser.End()) {
    r.refused = parser.error();
    return r;
  }
  importer.Finish();
  if (!r.failed() && r.digest.empty()) {
    r.read_errno = EIO;
  }
  return r;
}

}  // namespace nsbox
