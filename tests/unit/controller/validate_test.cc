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

v1::IsolateRequest isolate(const std::string& reason) {
  v1::IsolateRequest r;
  r.mutable_targets()->mutable_hosts()->add_ids("web-01");
  r.set_reason(reason);
  return r;
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
  r.mutable_targets()->mutable_hosts()->add_ids("web-02\nforged");
  expectInvalid(validateRequest(r), "hosts: invalid value \"web-02\\nforged\"");
  r = isolate("INC-1");
  r.add_exempt_sets("db\x1b]0;x\x07");
  expectInvalid(validateRequest(r), "exempt_sets:");
  r = isolate("INC-1");
  r.mutable_targets()->set_selector("role=web\r");
  expectInvalid(validateRequest(r), "selector:");
  v1::GetHostRequest g;
  g.set_host("web-01\n");
  expectInvalid(validateRequest(g), "host:");
  v1::KillProcessRequest k;
  k.set_host("web-01");
  k.set_reason("x");
  k.mutable_match()->set_exe("/usr/bin/\x1b");
  expectInvalid(validateRequest(k), "exe:");
  v1::KillSessionsRequest ks;
  ks.set_host("web-01");
  ks.set_reason("x");
  ks.mutable_match()->set_user("root\n");
  expectInvalid(validateRequest(ks), "user:");
  v1::ListHostsRequest lh;
  lh.set_selector("a=b\x7f");
  expectInvalid(validateRequest(lh), "selector:");
  v1::ListEvidenceRequest le;
  le.set_host(std::string("h\0", 2));
  expectInvalid(validateRequest(le), "host:");
  EXPECT_EQ(checkText("id", "abc\x1b", kMaxIdBytes).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateText, LengthsAreBounded) {
  expectInvalid(validateRequest(isolate(std::string(kMaxReasonBytes + 1, 'x'))),
                "reason: invalid value \"xxxx");
  EXPECT_TRUE(validateRequest(isolate(std::string(kMaxReasonBytes, 'x'))).ok());
  auto r = isolate("INC-1");
  r.mutable_targets()->mutable_hosts()->add_ids(std::string(kMaxIdBytes + 1, 'h'));
  expectInvalid(validateRequest(r), "hosts:");
}

TEST(ValidateRange, TtlNearInt64MaxIsRefused) {
  auto r = isolate("INC-1");
  r.set_ttl_ms(std::numeric_limits<int64_t>::max() - 1000);
  expectInvalid(validateRequest(r),
                "ttl_ms: invalid value 9223372036854774807 ms: must be between 0 ms and");
  r.set_ttl_ms(-1);
  expectInvalid(validateRequest(r), "ttl_ms:");
  r.set_ttl_ms(kMaxTtlMs);
  EXPECT_TRUE(validateRequest(r).ok());
  v1::BlockRequest b;
  b.mutable_targets()->set_all(true);
  b.mutable_match()->set_remote_cidr("10.77.0.66");
  b.mutable_match()->set_protocol(v1::PROTOCOL_ANY);
  b.set_reason("x");
  b.set_ttl_ms(kMaxTtlMs + 1);
  expectInvalid(validateRequest(b), "ttl_ms:");
}

TEST(ValidateRange, EveryNumericFieldIsChecked) {
  auto r = isolate("INC-1");
  r.set_wait_ms(kMaxWaitMs + 1);
  expectInvalid(validateRequest(r), "wait_ms:");
  v1::BlockRequest b;
  b.mutable_targets()->set_all(true);
  b.set_reason("x");
  b.mutable_match()->set_port(65536);
  expectInvalid(validateRequest(b), "port: invalid value 65536: must be between 0 and 65535");
  b.mutable_match()->set_port(443);
  b.mutable_match()->set_protocol(static_cast<v1::Protocol>(99));
  expectInvalid(validateRequest(b), "protocol: invalid value 99");
  b.mutable_match()->set_protocol(v1::PROTOCOL_TCP);
  EXPECT_TRUE(validateRequest(b).ok());
  b.mutable_match()->set_direction(static_cast<v1::Direction>(-3));
  expectInvalid(validateRequest(b), "direction:");
  v1::UnblockRequest u;
  u.mutable_match()->set_port(70000);
  expectInvalid(validateRequest(u), "port:");
  v1::KillConnectionsRequest kc;
  kc.set_port(1u << 20);
  expectInvalid(validateRequest(kc), "port:");
  v1::KillProcessRequest k;
  k.mutable_match()->set_pid(-5);
  expectInvalid(validateRequest(k), "pid:");
  k.mutable_match()->set_pid(kMaxPid + 1);
  expectInvalid(validateRequest(k), "pid:");
  k.mutable_match()->set_pid(4242);
  EXPECT_TRUE(validateRequest(k).ok());
  v1::KillSessionsRequest ks;
  ks.mutable_match()->set_session_id(kUnsetSessionId);
  expectInvalid(validateRequest(ks), "session:");
  v1::ListSessionsRequest ls;
  ls.set_wait_ms(std::numeric_limits<uint32_t>::max());
  expectInvalid(validateRequest(ls), "wait_ms:");
  v1::CaptureRequest c;
  c.set_collector_time_limit_ms(kMaxCollectorTimeLimitMs + 1);
  expectInvalid(validateRequest(c), "collector_time_limit_ms:");
  c.set_collector_time_limit_ms(0);
  c.set_max_binary_bytes(std::numeric_limits<uint64_t>::max());
  expectInvalid(validateRequest(c), "max_binary_bytes: invalid value 18446744073709551615 bytes");
  v1::ListAuditRequest a;
  a.set_before_id(-1);
  expectInvalid(validateRequest(a), "before_id: invalid value -1");
  a.set_before_id(0);
  a.set_limit(std::numeric_limits<uint32_t>::max());   // clamped by the listing, not refused
  EXPECT_TRUE(validateRequest(a).ok());
}

TEST(ValidateProtocol, BlockAndUnblockRequireAnExplicitProtocol) {
  v1::BlockRequest b;
  b.mutable_targets()->set_all(true);
  b.set_reason("x");
  expectInvalid(validateRequest(b), "protocol: required: any, tcp or udp");
  b.mutable_match()->set_protocol(v1::PROTOCOL_ANY);
  EXPECT_TRUE(validateRequest(b).ok());
  v1::UnblockRequest u;
  u.mutable_targets()->set_all(true);
  expectInvalid(validateRequest(u), "protocol: required: any, tcp or udp");
  u.mutable_match()->set_protocol(v1::PROTOCOL_UDP);
  EXPECT_TRUE(validateRequest(u).ok());
}

TEST(ValidateTargets, IsolateAndReleaseRefuseAll) {
  auto r = isolate("INC-1");
  EXPECT_TRUE(validateRequest(r).ok());
  r.mutable_targets()->set_all(true);   // replaces the host ids: one target kind at a time
  EXPECT_EQ(r.targets().hosts().ids_size(), 0);
  expectInvalid(validateRequest(r), "targets: all: not accepted here");
  v1::ReleaseRequest rel;
  rel.mutable_targets()->set_all(true);
  expectInvalid(validateRequest(rel), "targets: all: not accepted here");
  rel.mutable_targets()->set_selector("role=web");
  EXPECT_TRUE(validateRequest(rel).ok());
}

}  // namespace
}  // namespace bulkhead::controller
