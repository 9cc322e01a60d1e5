// Operator request checks: printable text within limits, numbers within ranges.
#include "controller/core/validate.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

void expectInvalid(const absl::Status& s, const std::string& field_and_more) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(std::string(s.message()).rfind(field_and_more, 0), 0u) << s.message();
}

IsolateRequest isolate(const std::string& reason) {
  return IsolateRequest{.hosts = {"web-01"}, .reason = reason};
}

TEST(ValidateText, ControlCharactersInReasonsAreRefusedAndNamed) {
  auto s = validateRequest(isolate("INC-1\n2026-01-01 alice isolate web-02 ok"));
  expectInvalid(s, "reason: invalid value \"INC-1\\n2026-01-01");
  EXPECT_NE(s.message().find("\\n at byte 5"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  expectInvalid(validateRequest(isolate("INC-1 \x1b[2J")), "reason:");
  expectInvalid(validateRequest(isolate("INC-1 \x7f")), "reason:");
  expectInvalid(validateRequest(isolate(std::string("INC-1 \0", 7))), "reason:");
  expectInvalid(validateRequest(isolate("INC-1\tx")), "reason:");
  expectInvalid(validateRequest(isolate("INC-1 \xff")), "reason:");
  expectInvalid(validateRequest(isolate("INC-1 \xe2\x80\xae")), "reason:");
}

TEST(ValidateText, PrintableUtf8IsAccepted) {
  EXPECT_TRUE(
      validateRequest(isolate("INC-77: caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \"quoted\" \\ ok"))
          .ok());
}

TEST(ValidateText, IdsSelectorsSetsAndPathsAreChecked) {
  auto r = isolate("INC-1");
  r.hosts.emplace_back("web-02\nforged");
  expectInvalid(validateRequest(r), "hosts: invalid value \"web-02\\nforged\"");
  r = isolate("INC-1");
  r.exempt_sets.emplace_back("db\x1b]0;x\x07");
  expectInvalid(validateRequest(r), "exempt_sets:");
  r = isolate("INC-1");
  r.selector = "role=web\r";
  expectInvalid(validateRequest(r), "selector:");
  expectInvalid(validateRequest(GetHostRequest{.host = "web-01\n"}), "host:");
  KillProcessRequest k{.host = "web-01", .reason = "x"};
  k.match.set_exe("/usr/bin/\x1b");
  expectInvalid(validateRequest(k), "exe:");
  KillSessionsRequest ks{.host = "web-01", .reason = "x"};
  ks.match.set_user("root\n");
  expectInvalid(validateRequest(ks), "user:");
  expectInvalid(validateRequest(ListHostsRequest{.selector = "a=b\x7f"}), "selector:");
  expectInvalid(validateRequest(ListEvidenceRequest{.host = std::string("h\0", 2)}), "host:");
  expectInvalid(validateRequest(ListBlocksRequest{.host = "web\x1b"}), "host:");
  expectInvalid(validateRequest(KillConnectionsRequest{.host = "web-01", .remote_cidr = "10.77.0.1\n"}),
                "remote_cidr:");
  EXPECT_EQ(checkText("id", "abc\x1b", kMaxIdBytes).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateText, LengthsAreBounded) {
  expectInvalid(validateRequest(isolate(std::string(kMaxReasonBytes + 1, 'x'))),
                "reason: invalid value \"xxxx");
  EXPECT_TRUE(validateRequest(isolate(std::string(kMaxReasonBytes, 'x'))).ok());
  auto r = isolate("INC-1");
  r.hosts.emplace_back(kMaxIdBytes + 1, 'h');
  expectInvalid(validateRequest(r), "hosts:");
  r = isolate("INC-1");
  r.hosts.assign(kMaxHostsPerRequest + 1, "web-01");
  expectInvalid(validateRequest(r), "hosts: 10001 values given, at most 10000 allowed");
}

TEST(ValidateRange, TtlNearInt64MaxIsRefused) {
  auto r = isolate("INC-1");
  r.ttl_ms = std::numeric_limits<int64_t>::max() - 1000;
  expectInvalid(validateRequest(r),
                "ttl_ms: invalid value 9223372036854774807 ms: must be between 0 ms and");
  r.ttl_ms = -1;
  expectInvalid(validateRequest(r), "ttl_ms:");
  r.ttl_ms = kMaxTtlMs;
  EXPECT_TRUE(validateRequest(r).ok());
  BlockRequest b{.all = true,
                 .remote_cidr = "10.77.0.66",
                 .protocol = v1::PROTOCOL_ANY,
                 .ttl_ms = kMaxTtlMs + 1,
                 .reason = "x"};
  expectInvalid(validateRequest(b), "ttl_ms:");
}

TEST(ValidateRange, EveryNumericFieldIsChecked) {
  auto r = isolate("INC-1");
  r.wait_ms = kMaxWaitMs + 1;
  expectInvalid(validateRequest(r), "wait_ms:");
  BlockRequest b{.all = true, .port = 65536, .reason = "x"};
  expectInvalid(validateRequest(b), "port: invalid value 65536: must be between 0 and 65535");
  b.port = 443;
  b.protocol = static_cast<v1::Protocol>(99);
  expectInvalid(validateRequest(b), "protocol: invalid value 99");
  b.protocol = v1::PROTOCOL_TCP;
  EXPECT_TRUE(validateRequest(b).ok());
  b.direction = static_cast<v1::Direction>(-3);
  expectInvalid(validateRequest(b), "direction:");
  expectInvalid(validateRequest(UnblockRequest{.port = 70000}), "port:");
  expectInvalid(validateRequest(KillConnectionsRequest{.port = 1u << 20}), "port:");
  KillProcessRequest k;
  k.match.set_pid(-5);
  expectInvalid(validateRequest(k), "pid:");
  k.match.set_pid(kMaxPid + 1);
  expectInvalid(validateRequest(k), "pid:");
  k.match.set_pid(4242);
  EXPECT_TRUE(validateRequest(k).ok());
  KillSessionsRequest ks;
  ks.match.set_session_id(kUnsetSessionId);
  expectInvalid(validateRequest(ks), "session:");
  expectInvalid(validateRequest(ListSessionsRequest{.wait_ms = std::numeric_limits<uint32_t>::max()}),
                "wait_ms:");
  CaptureRequest c{.collector_time_limit_ms = kMaxCollectorTimeLimitMs + 1};
  expectInvalid(validateRequest(c), "collector_time_limit_ms:");
  c.collector_time_limit_ms = 0;
  c.max_binary_bytes = std::numeric_limits<uint64_t>::max();
  expectInvalid(validateRequest(c), "max_binary_bytes: invalid value 18446744073709551615 bytes");
  ListAuditRequest a{.before_id = -1};
  expectInvalid(validateRequest(a), "before_id: invalid value -1");
  a.before_id = 0;
  a.limit = std::numeric_limits<uint32_t>::max();   // clamped by the listing, not refused
  EXPECT_TRUE(validateRequest(a).ok());
}

TEST(ValidateProtocol, BlockAndUnblockRequireAnExplicitProtocol) {
  BlockRequest b{.all = true, .protocol = v1::PROTOCOL_UNSPECIFIED, .reason = "x"};
  expectInvalid(validateRequest(b), "protocol: required: any, tcp or udp");
  b.protocol = v1::PROTOCOL_ANY;
  EXPECT_TRUE(validateRequest(b).ok());
  UnblockRequest u{.all = true, .protocol = v1::PROTOCOL_UNSPECIFIED};
  expectInvalid(validateRequest(u), "protocol: required: any, tcp or udp");
  u.protocol = v1::PROTOCOL_UDP;
  EXPECT_TRUE(validateRequest(u).ok());
}

TEST(ValidateTargets, IsolateAndReleaseRefuseAll) {
  auto r = isolate("INC-1");
  EXPECT_TRUE(validateRequest(r).ok());
  r.hosts.clear();
  r.all = true;
  expectInvalid(validateRequest(r), "targets: all: not accepted here");
  ReleaseRequest rel{.all = true};
  expectInvalid(validateRequest(rel), "targets: all: not accepted here");
  rel.all = false;
  rel.selector = "role=web";
  EXPECT_TRUE(validateRequest(rel).ok());
}

}  // namespace
}  // namespace bulkhead::controller
