// The join token's text: what `tokens create` prints reads back whole; anything else is one
// clear line naming what is wrong.
#include "common/join_token.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"

namespace bulkhead {
namespace {

using ::testing::HasSubstr;

JoinTokenText sample() {
  return JoinTokenText{.token_id = "jt-0123456789abcdef",
                       .secret = std::string(64, 'a'),
                       .enroll_addresses = {"10.77.0.1:7444", "[fd77::1]:7444"},
                       .controller_name = "bulkhead-controller",
                       .ca_sha256 = std::string(64, 'f')};
}

TEST(JoinToken, RoundTripsAndIgnoresSurroundingSpace) {
  const std::string text = formatJoinToken(sample());
  EXPECT_TRUE(text.starts_with("bhjt1."));
  EXPECT_EQ(text.find_first_of(" +/=\n"), std::string::npos) << text;  // one shell word
  auto back = parseJoinToken("  " + text + "\n");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->token_id, "jt-0123456789abcdef");
  EXPECT_EQ(back->secret, std::string(64, 'a'));
  EXPECT_EQ(back->enroll_addresses, sample().enroll_addresses);
  EXPECT_EQ(back->controller_name, "bulkhead-controller");
  EXPECT_EQ(back->ca_sha256, std::string(64, 'f'));
}

TEST(JoinToken, MalformedTokensNameWhatIsWrong) {
  auto message = [](const std::string& text) {
    auto t = parseJoinToken(text);
    EXPECT_FALSE(t.ok()) << text;
    EXPECT_TRUE(absl::IsInvalidArgument(t.status()));
    return std::string(t.status().message());
  };
  EXPECT_THAT(message(""), HasSubstr("not a bulkhead join token"));
  EXPECT_THAT(message("bhit1.abc"), HasSubstr("not a bulkhead join token"));
  EXPECT_THAT(message("bhjt1.@@@"), HasSubstr("not base64url"));
  const std::string whole = formatJoinToken(sample());
  EXPECT_THAT(message(whole.substr(0, whole.size() / 2)), HasSubstr("damaged"));
  auto with = [](const JoinTokenText& t) { return formatJoinToken(t); };
  JoinTokenText t = sample();
  t.secret = "short";
  EXPECT_THAT(message(with(t)), HasSubstr("\"secret\""));
  t = sample();
  t.token_id = "jt-XYZ";
  EXPECT_THAT(message(with(t)), HasSubstr("\"id\""));
  t = sample();
  t.enroll_addresses = {};
  EXPECT_THAT(message(with(t)), HasSubstr("\"enroll\""));
  t = sample();
  t.enroll_addresses = {"10.77.0.1"};  // no port
  EXPECT_THAT(message(with(t)), HasSubstr("HOST:PORT"));
  t = sample();
  t.ca_sha256 = std::string(64, 'F');  // upper case: not what the controller writes
  EXPECT_THAT(message(with(t)), HasSubstr("\"ca_sha256\""));
  t = sample();
  t.controller_name = "bad name";
  EXPECT_THAT(message(with(t)), HasSubstr("\"name\""));
  EXPECT_THAT(message("bhjt1." + absl::WebSafeBase64Escape("[1,2]")), HasSubstr("JSON object"));
  EXPECT_THAT(message("bhjt1." + std::string(5000, 'A')), HasSubstr("too long"));
}

}  // namespace
}  // namespace bulkhead
