// Tenants: the pure rules (tenancy.h: the call's tenants, the role on a host) and the tenant
// service on a real SQLite store (tenants, bindings, each caller's scope). No gRPC.
#include "controller/service/tenancy.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "common/format.h"
#include "controller/service/tenants.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

const std::vector<std::string> kTenants = {"acme", "beta", "default"};

Caller withGrants(std::vector<Grant> grants, std::string name = "pat") {
  return Caller{.audit_name = std::move(name),
                .is_operator = true,
                .role = Role::kNone,
                .grants = std::move(grants)};
}

TEST(ChooseTenants, ASingleTeamActsInDefaultWithoutNamingIt) {
  Caller c{.audit_name = "alice", .is_operator = true, .role = Role::kResponder};
  chooseTenants(c, "", kTenants);
  ASSERT_TRUE(c.tenant_refusal.ok()) << c.tenant_refusal;
  EXPECT_EQ(c.tenants, std::vector<std::string>{"default"});
  EXPECT_EQ(tenantsText(c), "default");
}

TEST(ChooseTenants, SeveralTenantsAndNoneNamedIsRefusedWithTheList) {
  Caller c = withGrants({{"acme", Role::kResponder, {}}, {"beta", Role::kViewer, {}}});
  chooseTenants(c, "", kTenants);
  EXPECT_TRUE(absl::IsFailedPrecondition(c.tenant_refusal)) << c.tenant_refusal;
  EXPECT_EQ(c.tenant_refusal.message(),
            "operator \"pat\" has roles in tenants acme, beta: choose one with --tenant NAME (or "
            "BULKHEAD_TENANT), or every one with --tenant '*'");
}

TEST(ChooseTenants, AnUnknownTenantReadsExactlyLikeOneWithoutARole) {
  Caller unknown = withGrants({{"acme", Role::kResponder, {}}});
  chooseTenants(unknown, "nope", kTenants);
  Caller other = withGrants({{"acme", Role::kResponder, {}}});
  chooseTenants(other, "beta", kTenants);
  EXPECT_TRUE(absl::IsPermissionDenied(unknown.tenant_refusal));
  EXPECT_EQ(unknown.tenant_refusal.message(), "operator \"pat\" has no role in tenant \"nope\"");
  EXPECT_EQ(other.tenant_refusal.message(), "operator \"pat\" has no role in tenant \"beta\"");
}

TEST(ChooseTenants, StarIsEveryTenantOfTheCallerAndAnInstallAdminHoldsThemAll) {
  Caller c = withGrants({{"acme", Role::kViewer, {}}, {"beta", Role::kViewer, {}}});
  chooseTenants(c, "*", kTenants);
  ASSERT_TRUE(c.tenant_refusal.ok());
  EXPECT_TRUE(c.all_tenants);
  EXPECT_EQ(c.tenants, (std::vector<std::string>{"acme", "beta"}));
  Caller admin{.audit_name = "root", .is_operator = true, .role = Role::kAdmin};
  EXPECT_EQ(tenantsOf(admin, kTenants), kTenants);
  chooseTenants(admin, "beta", kTenants);
  EXPECT_TRUE(admin.tenant_refusal.ok());
  EXPECT_EQ(roleOn(admin, "beta", {}), Role::kAdmin);
  EXPECT_EQ(roleOn(admin, "acme", {}), Role::kNone);  // not this call's tenant
}

TEST(RoleOn, TheHighestMatchingGrantOfTheHostsTenantOnly) {
  Caller c = withGrants({{"acme", Role::kViewer, {}},
                         {"acme", Role::kResponder, {{"env", "prod"}}},
                         {"beta", Role::kAdmin, {}}});
  c.tenants = {"acme"};
  EXPECT_EQ(roleOn(c, "acme", {{"env", "prod"}, {"role", "web"}}), Role::kResponder);
  EXPECT_EQ(roleOn(c, "acme", {{"env", "dev"}}), Role::kViewer);
  EXPECT_EQ(roleOn(c, "beta", {}), Role::kNone);  // held, but not in this call's tenant
  EXPECT_FALSE(holdsOnEveryHost(c, "acme", Role::kResponder));
  EXPECT_TRUE(holdsOnEveryHost(c, "acme", Role::kViewer));
  std::map<std::string, TargetHost> fleet = {
      {"a1", TargetHost{{{"env", "prod"}}, {}, true, "acme"}},
      {"a2", TargetHost{{{"env", "dev"}}, {}, true, "acme"}},
      {"b1", TargetHost{{{"env", "prod"}}, {}, true, "beta"}},
      {"d1", TargetHost{{{"env", "prod"}}, {}, true, "default"}}};
  EXPECT_EQ(hostsInScope(c, Role::kResponder, fleet).size(), 1u);
  EXPECT_EQ(hostsInScope(c, Role::kViewer, fleet).size(), 2u);
}

TEST(Authorize, TheWholeChainStaysInDefaultAndStarMutationsAreForInstallAdmins) {
  Caller acme = withGrants({{"acme", Role::kAdmin, {}}});
  acme.tenants = {"acme"};
  EXPECT_TRUE(authorize(acme, OperatorAction::kIsolate).ok());
  EXPECT_TRUE(authorize(acme, OperatorAction::kCreateJoinToken).ok());
  EXPECT_TRUE(authorize(acme, OperatorAction::kListAudit).ok());
  EXPECT_TRUE(authorize(acme, OperatorAction::kListSignals).ok());
  EXPECT_TRUE(authorize(acme, OperatorAction::kApprove).ok());
  EXPECT_TRUE(authorize(acme, OperatorAction::kCreateIntegration).ok());
  EXPECT_EQ(authorize(acme, OperatorAction::kVerifyAudit).message(),
            "audit-verify is kept for tenant default only in this release (this call is for "
            "tenant acme): it checks the whole chain, every tenant's rows");
  EXPECT_TRUE(absl::IsPermissionDenied(authorize(acme, OperatorAction::kCreateTenant)));

  Caller both = withGrants({{"acme", Role::kResponder, {}}, {"beta", Role::kResponder, {}}});
  both.tenants = {"acme", "beta"};
  both.all_tenants = true;
  EXPECT_TRUE(authorize(both, OperatorAction::kListHosts).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(authorize(both, OperatorAction::kBlock)));

  // A binding limited by labels reaches hosts, never the tenant's own records.
  Caller limited = withGrants({{"acme", Role::kAdmin, {{"env", "prod"}}}});
  limited.tenants = {"acme"};
  EXPECT_TRUE(authorize(limited, OperatorAction::kIsolate).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(authorize(limited, OperatorAction::kListJoinTokens)));
  EXPECT_TRUE(absl::IsPermissionDenied(authorize(limited, OperatorAction::kListAudit)));
  EXPECT_TRUE(absl::IsPermissionDenied(authorize(limited, OperatorAction::kListSignals)));
  EXPECT_TRUE(absl::IsPermissionDenied(authorize(limited, OperatorAction::kCreateIntegration)));
  // Approving is checked per host of the approval (SignalService), like a host action.
  EXPECT_TRUE(authorize(limited, OperatorAction::kApprove).ok());
}

TEST(Tenancy, TenantsReadWholeLeavesOutTenantsHeldOnSomeHostsOnly) {
  Caller c = withGrants({{"acme", Role::kViewer, {}}, {"beta", Role::kAdmin, {{"env", "prod"}}}});
  c.tenants = {"acme", "beta"};
  c.all_tenants = true;
  EXPECT_EQ(tenantsReadWhole(c), std::vector<std::string>{"acme"});
  EXPECT_FALSE(readsEveryTenant(c));
  EXPECT_TRUE(absl::IsInvalidArgument(singleCallTenant(c, "a signal").status()));
  c.tenants = {"beta"};
  c.all_tenants = false;
  EXPECT_TRUE(tenantsReadWhole(c).empty());
  EXPECT_EQ(*singleCallTenant(c, "a signal"), "beta");
  Caller admin = withGrants({{"default", Role::kAdmin, {}}});
  admin.all_tenants = true;
  admin.tenants = {"acme", "default"};
  EXPECT_TRUE(readsEveryTenant(admin));
}

class TenantServiceTest : public ::testing::Test {
 protected:
  TenantServiceTest() {
    char tmpl[] = "/tmp/bh-tenants-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto store = SqliteStore::create(dir_ / "controller.db");
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    service_ = std::make_unique<TenantService>(clock_, *store_);
  }
  ~TenantServiceTest() override {
    service_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // An identified operator as the front door hands it over, scoped to `requested`.
  Caller scoped(const std::string& name, Role certificate_role, const std::string& requested) {
    Caller c{.audit_name = name, .is_operator = true, .role = certificate_role};
    service_->scopeCaller(c, requested);
    return c;
  }

  std::vector<AuditEntry> audit() {
    auto rows = store_->listAudit(100);
    return rows.ok() ? *rows : std::vector<AuditEntry>{};
  }

  FakeClock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<TenantService> service_;
};

TEST_F(TenantServiceTest, AFreshInstallHasDefaultAndOnlyInstallAdminsCreateTenants) {
  const Caller root = scoped("root", Role::kAdmin, "");
  auto listed = service_->listTenants(root);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->at(0).name(), "default");

  const Caller alice = scoped("alice", Role::kResponder, "");
  auto refused = service_->createTenant(alice, "acme", "contract 1");
  EXPECT_TRUE(absl::IsPermissionDenied(refused.status())) << refused.status();
  EXPECT_EQ(audit().back().outcome, "denied");

  auto bad = service_->createTenant(root, "no/slash", "contract 1");
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  auto created = service_->createTenant(root, "acme", "contract 1");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->created_by(), "root");
  EXPECT_EQ(audit().back().action, "tenant-create");
  EXPECT_TRUE(absl::IsAlreadyExists(service_->createTenant(root, "acme", "again").status()));
}

TEST_F(TenantServiceTest, ABindingGivesARoleInItsTenantAndRevokingItTakesItAway) {
  Caller root = scoped("root", Role::kAdmin, "");
  ASSERT_TRUE(service_->createTenant(root, "acme", "contract").ok());
  ASSERT_TRUE(service_->createTenant(root, "beta", "contract").ok());
  // An install admin now holds three tenants: it must choose.
  EXPECT_TRUE(absl::IsFailedPrecondition(scoped("root", Role::kAdmin, "").tenant_refusal));
  root = scoped("root", Role::kAdmin, "acme");
  ASSERT_TRUE(root.tenant_refusal.ok()) << root.tenant_refusal;

  // A customer's own staff: a `--role none` certificate and a viewer binding in acme.
  EXPECT_TRUE(absl::IsPermissionDenied(scoped("carol", Role::kNone, "").tenant_refusal));
  auto granted =
      service_->grantAccess(root, "carol", v1::OPERATOR_ROLE_VIEWER, "", "customer staff");
  ASSERT_TRUE(granted.ok()) << granted.status();
  EXPECT_EQ(granted->tenant(), "acme");
  EXPECT_EQ(granted->role_name(), "viewer");
  EXPECT_TRUE(absl::IsAlreadyExists(
      service_->grantAccess(root, "carol", v1::OPERATOR_ROLE_ADMIN, "", "again").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_->grantAccess(root, "carol", v1::OPERATOR_ROLE_RESPONDER, "env", "x").status()));

  Caller carol = scoped("carol", Role::kNone, "");
  ASSERT_TRUE(carol.tenant_refusal.ok()) << carol.tenant_refusal;
  EXPECT_EQ(carol.tenants, std::vector<std::string>{"acme"});
  EXPECT_TRUE(authorize(carol, OperatorAction::kListHosts).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(authorize(carol, OperatorAction::kIsolate)));
  EXPECT_EQ(scoped("carol", Role::kNone, "beta").tenant_refusal.message(),
            "operator \"carol\" has no role in tenant \"beta\"");
  // Carol sees her own binding; the tenant's admin sees them all.
  auto own = service_->listAccess(carol, "");
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->size(), 1u);

  // Beta's admin cannot revoke acme's binding: it reads as unknown.
  Caller beta_root = scoped("root", Role::kAdmin, "beta");
  auto foreign = service_->revokeAccess(beta_root, granted->binding_id(), "x");
  EXPECT_TRUE(absl::IsNotFound(foreign.status()));
  EXPECT_EQ(foreign.status().message(),
            fmt::format("no role binding \"{}\"", granted->binding_id()));
  auto revoked = service_->revokeAccess(root, granted->binding_id(), "contract ended");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(audit().back().action, "access-revoke");
  EXPECT_EQ(scoped("carol", Role::kNone, "").tenant_refusal.message(),
            "operator \"carol\" has no role in any tenant");
}

TEST_F(TenantServiceTest, AnAdminOfOneTenantManagesItsBindingsOnlyAndCreatesNoTenant) {
  Caller root = scoped("root", Role::kAdmin, "");
  ASSERT_TRUE(service_->createTenant(root, "acme", "contract").ok());
  root = scoped("root", Role::kAdmin, "acme");
  ASSERT_TRUE(
      service_->grantAccess(root, "dana", v1::OPERATOR_ROLE_ADMIN, "", "acme's admin").ok());
  Caller dana = scoped("dana", Role::kNone, "");
  ASSERT_TRUE(dana.tenant_refusal.ok());
  auto viewer = service_->grantAccess(dana, "erin", v1::OPERATOR_ROLE_RESPONDER, "env=prod", "x");
  ASSERT_TRUE(viewer.ok()) << viewer.status();
  EXPECT_EQ(viewer->hosts(), "env=prod");
  EXPECT_TRUE(absl::IsPermissionDenied(service_->createTenant(dana, "gamma", "x").status()));
  auto all = service_->listAccess(dana, "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);
}

}  // namespace
}  // namespace bulkhead::controller
