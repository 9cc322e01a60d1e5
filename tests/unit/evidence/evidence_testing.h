// Test helpers for evidence bundles: a temporary directory, a fleet CA with an agent
// certificate (in memory), running a shell command.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "common/pki/pki.h"
#include "evidence/signing.h"

namespace bulkhead::evidence::testing {

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("bulkhead-evidence-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A fleet CA and an agent certificate for host "web-03", made once per test binary.
struct Pki {
  CertAndKey ca;
  CertAndKey agent;  // CN=web-03, OU=agent

  static const Pki& get() {
    static const Pki pki = [] {
      Pki p;
      auto made_ca = createCa("test-ca", std::chrono::hours(24));
      EXPECT_TRUE(made_ca.ok());
      p.ca = *made_ca;
      CertRequest req;
      req.kind = PeerKind::kAgent;
      req.name = "web-03";
      auto issued = issueCert(p.ca, req);
      EXPECT_TRUE(issued.ok());
      p.agent = *issued;
      return p;
    }();
    return pki;
  }
  static Signer signer() {
    auto s = Signer::fromPem(get().agent.key_pem, get().agent.cert_pem);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  }
};

inline std::string readFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void writeFile(const std::filesystem::path& p, const std::string& bytes) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Runs `cmd` with /bin/sh; returns its exit status (-1 if it did not exit normally).
inline int sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace bulkhead::evidence::testing
