#include "controller/core/containment.h"

#include <gtest/gtest.h>

#include "tests/unit/controller/fake_clock.h"
#include "tests/unit/controller/test_policies.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using std::chrono::milliseconds;

std::map<std::string, TargetHost> fleet() {
  return {
      {"db-01", {{{"role", "db"}, {"env", "prod"}}, {"10.77.1.21/16"}, true}},
      {"web-01", {{{"role", "web"}, {"env", "prod"}}, {"10.77.1.11/16", "fd77::11/64"}, true}},
      {"web-02", {{{"role", "web"}, {"env", "test"}}, {"10.77.1.12/16"}, false}},
      {"web-03", {{{"role", "web"}, {"env", "prod"}}, {"10.77.1.13/16"}, true}},
  };
}

TEST(ResolveTargets, ExplicitHostsInRequestOrderWithoutDuplicates) {
  auto t = resolveTargets(fleet(), {{"web-02", "db-01", "web-02"}, "", false}, 10);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, (std::vector<std::string>{"web-02", "db-01"}));
}

TEST(ResolveTargets, UnknownHostIsNamedAndNothingResolves) {
  auto t = resolveTargets(fleet(), {{"web-01", "nope-9"}, "", false}, 10);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.status().message(), "unknown host \"nope-9\"");
  auto two = resolveTargets(fleet(), {{"a", "web-01", "b"}, "", false}, 10);
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.status().message(), "unknown hosts \"a\", \"b\"");
}

TEST(ResolveTargets, NeitherOrBothAreInvalid) {
  EXPECT_EQ(resolveTargets(fleet(), {{}, "", false}, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(resolveTargets(fleet(), {{"web-01"}, "role=web", false}, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ResolveTargets, SelectorMatchesInIdOrder) {
  auto t = resolveTargets(fleet(), {{}, "role=web,env=prod", false}, 10);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, (std::vector<std::string>{"web-01", "web-03"}));
}

TEST(ResolveTargets, BadOrEmptySelector) {
  auto bad = resolveTargets(fleet(), {{}, "role", false}, 10);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(bad.status().message()).find("selector"), std::string::npos);
  auto none = resolveTargets(fleet(), {{}, "role=cache", false}, 10);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(none.status().message()).find("role=cache"), std::string::npos);
}

TEST(ResolveTargets, SelectorOverTheLimitNeedsYes) {
  auto over = resolveTargets(fleet(), {{}, "role=web", false}, 2);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(over.status().message()).find("matches 3 hosts"), std::string::npos);
  EXPECT_TRUE(resolveTargets(fleet(), {{}, "role=web", true}, 2).ok());
  EXPECT_TRUE(resolveTargets(fleet(), {{}, "role=web", false}, 3).ok());   // at the limit
  // The limit is about selectors: explicit lists name every host already.
  EXPECT_TRUE(resolveTargets(fleet(), {{"web-01", "web-02", "web-03"}, "", false}, 2).ok());
}

std::vector<v1::Endpoint> endpoints() {
  v1::Endpoint a;
  a.set_ip("10.77.0.1");
  a.set_port(7443);
  v1::Endpoint b;
  b.set_ip("fd77::1");
  b.set_port(7443);
  return {a, b};
}

TEST(Guardrail, ControllerOwnHostIsRecognisedByAnyEndpointAddress) {
  EXPECT_EQ(controllerAddressOf({"10.77.0.1/16"}, endpoints()), "10.77.0.1");
  EXPECT_EQ(controllerAddressOf({"10.77.9.9/16", "fd77:0::1/64"}, endpoints()), "fd77::1");
  EXPECT_EQ(controllerAddressOf({"::ffff:10.77.0.1"}, endpoints()), "10.77.0.1");
  EXPECT_FALSE(controllerAddressOf({"10.77.0.10/16", "fd77::10/64"}, endpoints()));
  EXPECT_FALSE(controllerAddressOf({"garbage"}, endpoints()));
  EXPECT_FALSE(controllerAddressOf({"10.77.0.1/16"}, {}));
}

TEST(Guardrail, LoopbackNeverMarksAHostAsTheControllers) {
  // A controller listening on loopback (or a certificate naming it) does not make every host
  // that claims 127.0.0.1 or ::1 the controller's own.
  std::vector<v1::Endpoint> eps = endpoints();
  for (const char* ip : {"127.0.0.1", "::1"}) {
    v1::Endpoint e;
    e.set_ip(ip);
    e.set_port(7443);
    eps.push_back(e);
  }
  EXPECT_FALSE(controllerAddressOf({"127.0.0.1/8"}, eps));
  EXPECT_FALSE(controllerAddressOf({"::1/128"}, eps));
  EXPECT_FALSE(controllerAddressOf({"::ffff:127.0.0.1"}, eps));
  EXPECT_EQ(controllerAddressOf({"127.0.0.1/8", "10.77.0.1/32"}, eps), "10.77.0.1");
}

TEST(Generations, AReportedGenerationIsBoundByWhatTheControllerIssued) {
  EXPECT_EQ(acceptedGeneration(0, 0), 0u);
  EXPECT_EQ(acceptedGeneration(4, 5), 4u);
  EXPECT_EQ(acceptedGeneration(5, 5), 5u);
  EXPECT_FALSE(acceptedGeneration(6, 5));
  EXPECT_FALSE(acceptedGeneration(UINT64_MAX, 5));
  EXPECT_FALSE(acceptedGeneration(1, 0));
}

TEST(DesiredState, IsolateBumpsGenerationKeepsBlocksAndAlwaysCarriesEndpoints) {
  v1::DesiredState cur;
  cur.set_generation(4);
  cur.add_blocks()->set_remote_cidr("10.77.6.6/32");
  IsolationSpec spec;
  spec.set_names = {"ir-jump-host"};
  v1::ExemptionRule r;
  r.set_direction(v1::DIRECTION_IN);
  r.set_remote_cidr("10.77.0.40/32");
  r.set_set_name("ir-jump-host");
  spec.rules = {r};
  spec.expires_at_unix_ms = 1234;
  spec.reason = "INC-42";
  spec.requested_by = "alice";
  auto next = isolatedState(cur, spec, endpoints());
  EXPECT_EQ(next.generation(), 5u);
  EXPECT_TRUE(next.isolation().enabled());
  EXPECT_EQ(next.isolation().exemption_sets(0), "ir-jump-host");
  EXPECT_EQ(next.isolation().exemptions(0).remote_cidr(), "10.77.0.40/32");
  EXPECT_EQ(next.isolation().expires_at_unix_ms(), 1234);
  EXPECT_EQ(next.isolation().reason(), "INC-42");
  EXPECT_EQ(next.isolation().requested_by(), "alice");
  EXPECT_EQ(next.blocks_size(), 1);
  ASSERT_EQ(next.controller_endpoints_size(), 2);
  EXPECT_EQ(next.controller_endpoints(1).ip(), "fd77::1");

  // Isolating again replaces the exemptions and expiry.
  IsolationSpec again;
  again.reason = "INC-43";
  auto next2 = isolatedState(next, again, endpoints());
  EXPECT_EQ(next2.generation(), 6u);
  EXPECT_EQ(next2.isolation().exemptions_size(), 0);
  EXPECT_EQ(next2.isolation().expires_at_unix_ms(), 0);

  auto released = releasedState(next2, "contained", "bob", endpoints());
  EXPECT_EQ(released.generation(), 7u);
  EXPECT_FALSE(released.isolation().enabled());
  EXPECT_EQ(released.isolation().exemptions_size(), 0);
  EXPECT_EQ(released.isolation().reason(), "contained");
  EXPECT_EQ(released.blocks_size(), 1);
  EXPECT_EQ(released.controller_endpoints_size(), 2);
}

TEST(DesiredState, TtlExpiryFollowsTheClock) {
  FakeClock clock(1'000'000);
  IsolationSpec spec;
  spec.expires_at_unix_ms = clock.nowUnixMs() + 60'000;
  auto iso = isolatedState(v1::DesiredState(), spec, endpoints());
  EXPECT_FALSE(isolationExpired(iso, clock.nowUnixMs()));
  clock.advance(milliseconds(59'999));
  EXPECT_FALSE(isolationExpired(iso, clock.nowUnixMs()));
  clock.advance(milliseconds(1));
  EXPECT_TRUE(isolationExpired(iso, clock.nowUnixMs()));
  // No expiry, or not isolated: never expires.
  auto forever = isolatedState(v1::DesiredState(), IsolationSpec(), endpoints());
  EXPECT_FALSE(isolationExpired(forever, INT64_MAX));
  auto released = releasedState(iso, "r", "x", endpoints());
  EXPECT_FALSE(isolationExpired(released, INT64_MAX));
}

TEST(Acknowledgement, ReportsAndEnforcedGenerations) {
  v1::StateReport ok;
  ok.set_ok(true);
  ok.set_generation(5);
  ok.set_enforced_generation(5);
  EXPECT_EQ(ackFromReport(ok, 5), AckResult::kEnforced);
  EXPECT_EQ(ackFromReport(ok, 4), AckResult::kEnforced);   // a newer generation covers it
  EXPECT_EQ(ackFromReport(ok, 6), AckResult::kNone);       // an older report
  v1::StateReport failed;
  failed.set_ok(false);
  failed.set_generation(6);
  failed.set_enforced_generation(5);
  EXPECT_EQ(ackFromReport(failed, 6), AckResult::kFailed);
  EXPECT_EQ(ackFromReport(failed, 7), AckResult::kNone);
  EXPECT_EQ(ackFromEnforced(6, 6), AckResult::kEnforced);
  EXPECT_EQ(ackFromEnforced(5, 6), AckResult::kNone);
}

std::vector<std::string> names(const absl::StatusOr<std::vector<const ExemptionSet*>>& sets) {
  std::vector<std::string> out;
  if (!sets.ok()) return {"error"};
  for (const auto* s : *sets) out.push_back(s->name);
  return out;
}

TEST(Exemptions, DefaultsFollowTheHostLabels) {
  auto lib = testPolicyLibrary();
  EXPECT_EQ(names(exemptionSetsFor(lib, {{"role", "db"}}, {}, false)),
            (std::vector<std::string>{"ir-jump-host", "postgres-replication"}));
  EXPECT_EQ(names(exemptionSetsFor(lib, {{"role", "web"}}, {}, false)),
            (std::vector<std::string>{"ir-jump-host"}));
  EXPECT_EQ(names(exemptionSetsFor(lib, {{"role", "web"}}, {"dns"}, false)),
            (std::vector<std::string>{"dns", "ir-jump-host"}));
  EXPECT_EQ(names(exemptionSetsFor(lib, {{"role", "db"}}, {"dns"}, true)),
            (std::vector<std::string>{"dns"}));
  EXPECT_TRUE(names(exemptionSetsFor(lib, {{"role", "db"}}, {}, true)).empty());
}

TEST(Exemptions, UnknownRequestedSetIsNamed) {
  auto lib = testPolicyLibrary();
  auto sets = exemptionSetsFor(lib, {}, {"nfs"}, false);
  ASSERT_FALSE(sets.ok());
  EXPECT_EQ(sets.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(sets.status().message()).find("\"nfs\""), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::controller
