// An in-memory ArtifactSink for collector tests: records are kept as parsed JSON per artifact,
// files and copies as bytes. No caps unless set; `stop` makes stopped() true.
#pragma once

#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <openssl/evp.h>

#include "agent/collect/collector.h"

namespace bulkhead::agent::collect::testing {

class MemorySink final : public ArtifactSink {
 public:
  bool record(std::string_view artifact, const nlohmann::json& r) override {
    std::lock_guard lock(mu_);
    if (stop) return false;
    records[std::string(artifact)].push_back(r);
    return true;
  }
  bool file(std::string_view path, std::string_view bytes) override {
    std::lock_guard lock(mu_);
    if (stop) return false;
    files[std::string(path)] = std::string(bytes);
    return true;
  }
  absl::StatusOr<Copied> copy(std::string_view path, int fd, uint64_t cap) override {
    std::string data;
    char buf[65536];
    off_t off = 0;
    Copied c;
    for (;;) {
      ssize_t n = ::pread(fd, buf, sizeof buf, off);
      if (n < 0) return absl::InternalError("pread failed");
      if (n == 0) break;
      uint64_t take = std::min<uint64_t>(static_cast<uint64_t>(n), cap - data.size());
      data.append(buf, take);
      off += n;
      if (data.size() >= cap) {
        char probe;
        c.truncated = ::pread(fd, &probe, 1, off) == 1 || static_cast<uint64_t>(n) > take;
        break;
      }
    }
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
    static const char* hex = "0123456789abcdef";
    for (unsigned int i = 0; i < len; ++i) {
      c.sha256 += hex[md[i] >> 4];
      c.sha256 += hex[md[i] & 15];
    }
    c.bytes = data.size();
    std::lock_guard lock(mu_);
    files[std::string(path)] = std::move(data);
    return c;
  }
  bool has(std::string_view path) const override {
    std::lock_guard lock(mu_);
    return files.count(std::string(path)) > 0;
  }
  void warn(std::string_view message) override {
    std::lock_guard lock(mu_);
    warnings.emplace_back(message);
  }
  bool stopped() const override { return stop.load(); }

  // Records of one artifact ("sockets.jsonl"); empty if none.
  std::vector<nlohmann::json> of(const std::string& artifact) const {
    std::lock_guard lock(mu_);
    auto it = records.find(artifact);
    return it == records.end() ? std::vector<nlohmann::json>{} : it->second;
  }

  std::atomic<bool> stop{false};
  std::map<std::string, std::vector<nlohmann::json>> records;
  std::map<std::string, std::string> files;
  std::vector<std::string> warnings;

 private:
  mutable std::mutex mu_;
};

}  // namespace bulkhead::agent::collect::testing
