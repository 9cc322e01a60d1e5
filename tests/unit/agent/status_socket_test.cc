#include "agent/linux/status_socket.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/daemon/agent_status.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/bulkhead-sock-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(StatusSocket, ServesOneDocumentToAllowedUidOnly) {
  TempDir dir;
  fs::path sock = dir.path() / "agent.sock";
  int served = 0;
  {
    auto server = StatusSocketServer::create(sock, [&] {
      ++served;
      return std::string("{\"ok\":true}\n");
    }, ::getuid());
    ASSERT_TRUE(server.ok()) << server.status();
    struct stat st {};
    ASSERT_EQ(::stat(sock.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto doc = queryStatusSocket(sock, 2s);
    ASSERT_TRUE(doc.ok()) << doc.status();
    EXPECT_EQ(*doc, "{\"ok\":true}\n");
    EXPECT_EQ(*queryStatusSocket(sock, 2s), "{\"ok\":true}\n");
    EXPECT_EQ(served, 2);
  }
  EXPECT_FALSE(fs::exists(sock));   // removed on shutdown
  auto gone = queryStatusSocket(sock, 1s);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kUnavailable);
}

TEST(StatusSocket, OtherUidsGetAnErrorNotTheDocument) {
  TempDir dir;
  fs::path sock = dir.path() / "agent.sock";
  auto server = StatusSocketServer::create(sock, [] { return std::string("secret"); },
                                           ::getuid() + 1);
  ASSERT_TRUE(server.ok()) << server.status();
  auto doc = queryStatusSocket(sock, 2s);
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(doc->find("secret"), std::string::npos);
  EXPECT_NE(doc->find("permission denied"), std::string::npos);
}

TEST(StatusSocket, TooLongPathIsRejected) {
  auto server = StatusSocketServer::create(fs::path("/tmp") / std::string(200, 'x'),
                                           [] { return std::string(); });
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AgentStatusJson, CarriesTheFieldsOperatorsRead) {
  AgentStatus s;
  s.host_id = "web-03";
  s.controller = "10.77.0.2:7443";
  s.connected = true;
  s.controller_target = "ipv4:10.77.0.2:7443";
  s.connected_since_unix_ms = 1700000000000;
  s.last_connect_error = "UNAVAILABLE: x";
  s.enforced_generation = 4;
  s.ruleset_hash = "ab";
  s.isolated = true;
  v1::TamperEvent e;
  e.set_at_unix_ms(1700000001000);
  e.set_what("table deleted");
  e.set_restored(true);
  s.tamper_events.push_back(e);
  auto j = nlohmann::json::parse(statusToJson(s, 1700000002000));
  EXPECT_EQ(j["host_id"], "web-03");
  EXPECT_EQ(j["controller"]["connected"], true);
  EXPECT_EQ(j["controller"]["target"], "ipv4:10.77.0.2:7443");
  EXPECT_EQ(j["controller"]["connected_since"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(j["controller"]["last_connect_error"], "UNAVAILABLE: x");
  EXPECT_EQ(j["enforcement"]["enforced_generation"], 4);
  EXPECT_EQ(j["enforcement"]["ruleset_hash"], "ab");
  EXPECT_EQ(j["isolation"]["enabled"], true);
  EXPECT_EQ(j["last_tamper_event"]["what"], "table deleted");
}

}  // namespace
}  // namespace bulkhead::agent
