// What an agent claims in Hello is validated before the controller believes it.
#include "controller/core/hello.h"

#include <gtest/gtest.h>

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

v1::Hello honest() {
  v1::Hello h;
  h.set_host_id("web-01");
  h.set_hostname("web-01.lab");
  h.add_addresses("10.77.0.11/16");
  h.add_addresses("fd77::11/64");
  (*h.mutable_labels())["role"] = "web";
  (*h.mutable_labels())["env"] = "prod";
  h.set_os("Debian GNU/Linux 12 (bookworm), kernel 6.1.0-18-amd64");
  h.set_agent_version("0.4.0");
  h.set_enforced_generation(3);
  h.set_ruleset_hash(std::string(64, 'a'));
  return h;
}

// The refusal of `hello`: its message, which must name `field`.
std::string refusal(const v1::Hello& hello, const std::string& field) {
  auto info = helloInfoFrom(hello);
  EXPECT_FALSE(info.ok()) << field;
  if (info.ok()) return "";
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  std::string m(info.status().message());
  EXPECT_NE(m.find(field), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_EQ(m.find('\x1b'), std::string::npos) << m;
  return m;
}

TEST(HelloValidation, AnHonestHelloIsTakenAsIs) {
  auto info = helloInfoFrom(honest());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->hostname, "web-01.lab");
  EXPECT_EQ(info->addresses, (std::vector<std::string>{"10.77.0.11/16", "fd77::11/64"}));
  EXPECT_EQ(info->labels.at("role"), "web");
  EXPECT_EQ(info->enforced_generation, 3u);
  // Empty optional fields and a bare address are fine.
  v1::Hello minimal;
  minimal.add_addresses("10.77.0.12");
  EXPECT_TRUE(helloInfoFrom(minimal).ok());
}

TEST(HelloValidation, AddressesMustBeInterfaceAddressesOfThisHost) {
  for (const char* bad :
       {"10.77.0.11/33", "fd77::11/129", "web-01", "10.77.0.11/", "10.77.0.11/x", "",
        "10.77.0.11/16 ", "127.0.0.1/8", "::1/128", "::ffff:127.0.0.1/104", "0.0.0.0/0", "::/0"}) {
    auto h = honest();
    h.add_addresses(bad);
    std::string m = refusal(h, "hello.addresses[2]");
    if (std::string(bad).find("127.") == 0 || std::string(bad) == "::1/128") {
      EXPECT_NE(m.find("loopback"), std::string::npos) << m;
    }
  }
  auto many = honest();
  for (int i = 0; i < 300; ++i) many.add_addresses("10.77.1.1/16");
  EXPECT_NE(refusal(many, "hello.addresses").find("more than 256"), std::string::npos);
}

TEST(HelloValidation, LabelsMustBeKeyEqualsValueBounded) {
  struct Case {
    std::string key, value;
  };
  for (const auto& c : std::vector<Case>{{"role", ""},        // no value: "role="
                                         {"", "web"},         // no key
                                         {"role=web", "x"},   // '=' inside the key
                                         {"role", "web=db"},  // '=' inside the value
                                         {"role", std::string(64, 'w')},
                                         {std::string(64, 'k'), "v"},
                                         {"ro le", "web"},
                                         {"role", "web\n"}}) {
    auto h = honest();
    (*h.mutable_labels())[c.key] = c.value;
    refusal(h, "hello.labels");
  }
  auto many = honest();
  for (int i = 0; i < 65; ++i) (*many.mutable_labels())["k" + std::to_string(i)] = "v";
  EXPECT_NE(refusal(many, "hello.labels").find("more than 64"), std::string::npos);
}

TEST(HelloValidation, HostnameAndTextFieldsArePrintableAndBounded) {
  for (const std::string& bad :
       {std::string("web\x1b[31m-01"), std::string("web-01\nforged"), std::string("web 01"),
        std::string("w\xc3\xa9" "b"), std::string(254, 'h'), std::string("a\0b", 3)}) {
    auto h = honest();
    h.set_hostname(bad);
    refusal(h, "hello.hostname");
  }
  auto h = honest();
  h.set_hostname(std::string(253, 'h'));
  EXPECT_TRUE(helloInfoFrom(h).ok());

  h = honest();
  h.set_os("Debian\r\n");
  refusal(h, "hello.os");
  h = honest();
  h.set_os(std::string(257, 'o'));
  refusal(h, "hello.os");
  h = honest();
  h.set_agent_version("1.0\x07");
  refusal(h, "hello.agent_version");
  h = honest();
  h.set_ruleset_hash("not-a-hash");
  refusal(h, "hello.ruleset_hash");
  h = honest();
  h.set_ruleset_hash(std::string(65, 'a'));
  refusal(h, "hello.ruleset_hash");
}

}  // namespace
}  // namespace bulkhead::controller
