// The CLI's contract with people and scripts: exit statuses and one clear line per error.
#include "cli/cli.h"

#include <unistd.h>

#include <filesystem>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "bulkhead/v1/operator.grpc.pb.h"
#include "common/tls/tls.h"

namespace bulkhead::cli {
namespace {

namespace fs = std::filesystem;

struct Run {
  int code;
  std::string out;
  std::string err;
};

Run run(std::vector<std::string> args) {
  std::ostringstream out;
  std::ostringstream err;
  Io io{out, err};
  int code = runCli(args, io);
  return {code, out.str(), err.str()};
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bulkhead-cli-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string pki() const { return (dir_ / "pki").string(); }
  fs::path dir_;
};

int countLines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

TEST_F(CliTest, UnknownCommandAndFlagsAreUsageErrors) {
  auto r = run({"frobnicate"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("unknown command \"frobnicate\""), std::string::npos);
  r = run({"hosts", "--bogus"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--bogus"), std::string::npos);
  EXPECT_EQ(countLines(r.err), 1);
  r = run({});
  EXPECT_EQ(r.code, kUsage);
  r = run({"--help"});
  EXPECT_EQ(r.code, kOk);
  EXPECT_NE(r.out.find("pki init"), std::string::npos);
}

TEST_F(CliTest, BadValuesNameTheFlag) {
  auto r = run({"--timeout", "soon", "hosts"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--timeout"), std::string::npos);
  r = run({"hosts", "--selector", "role"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--selector"), std::string::npos);
  r = run({"--controller", "nohostport", "--identity", "/nonexistent", "hosts"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--controller"), std::string::npos);
}

TEST_F(CliTest, MissingIdentityIsAUsageError) {
  auto r = run({"--controller", "127.0.0.1:1", "--identity", (dir_ / "none").string(), "hosts"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("identity"), std::string::npos);
  EXPECT_EQ(countLines(r.err), 1);
}

TEST_F(CliTest, PkiInitIssuesAndRefusesToReplaceTheCa) {
  auto r = run({"pki", "init", "--dir", pki(), "--controller-ip", "10.77.0.1",
                "--controller-ip", "fd77::1"});
  ASSERT_EQ(r.code, kOk) << r.err;
  auto ctl = loadIdentity(dir_ / "pki" / "controller");
  ASSERT_TRUE(ctl.ok()) << ctl.status();
  EXPECT_EQ(ctl->self.kind, PeerKind::kController);
  auto admin = loadIdentity(dir_ / "pki" / "operators" / "admin");
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(admin->self.role, Role::kAdmin);
  EXPECT_EQ(fs::status(dir_ / "pki" / "ca" / "ca.key").permissions() & fs::perms::group_read,
            fs::perms::none);

  r = run({"pki", "init", "--dir", pki()});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("refusing"), std::string::npos);

  r = run({"pki", "issue", "agent", "--host-id", "web-03", "--dir", pki()});
  ASSERT_EQ(r.code, kOk) << r.err;
  auto agent = loadIdentity(dir_ / "pki" / "agents" / "web-03");
  ASSERT_TRUE(agent.ok());
  EXPECT_EQ(agent->self.kind, PeerKind::kAgent);
  EXPECT_EQ(agent->self.name, "web-03");

  r = run({"pki", "issue", "agent", "--host-id", "web-03", "--dir", pki()});
  EXPECT_EQ(r.code, kUsage) << "an existing identity is never overwritten";

  r = run({"pki", "issue", "operator", "--name", "carol", "--role", "root", "--dir", pki()});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("role"), std::string::npos);
}

// Operator tokens and enrollment: bad input is one line naming the flag, before anything is
// sent or written.
TEST_F(CliTest, OperatorTokensAndEnrollmentRefuseBadInputBeforeAnyCall) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  const std::vector<std::string> admin = {"--controller", "127.0.0.1:1", "--identity",
                                          pki() + "/operators/admin"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.begin(), admin.begin(), admin.end());
    return run(args);
  };
  auto r = with({"tokens", "create", "--operator", "dave", "--reason", "r"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--role: required"), std::string::npos) << r.err;
  r = with({"tokens", "create", "--operator", "dave", "--role", "none", "--reason", "r"});
  EXPECT_NE(r.err.find("--role: invalid value \"none\""), std::string::npos) << r.err;
  r = with({"tokens", "create", "--operator", "dave", "--role", "viewer", "--uses", "3", "--reason",
            "r"});
  EXPECT_NE(r.err.find("--uses: an operator token enrolls one operator"), std::string::npos);
  r = with({"tokens", "create", "--operator", "dave", "--role", "viewer", "--labels", "a=b",
            "--reason", "r"});
  EXPECT_NE(r.err.find("--labels"), std::string::npos);
  r = with({"tokens", "create", "--role", "viewer", "--reason", "r"});
  EXPECT_NE(r.err.find("name it with --operator"), std::string::npos);
  EXPECT_EQ(countLines(r.err), 1);

  const std::string ident = (dir_ / "new-operator").string();
  r = run({"--identity", ident, "enroll", "--token", "bhjt1.garbage"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_EQ(countLines(r.err), 1) << r.err;
  r = run({"enroll", "--token", "bhjt1.x"});
  EXPECT_EQ(r.code, kUsage);
  r = run({"--identity", pki() + "/operators/admin", "enroll", "--token-file",
           (dir_ / "no-such-file").string()});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--token-file"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ / "new-operator"));
}

TEST_F(CliTest, PkiRejectsBadInput) {
  EXPECT_EQ(run({"pki", "init", "--dir", pki(), "--controller-ip", "10.77.0.300"}).code, kUsage);
  EXPECT_FALSE(fs::exists(dir_ / "pki" / "ca")) << "nothing is written on bad input";
  EXPECT_EQ(run({"pki", "issue", "agent", "--host-id", "a/b", "--dir", pki()}).code, kUsage);
  EXPECT_EQ(run({"pki", "issue", "agent", "--host-id", "x", "--dir", pki()}).code, kUsage)
      << "no CA yet";
  EXPECT_EQ(run({"pki", "issue", "robot", "--dir", pki()}).code, kUsage);
}

TEST_F(CliTest, UnreachableControllerExitsOne) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  auto r = run({"--controller", "127.0.0.1:1", "--identity", pki() + "/operators/admin",
                "--timeout", "2s", "hosts"});
  EXPECT_EQ(r.code, kFailed);
  EXPECT_NE(r.err.find("cannot reach the controller at 127.0.0.1:1"), std::string::npos);
  EXPECT_EQ(countLines(r.err), 1);
}

// A stand-in controller with the pki's controller identity: answers ListHosts with one host
// named after itself, so a test sees which of several controllers took the call.
class NamedController final : public v1::Operator::CallbackService {
 public:
  NamedController(const std::string& pki, std::string name) : name_(std::move(name)) {
    auto id = loadIdentity(fs::path(pki) / "controller");
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", serverCredentials(*id), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~NamedController() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  grpc::ServerUnaryReactor* ListHosts(grpc::CallbackServerContext* ctx,
                                      const v1::ListHostsRequest* /*request*/,
                                      v1::ListHostsResponse* response) override {
    response->add_hosts()->set_host_id(name_);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  std::string name_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(CliTest, SeveralControllersTheFirstThatConnectsTakesTheCall) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  NamedController a(pki(), "from-a");
  NamedController b(pki(), "from-b");
  ASSERT_FALSE(a.address().ends_with(":0"));
  ASSERT_FALSE(b.address().ends_with(":0"));
  const std::string admin = pki() + "/operators/admin";
  const std::string down = "127.0.0.1:1";  // refused

  // All up: the first, and nothing said.
  auto r = run(
      {"--controller", a.address() + "," + b.address(), "--identity", admin, "--json", "hosts"});
  EXPECT_EQ(r.code, kOk) << r.err;
  EXPECT_NE(r.out.find("from-a"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");

  // The first refuses: the next takes the call, and the skipped one is named.
  r = run({"--controller", down + "," + b.address(), "--identity", admin, "--json", "hosts"});
  EXPECT_EQ(r.code, kOk) << r.err;
  EXPECT_NE(r.out.find("from-b"), std::string::npos) << r.out;
  EXPECT_EQ(countLines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("controller " + down + " did not connect"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("trying " + b.address()), std::string::npos) << r.err;

  // Two down, the third up.
  r = run({"--controller", down + ",127.0.0.1:2," + a.address(), "--identity", admin, "--json",
           "hosts"});
  EXPECT_EQ(r.code, kOk) << r.err;
  EXPECT_NE(r.out.find("from-a"), std::string::npos) << r.out;
  EXPECT_EQ(countLines(r.err), 2) << r.err;

  // None up: failed as with one controller, the last named, each skipped one named before it.
  r = run({"--controller", down + ",127.0.0.1:2", "--identity", admin, "--timeout", "2s", "hosts"});
  EXPECT_EQ(r.code, kFailed);
  EXPECT_NE(r.err.find("did not connect"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cannot reach the controller at 127.0.0.1:2"), std::string::npos) << r.err;
  EXPECT_EQ(countLines(r.err), 2) << r.err;

  // A bad entry anywhere is a usage error before anything is dialled.
  r = run({"--controller", a.address() + ",nohostport", "--identity", admin, "hosts"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--controller"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nohostport"), std::string::npos) << r.err;
  r = run({"--controller", a.address() + ",", "--identity", admin, "hosts"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--controller"), std::string::npos) << r.err;
}

TEST_F(CliTest, AgentIdentityCannotBeUsedAsOperator) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  ASSERT_EQ(run({"pki", "issue", "agent", "--host-id", "h1", "--dir", pki()}).code, kOk);
  auto r = run({"--controller", "127.0.0.1:1", "--identity", pki() + "/agents/h1", "hosts"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("not an operator"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::cli
