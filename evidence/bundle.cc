#include "evidence/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "common/certificate.h"
#include "common/format.h"
#include "common/identity.h"
#include "evidence/hash.h"
#include "evidence/json_read.h"

namespace bulkhead::evidence {
namespace {

constexpr size_t kBlock = 1 << 20;                // read/copy unit for members and the file
constexpr uint64_t kMaxSpecialMember = 64 << 20;  // manifest, signature, certificate, log
constexpr std::string_view kManifest = "manifest.json";
constexpr std::string_view kSignature = "manifest.sig";
constexpr std::string_view kCertificate = "agent.crt";
constexpr std::string_view kCollectionLog = "collection-log.jsonl";
// What a verification keeps of an untrusted bundle (see Verification).
constexpr size_t kMaxMemberPath = 1024;  // longer member paths are refused, not kept
constexpr size_t kMaxNameShown = 256;     // a member path named in a problem
constexpr size_t kMaxProblemText = 1024;  // one problem's text
constexpr size_t kMaxCollectorErrorText = 512;

std::string errnoText(int err) { return std::strerror(err); }

// A member path relative to the top directory: non-empty components, none "." or "..", not
// absolute. Shared by the writer (refuses) and the reader (reports).
bool isCleanRelativePath(std::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

bool isReservedMember(std::string_view path) {
  return path == kManifest || path == kSignature || path == kCertificate;
}

// zlib's fastest level: packing comes after collection, on the responder's clock. A capture of
// a host with 10,000 processes and 50,000 sockets (40 MiB to pack) packed in 0.24 s at zlib's
// default level 6, 0.11 s at level 1, for a bundle of 1.44 MiB instead of 0.95.
constexpr const char* kGzipLevel = "1";

class FileBundleWriter final : public BundleWriter {
 public:
  FileBundleWriter(std::filesystem::path out, std::string dir, nlohmann::json fields)
      : out_(std::move(out)), dir_(std::move(dir)), fields_(std::move(fields)) {}

  ~FileBundleWriter() override {
    if (archive_ != nullptr) {
      // Not finished: the partial file is not a bundle and is removed below. The archive is
      // closed normally with its output discarded (onWrite), because archive_write_fail()
      // makes libarchive skip the gzip filter's close and leak its zlib and write buffers.
      abandoned_ = true;
      archive_write_close(archive_);
      archive_write_free(archive_);
    }
    if (fd_ >= 0) {
      ::close(fd_);
      std::error_code ec;
      std::filesystem::remove(out_, ec);
    }
  }

  absl::Status open() {
    if (!isCleanRelativePath(dir_) || dir_.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          fmt::format("bundle directory \"{}\": must be one plain path component", dir_));
    }
    if (!fields_.is_null() && !fields_.is_object()) {
      return absl::InvalidArgumentError("bundle manifest fields: not a JSON object");
    }
    fd_ = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd_ < 0) {
      return absl::UnavailableError(
          fmt::format("bundle {}: cannot create: {}", out_.string(), errnoText(errno)));
    }
    archive_ = archive_write_new();
    if (archive_ == nullptr) return absl::ResourceExhaustedError("archive_write_new failed");
    // pax restricted: plain ustar headers unless a path or size needs an extension.
    if (archive_write_set_format_pax_restricted(archive_) != ARCHIVE_OK ||
        archive_write_add_filter_gzip(archive_) != ARCHIVE_OK ||
        archive_write_set_filter_option(archive_, "gzip", "compression-level", kGzipLevel) !=
            ARCHIVE_OK ||
        archive_write_set_bytes_per_block(archive_, 64 * 1024) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(archive_, 1) != ARCHIVE_OK ||
        archive_write_open2(archive_, this, nullptr, &FileBundleWriter::onWrite, nullptr,
                            nullptr) != ARCHIVE_OK) {
      return archiveError("opening");
    }
    return absl::OkStatus();
  }

  void setProgress(std::function<void(uint64_t)> progress, uint64_t every_bytes) override {
    progress_ = std::move(progress);
    progress_every_ = every_bytes == 0 ? 1 : every_bytes;
  }

  absl::Status addBytes(std::string_view path, std::string_view bytes) override {
    if (auto s = beginMember(path, bytes.size()); !s.ok()) return s;
    if (auto s = writeData(bytes.data(), bytes.size()); !s.ok()) return s;
    return endMember(path, bytes.size());
  }

  absl::Status addFile(std::string_view path, const std::filesystem::path& from) override {
    if (!broken_.ok()) return broken_;
    int fd = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::NotFoundError(fmt::format("bundle member {}: cannot open {}: {}", path,
                                             from.string(), errnoText(errno)));
    }
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          fmt::format("bundle member {}: {} is not a regular file", path, from.string()));
    }
    const auto size = static_cast<uint64_t>(st.st_size);
    if (auto s = beginMember(path, size); !s.ok()) return s;
    if (buffer_.size() < kBlock) buffer_.resize(kBlock);
    uint64_t done = 0;
    while (done < size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kBlock, size - done));
      ssize_t n = ::read(fd, buffer_.data(), want);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // The header promised `size` bytes: the archive cannot be completed honestly.
        broken_ = absl::DataLossError(
            fmt::format("bundle member {}: {} ended at {} of {} bytes{}", path, from.string(), done,
                        size, n < 0 ? fmt::format(" ({})", errnoText(errno)) : std::string()));
        return broken_;
      }
      if (auto s = writeData(buffer_.data(), static_cast<size_t>(n)); !s.ok()) return s;
      done += static_cast<uint64_t>(n);
    }
    return endMember(path, size);
  }

  absl::StatusOr<Result> finish(const Signer& signer) override {
    if (!broken_.ok()) return broken_;
    if (archive_ == nullptr) return absl::FailedPreconditionError("bundle: already finished");
    nlohmann::ordered_json manifest;
    manifest["format"] = kFormat;
    if (fields_.is_object()) {
      for (const auto& [key, value] : fields_.items()) {
        if (key != "format" && key != "files") manifest[key] = value;
      }
    }
    manifest["files"] = files_;
    const std::string manifest_text = manifest.dump(1) + "\n";
    auto signature = signer.sign(manifest_text);
    if (!signature.ok()) return signature.status();
    if (auto s = addBytes(kManifest, manifest_text); !s.ok()) return s;
    if (auto s = addBytes(kSignature, *signature); !s.ok()) return s;
    if (auto s = addBytes(kCertificate, signer.certPem()); !s.ok()) return s;
    if (archive_write_close(archive_) != ARCHIVE_OK) return archiveError("closing");
    if (!broken_.ok()) return broken_;
    archive_write_free(archive_);
    archive_ = nullptr;
    if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
      int err = errno;
      fd_ = -1;
      return absl::DataLossError(
          fmt::format("bundle {}: fsync/close failed: {}", out_.string(), errnoText(err)));
    }
    fd_ = -1;
    Result result;
    result.sha256 = out_hash_.hexDigest();
    result.size = out_size_;
    result.manifest_sha256 = sha256Hex(manifest_text);
    result.files = static_cast<uint32_t>(files_.size());
    return result;
  }

 private:
  static la_ssize_t onWrite(struct archive* a, void* self_ptr, const void* buf, size_t n) {
    auto* self = static_cast<FileBundleWriter*>(self_ptr);
    if (self->abandoned_) return static_cast<la_ssize_t>(n);
    const char* p = static_cast<const char*>(buf);
    size_t left = n;
    while (left > 0) {
      ssize_t w = ::write(self->fd_, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        int err = errno;
        self->broken_ = absl::DataLossError(
            fmt::format("bundle {}: write failed: {}", self->out_.string(), errnoText(err)));
        archive_set_error(a, err, "write failed");
        return -1;
      }
      p += w;
      left -= static_cast<size_t>(w);
    }
    self->out_hash_.update(buf, n);
    self->out_size_ += n;
    return static_cast<la_ssize_t>(n);
  }

  absl::Status archiveError(std::string_view doing) {
    if (!broken_.ok()) return broken_;
    const char* msg = archive_ != nullptr ? archive_error_string(archive_) : nullptr;
    broken_ = absl::InternalError(fmt::format("bundle {}: {} the archive failed: {}", out_.string(),
                                              doing, msg ? msg : "unknown error"));
    return broken_;
  }

  absl::Status beginMember(std::string_view path, uint64_t size) {
    if (!broken_.ok()) return broken_;
    if (archive_ == nullptr) return absl::FailedPreconditionError("bundle: already finished");
    if (!isCleanRelativePath(path)) {
      return absl::InvalidArgumentError(
          fmt::format("bundle member \"{}\": not a clean relative path", path));
    }
    if (!paths_.insert(std::string(path)).second) {
      return absl::AlreadyExistsError(fmt::format("bundle member {}: added twice", path));
    }
    struct archive_entry* entry = archive_entry_new();
    const std::string full = fmt::format("{}/{}", dir_, path);
    archive_entry_set_pathname(entry, full.c_str());
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    archive_entry_set_size(entry, static_cast<la_int64_t>(size));
    archive_entry_set_mtime(
        entry, std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()), 0);
    int rc = archive_write_header(archive_, entry);
    archive_entry_free(entry);
    if (rc != ARCHIVE_OK) return archiveError(fmt::format("adding {} to", path));
    return absl::OkStatus();
  }

  absl::Status writeData(const char* data, size_t size) {
    while (size > 0) {
      la_ssize_t n = archive_write_data(archive_, data, size);
      if (n <= 0) return archiveError("writing to");
      member_hash_.update(data, static_cast<size_t>(n));
      data += n;
      size -= static_cast<size_t>(n);
      added_ += static_cast<uint64_t>(n);
      if (progress_ && added_ >= next_progress_) {
        progress_(added_);
        next_progress_ = added_ + progress_every_;
      }
    }
    return absl::OkStatus();
  }

  absl::Status endMember(std::string_view path, uint64_t size) {
    std::string sha = member_hash_.hexDigest();
    if (!isReservedMember(path)) {
      files_.push_back({{"path", std::string(path)}, {"sha256", sha}, {"size", size}});
    }
    if (progress_) progress_(added_);
    return absl::OkStatus();
  }

  std::filesystem::path out_;
  std::string dir_;
  nlohmann::json fields_;
  int fd_ = -1;
  struct archive* archive_ = nullptr;
  absl::Status broken_;  // first failure: every later call returns it
  bool abandoned_ = false;  // destroyed unfinished: output is discarded while closing
  Sha256 out_hash_;
  uint64_t out_size_ = 0;
  Sha256 member_hash_;
  std::set<std::string> paths_;
  nlohmann::ordered_json files_ = nlohmann::ordered_json::array();
  std::vector<char> buffer_;
  std::function<void(uint64_t)> progress_;
  uint64_t progress_every_ = 4 << 20;
  uint64_t next_progress_ = 0;
  uint64_t added_ = 0;
};

// Reads a bundle file sequentially through libarchive (gzip + tar), hashing every byte handed
// to libarchive so the whole file's SHA-256 needs no second pass.
class BundleReader {
 public:
  explicit BundleReader(std::filesystem::path path) : path_(std::move(path)) {}
  ~BundleReader() {
    if (archive_ != nullptr) archive_read_free(archive_);
    if (fd_ >= 0) ::close(fd_);
  }

  // Error status only if the file cannot be opened.
  absl::Status open() {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      int err = errno;
      std::string msg = fmt::format("bundle {}: cannot open: {}", path_.string(), errnoText(err));
      return err == ENOENT ? absl::NotFoundError(msg) : absl::UnavailableError(msg);
    }
    buffer_.resize(kBlock);
    archive_ = archive_read_new();
    if (archive_ == nullptr) return absl::ResourceExhaustedError("archive_read_new failed");
    archive_read_support_filter_gzip(archive_);
    archive_read_support_format_tar(archive_);
    // A failure here (not gzip, not tar) shows in the first nextEntry().
    open_rc_ = archive_read_open(archive_, this, nullptr, &BundleReader::onRead, nullptr);
    return absl::OkStatus();
  }

  struct archive* archive() {
    return archive_;
  }

  // The next entry, nullptr at the end; sets error() if the stream is corrupt.
  struct archive_entry* nextEntry() {
    if (!error_.empty()) return nullptr;
    if (open_rc_ != ARCHIVE_OK) {
      setArchiveError();
      return nullptr;
    }
    struct archive_entry* entry = nullptr;
    int rc = archive_read_next_header(archive_, &entry);
    if (rc == ARCHIVE_EOF) return nullptr;
    if (rc < ARCHIVE_WARN) {
      setArchiveError();
      return nullptr;
    }
    return entry;
  }

  // Streams the current entry's data to `sink` (holes as zeros); false on a corrupt stream.
  bool readData(const std::function<void(const char*, size_t)>& sink) {
    static const char kZeros[4096] = {};
    la_int64_t pos = 0;
    for (;;) {
      const void* buf = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      int rc = archive_read_data_block(archive_, &buf, &size, &offset);
      if (rc == ARCHIVE_EOF) return true;
      if (rc < ARCHIVE_WARN) {
        setArchiveError();
        return false;
      }
      while (pos < offset) {
        size_t n = static_cast<size_t>(std::min<la_int64_t>(sizeof kZeros, offset - pos));
        sink(kZeros, n);
        pos += static_cast<la_int64_t>(n);
      }
      sink(static_cast<const char*>(buf), size);
      pos = offset + static_cast<la_int64_t>(size);
    }
  }

  // Hashes what libarchive did not read (after the tar end marker) and returns the whole
  // file's SHA-256; error status if the file cannot be read.
  absl::StatusOr<std::string> fileSha256() {
    for (;;) {
      ssize_t n = ::read(fd_, buffer_.data(), buffer_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return readError(errno);
      if (n == 0) break;
      file_hash_.update(buffer_.data(), static_cast<size_t>(n));
    }
    if (read_errno_ != 0) return readError(read_errno_);
    return file_hash_.hexDigest();
  }

  const std::string& error() const { return error_; }
  int readErrno() const { return read_errno_; }

 private:
  static la_ssize_t onRead(struct archive* a, void* self_ptr, const void** buf) {
    auto* self = static_cast<BundleReader*>(self_ptr);
    for (;;) {
      ssize_t n = ::read(self->fd_, self->buffer_.data(), self->buffer_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        self->read_errno_ = errno;
        archive_set_error(a, errno, "read failed");
        return -1;
      }
      self->file_hash_.update(self->buffer_.data(), static_cast<size_t>(n));
      *buf = self->buffer_.data();
      return n;
    }
  }

  void setArchiveError() {
    const char* msg = archive_error_string(archive_);
    error_ = msg != nullptr ? msg : "unreadable archive";
  }

  absl::Status readError(int err) {
    return absl::UnavailableError(
        fmt::format("bundle {}: read failed: {}", path_.string(), errnoText(err)));
  }

  std::filesystem::path path_;
  int fd_ = -1;
  struct archive* archive_ = nullptr;
  int open_rc_ = ARCHIVE_OK;
  std::vector<char> buffer_;
  Sha256 file_hash_;
  int read_errno_ = 0;
  std::string error_;
};

// Splits an entry path into the top directory and the path below it. `top` is set from the
// first entry. Returns nullopt and a problem text for paths outside the top directory.
struct EntryPath {
  std::string rel;      // empty for the top directory itself
  std::string problem;  // non-empty if the path is refused
};

EntryPath splitEntryPath(std::string_view full, std::string& top) {
  EntryPath out;
  std::string_view path = full;
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);  // directory entries
  if (path.empty() || path.front() == '/') {
    out.problem = "absolute path: escapes the bundle's top directory";
    return out;
  }
  size_t slash = path.find('/');
  std::string_view first = path.substr(0, slash);
  if (top.empty()) {
    if (first == "." || first == "..") {
      out.problem = "path escapes the bundle's top directory";
      return out;
    }
    top = std::string(first);
  }
  if (first != top) {
    out.problem = fmt::format("outside the bundle's top directory \"{}/\"", top);
    return out;
  }
  if (slash == std::string_view::npos) return out;  // the top directory
  out.rel = std::string(path.substr(slash + 1));
  if (!isCleanRelativePath(out.rel)) {
    out.problem = "path escapes the bundle's top directory (\".\", \"..\" or empty component)";
  }
  return out;
}

struct Member {
  std::string sha256;
  uint64_t size = 0;
};

}  // namespace

bool isCleanMemberPath(std::string_view path) { return isCleanRelativePath(path); }
bool isReservedMemberPath(std::string_view path) { return isReservedMember(path); }

absl::StatusOr<std::unique_ptr<BundleWriter>> BundleWriter::create(const std::filesystem::path& out,
                                                                   std::string dir,
                                                                   nlohmann::json manifest_fields) {
  auto writer = std::make_unique<FileBundleWriter>(out, std::move(dir), std::move(manifest_fields));
  if (auto s = writer->open(); !s.ok()) return s;
  return std::unique_ptr<BundleWriter>(std::move(writer));
}

absl::StatusOr<Verification> verifyBundle(const std::filesystem::path& bundle,
                                          const VerifyOptions& options) {
  Verification v;
  const std::string bundle_name = bundle.string();
  auto problem = [&v](std::string_view file, std::string_view text) {
    if (v.problems.size() >= kMaxProblems) {
      ++v.problems_omitted;
      return;
    }
    v.problems.push_back({boundedText(file, kMaxNameShown), boundedText(text, kMaxProblemText)});
  };
  BundleReader reader(bundle);
  if (auto s = reader.open(); !s.ok()) return s;

  std::string top;
  std::map<std::string, Member> members;
  std::map<std::string, std::string> special;  // manifest, signature, certificate, log bytes
  Sha256 hash;
  size_t entries = 0;
  bool too_many = false;
  while (struct archive_entry* entry = reader.nextEntry()) {
    if (++entries > kMaxMembers) {
      too_many = true;
      break;
    }
    const char* name = archive_entry_pathname(entry);
    EntryPath path = splitEntryPath(name != nullptr ? name : "", top);
    const std::string shown = path.rel.empty() ? std::string(name ? name : "") : path.rel;
    if (!path.problem.empty()) {
      problem(shown, path.problem);
      continue;  // its data is skipped by the next header read
    }
    if (path.rel.size() > kMaxMemberPath) {
      problem(shown,
              fmt::format("path of {} bytes: longer than {}", path.rel.size(), kMaxMemberPath));
      continue;
    }
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFDIR) continue;
    if (type != AE_IFREG) {
      problem(shown, "not a regular file");
      continue;
    }
    const bool keep = isReservedMember(path.rel) || path.rel == kCollectionLog;
    std::string kept;
    uint64_t size = 0;
    bool ok = reader.readData([&](const char* data, size_t n) {
      hash.update(data, n);
      size += n;
      if (keep && kept.size() + n <= kMaxSpecialMember) kept.append(data, n);
    });
    if (!ok) break;
    if (keep && size > kMaxSpecialMember) {
      problem(path.rel, fmt::format("{} bytes: too large to check", size));
      kept.clear();
    }
    Member m{hash.hexDigest(), size};
    if (!members.emplace(path.rel, m).second) {
      problem(path.rel, "appears twice in the archive");
      continue;
    }
    if (keep) special[path.rel] = std::move(kept);
  }
  const bool readable = reader.error().empty() && !too_many;
  if (too_many) {
    problem(bundle_name,
            fmt::format("more than {} archive entries: the rest is not checked", kMaxMembers));
  }
  if (!reader.error().empty()) {
    if (reader.readErrno() != 0) {
      return absl::UnavailableError(
          fmt::format("bundle {}: read failed: {}", bundle_name, errnoText(reader.readErrno())));
    }
    problem(bundle_name, fmt::format("corrupt archive: {}", reader.error()));
  }

  // Whole file vs the evidence id.
  auto file_sha = reader.fileSha256();
  if (!file_sha.ok()) return file_sha.status();
  if (!options.expected_sha256.empty() && *file_sha != options.expected_sha256) {
    problem(bundle_name, fmt::format("sha256 {} differs from the evidence id {}", *file_sha,
                                     options.expected_sha256));
  }

  // Members vs the manifest.
  const std::string not_checked = "not checked: the archive is unreadable before it";
  auto manifest_it = special.find(std::string(kManifest));
  if (manifest_it == special.end()) {
    problem(std::string(kManifest), readable ? "missing" : not_checked);
  } else {
    v.manifest_sha256 = members[std::string(kManifest)].sha256;
    v.manifest = nlohmann::json::parse(manifest_it->second, nullptr, false);
    if (v.manifest.is_discarded() || !v.manifest.is_object()) {
      v.manifest = nullptr;
      problem(std::string(kManifest), "not a JSON object");
    } else if (auto format = jsonString(v.manifest, "format"); format != kFormat) {
      problem(kManifest, format ? fmt::format("format \"{}\" is not \"{}\"", *format, kFormat)
                                : fmt::format("format: not the string \"{}\"", kFormat));
    }
  }
  std::set<std::string> listed;
  if (v.manifest.is_object()) {
    const auto files = v.manifest.find("files");
    if (files == v.manifest.end() || !files->is_array()) {
      problem(std::string(kManifest), "no \"files\" array");
    } else {
      for (const auto& f : *files) {
        const auto listed_path = jsonString(f, "path");
        if (!listed_path) {
          problem(kManifest,
                  fmt::format("malformed files entry {}",
                              f.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
          continue;
        }
        const std::string& path = *listed_path;
        const std::string want = jsonStringOr(f, "sha256");
        if (!listed.insert(path).second) {
          problem(path, "listed twice in the manifest");
          continue;
        }
        if (isReservedMember(path)) {
          problem(path, "listed in the manifest (it must not be)");
          continue;
        }
        auto it = members.find(path);
        if (it == members.end()) {
          problem(path, readable ? "missing" : not_checked);
          continue;
        }
        ++v.files_checked;
        if (it->second.sha256 != want) {
          problem(path,
                  fmt::format("sha256 mismatch: manifest {}, content {}", want, it->second.sha256));
        } else if (auto size = jsonUnsigned(f, "size"); size && *size != it->second.size) {
          problem(path,
                  fmt::format("size mismatch: manifest {}, content {}", *size, it->second.size));
        }
      }
    }
    for (const auto& [path, m] : members) {
      if (!isReservedMember(path) && listed.count(path) == 0) {
        problem(path, "not in the manifest");
      }
    }
  }

  // Signature and signer.
  auto sig = special.find(std::string(kSignature));
  auto crt = special.find(std::string(kCertificate));
  if (sig == special.end()) problem(std::string(kSignature), readable ? "missing" : not_checked);
  if (crt == special.end()) problem(std::string(kCertificate), readable ? "missing" : not_checked);
  if (sig != special.end() && crt != special.end() && manifest_it != special.end()) {
    bool ok = true;
    if (auto s = checkSignature(crt->second, manifest_it->second, sig->second); !s.ok()) {
      problem(std::string(kSignature), fmt::format("{} (manifest.json, agent.crt)", s));
      ok = false;
    }
    if (!options.ca_pem.empty()) {
      if (auto s = checkSigner(crt->second, options.ca_pem, options.expected_host_id); !s.ok()) {
        problem(std::string(kCertificate), fmt::format("{}", s));
        ok = false;
      }
    }
    if (auto id = identityFromCertPem(crt->second); id.ok() && v.manifest.is_object()) {
      const std::string host = jsonStringOr(v.manifest, "host_id");
      if (host != id->name) {
        problem(std::string(kManifest),
                fmt::format("host_id \"{}\" is not the signer's \"{}\"", host, id->name));
        ok = false;
      }
    }
    if (options.ca_pem.empty() && !options.expected_host_id.empty() && v.manifest.is_object() &&
        jsonStringOr(v.manifest, "host_id") != options.expected_host_id) {
      problem(kManifest,
              fmt::format("host_id \"{}\" is not the expected \"{}\"",
                          jsonStringOr(v.manifest, "host_id"), options.expected_host_id));
      ok = false;
    }
    v.signature_ok = ok;
  }

  // Collectors that did not finish cleanly.
  size_t collector_errors_omitted = 0;
  if (auto log = special.find(std::string(kCollectionLog)); log != special.end()) {
    std::string_view text = log->second;
    while (!text.empty()) {
      size_t nl = text.find('\n');
      std::string_view line = text.substr(0, nl);
      text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      const std::string status = jsonStringOr(j, "status");
      if (status == "ok") continue;
      if (v.collector_errors.size() >= kMaxCollectorErrors) {
        ++collector_errors_omitted;
        continue;
      }
      v.collector_errors.push_back(
          boundedText(fmt::format("{}: {}: {}", jsonStringOr(j, "collector", "?"), status,
                                  jsonStringOr(j, "error")),
                      kMaxCollectorErrorText));
    }
  }
  if (collector_errors_omitted > 0) {
    v.collector_errors.push_back(
        fmt::format("... and {} more collectors not ok", collector_errors_omitted));
  }
  if (v.problems_omitted > 0) {
    v.problems.push_back({boundedText(bundle_name, kMaxNameShown),
                          fmt::format("... and {} more problems not listed", v.problems_omitted)});
  }
  return v;
}

absl::StatusOr<std::map<std::string, std::string>> readMembers(
    const std::filesystem::path& bundle, const std::vector<std::string>& paths,
    uint64_t max_bytes) {
  BundleReader reader(bundle);
  if (auto s = reader.open(); !s.ok()) return s;
  std::set<std::string> wanted(paths.begin(), paths.end());
  std::map<std::string, std::string> found;
  std::string top;
  while (found.size() < wanted.size()) {
    struct archive_entry* entry = reader.nextEntry();
    if (entry == nullptr) break;
    const char* name = archive_entry_pathname(entry);
    EntryPath p = splitEntryPath(name != nullptr ? name : "", top);
    if (!p.problem.empty() || wanted.count(p.rel) == 0 || found.count(p.rel) > 0 ||
        archive_entry_filetype(entry) != AE_IFREG) {
      continue;
    }
    std::string out;
    bool too_big = false;
    bool ok = reader.readData([&](const char* data, size_t n) {
      if (out.size() + n > max_bytes) too_big = true;
      if (!too_big) out.append(data, n);
    });
    if (!ok) break;
    if (too_big) {
      return absl::ResourceExhaustedError(
          fmt::format("bundle {}: member {} is more than the limit of {} bytes", bundle.string(),
                      p.rel, max_bytes));
    }
    found.emplace(p.rel, std::move(out));
  }
  if (!reader.error().empty()) {
    return absl::DataLossError(
        fmt::format("bundle {}: corrupt archive: {}", bundle.string(), reader.error()));
  }
  return found;
}

absl::StatusOr<std::string> readMember(const std::filesystem::path& bundle, std::string_view path,
                                       uint64_t max_bytes) {
  auto found = readMembers(bundle, {std::string(path)}, max_bytes);
  if (!found.ok()) return found.status();
  auto it = found->find(std::string(path));
  if (it == found->end()) {
    return absl::NotFoundError(fmt::format("bundle {}: no member {}", bundle.string(), path));
  }
  return std::move(it->second);
}

}  // namespace bulkhead::evidence
