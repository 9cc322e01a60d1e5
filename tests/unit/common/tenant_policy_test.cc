// Exemption sets per tenant (common/tenant_policy.h): each tenant's own sets and the shared
// ones it opts into, from files in memory and from a directory on disk.
#include "common/tenant_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace bulkhead {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string set(const std::string& name, const std::string& selector = "") {
  return "name: " + name + "\ndescription: " + name + "\n" +
         (selector.empty() ? "" : "selector: \"" + selector + "\"\n") +
         "rules:\n  - direction: out\n    proto: udp\n    remote: 10.77.9.1/32\n    port: 123\n";
}

std::vector<std::string> names(const PolicyLibrary& library) {
  std::vector<std::string> out;
  for (const auto& [name, s] : library.sets) out.push_back(name);
  return out;
}

const PolicyFiles kShared = {{"ntp.yaml", set("ntp", "*")},
                             {"dns.yaml", set("dns")},
                             {"jump.yaml", set("ir-jump-host", "*")}};

TEST(TenantPolicies, ATenantUsesItsOwnSetsAndTheSharedOnesItOptsIntoOnly) {
  auto p = buildTenantPolicies(
      kShared, {{"acme",
                 {.sets = {{"tenants/acme/erp.yaml", set("erp", "role=db")}},
                  .opt_in = {"tenants/acme.yaml", "shared: [ntp]\n"}}},
                {"beta", {.sets = {{"tenants/beta/erp.yaml", set("erp")}}, .opt_in = {}}},
                {"gamma", {.sets = {}, .opt_in = {"tenants/gamma.yaml", "shared: all\n"}}}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(names(p->of("default")), ElementsAre("dns", "ir-jump-host", "ntp"));
  EXPECT_THAT(names(p->of("acme")), ElementsAre("erp", "ntp"));
  EXPECT_THAT(names(p->of("beta")), ElementsAre("erp"));
  EXPECT_THAT(names(p->of("gamma")), ElementsAre("dns", "ir-jump-host", "ntp"));
  // A tenant the directory does not name has no sets at all (not default's).
  EXPECT_TRUE(p->of("delta").sets.empty());
  // Two tenants' sets of one name are two sets.
  EXPECT_EQ(p->of("acme").find("erp")->file, "tenants/acme/erp.yaml");
  EXPECT_EQ(p->of("beta").find("erp")->file, "tenants/beta/erp.yaml");
  // Every set once: the shared three, acme's erp, beta's erp.
  EXPECT_EQ(p->all().size(), 5u);
  // The shared defaults attach to an acme host only through its opt-in.
  EXPECT_EQ(selectSets(p->of("acme"), {{"role", "db"}}, {}, true).value().size(), 2u);
  auto refused = selectSets(p->of("acme"), {}, {"ir-jump-host"}, false);
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("unknown exemption set \"ir-jump-host\" (known: erp, ntp)"));
}

TEST(TenantPolicies, EveryProblemIsNamedWithItsFileAndLine) {
  auto p = buildTenantPolicies(
      kShared, {{"acme",
                 {.sets = {{"tenants/acme/ntp.yaml", set("ntp")}},
                  .opt_in = {"tenants/acme.yaml", "shared: [ntp, nope]\n"}}},
                {"beta", {.sets = {}, .opt_in = {"tenants/beta.yaml", "share: all\n"}}},
                {"gamma", {.sets = {}, .opt_in = {"tenants/gamma.yaml", "shared: some\n"}}},
                {"default", {.sets = {{"tenants/default/x.yaml", set("x")}}, .opt_in = {}}},
                {"bad name", {.sets = {}, .opt_in = {}}}});
  ASSERT_FALSE(p.ok());
  const std::string errors(p.status().message());
  EXPECT_THAT(errors, HasSubstr("tenants/acme.yaml:1: shared: unknown shared set \"nope\" "
                                "(shared: dns, ir-jump-host, ntp)"));
  EXPECT_THAT(
      errors,
      HasSubstr("tenants/beta.yaml:1: share: unknown field (expected shared or playbooks)"));
  EXPECT_THAT(errors, HasSubstr("tenants/gamma.yaml:1: shared: expected all or a list of set "
                                "names, found a scalar"));
  EXPECT_THAT(errors, HasSubstr("tenants/default: tenant: \"default\" is not another tenant's"));
  EXPECT_THAT(errors, HasSubstr("tenants/bad name: tenant:"));

  // A tenant's own set named like a shared one it opts into.
  p = buildTenantPolicies(kShared, {{"acme",
                                     {.sets = {{"tenants/acme/ntp.yaml", set("ntp")}},
                                      .opt_in = {"tenants/acme.yaml", "shared: [ntp]\n"}}}});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()),
              HasSubstr("tenants/acme/ntp.yaml:1: name: \"ntp\" is also a shared set acme opts "
                        "into (tenants/acme.yaml)"));
  // Without the opt-in the same own set stands: it is acme's ntp.
  p = buildTenantPolicies(
      kShared, {{"acme", {.sets = {{"tenants/acme/ntp.yaml", set("ntp")}}, .opt_in = {}}}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->of("acme").find("ntp")->file, "tenants/acme/ntp.yaml");
}

TEST(TenantPolicies, LoadsADirectoryWithItsTenantsFolder) {
  char tmpl[] = "/tmp/bh-tenant-policy-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  auto write = [&](const std::string& rel, const std::string& text) {
    std::filesystem::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel) << text;
  };
  write("ntp.yaml", set("ntp", "*"));
  write("tenants/acme/erp.yaml", set("erp"));
  write("tenants/acme.yaml", "shared: [ntp]\n");
  write("tenants/beta.yaml", "shared: all\n");
  auto p = loadTenantPolicies(dir);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(names(p->of("acme")), ElementsAre("erp", "ntp"));
  EXPECT_THAT(names(p->of("beta")), ElementsAre("ntp"));
  EXPECT_THAT(names(p->of("default")), ElementsAre("ntp"));
  // An error in a tenant's set names the file under tenants/.
  write("tenants/acme/broken.yaml", "name: broken\n");
  p = loadTenantPolicies(dir);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("tenants/acme/broken.yaml:1:"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace bulkhead
