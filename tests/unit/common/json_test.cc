// Foreign JSON: typed getters that never throw, the depth-bounded parser, the replacing dump.
#include "common/json.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace bulkhead {
namespace {

using nlohmann::json;

json doc() {
  return json::parse(R"({"s":"text","i":-7,"u":42,"big":18446744073709551615,"f":1.5,)"
                     R"("b":true,"n":null,"a":[1,2,3],"o":{"k":"v"}})");
}

TEST(ForeignJson, GettersReturnTheMemberOfTheAskedType) {
  json d = doc();
  EXPECT_EQ(jsonString(d, "s"), "text");
  EXPECT_EQ(jsonInt(d, "i"), -7);
  EXPECT_EQ(jsonInt(d, "u"), 42);
  EXPECT_EQ(jsonUint(d, "u"), 42u);
  EXPECT_EQ(jsonUint(d, "big"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(jsonBool(d, "b"), true);
  ASSERT_NE(jsonArray(d, "a"), nullptr);
  EXPECT_EQ(jsonArray(d, "a")->size(), 3u);
  EXPECT_EQ(jsonArraySize(d, "a"), 3u);
  ASSERT_NE(jsonObject(d, "o"), nullptr);
  EXPECT_EQ(jsonStringOr(*jsonObject(d, "o"), "k", "?"), "v");
}

TEST(ForeignJson, WrongTypesGiveNothingInsteadOfThrowing) {
  json d = doc();
  EXPECT_EQ(jsonString(d, "i"), std::nullopt);
  EXPECT_EQ(jsonString(d, "n"), std::nullopt);
  EXPECT_EQ(jsonString(d, "a"), std::nullopt);
  EXPECT_EQ(jsonInt(d, "s"), std::nullopt);
  EXPECT_EQ(jsonInt(d, "f"), std::nullopt);  // not an integer
  EXPECT_EQ(jsonInt(d, "b"), std::nullopt);
  EXPECT_EQ(jsonInt(d, "big"), std::nullopt);  // does not fit int64
  EXPECT_EQ(jsonUint(d, "i"), std::nullopt);   // negative
  EXPECT_EQ(jsonUint(d, "f"), std::nullopt);
  EXPECT_EQ(jsonBool(d, "u"), std::nullopt);
  EXPECT_EQ(jsonBool(d, "s"), std::nullopt);
  EXPECT_EQ(jsonArray(d, "o"), nullptr);
  EXPECT_EQ(jsonObject(d, "a"), nullptr);
  EXPECT_EQ(jsonArraySize(d, "s"), 0u);
  EXPECT_EQ(jsonStringOr(d, "u", "fallback"), "fallback");
  EXPECT_EQ(jsonIntOr(d, "s", -1), -1);
  EXPECT_EQ(jsonUintOr(d, "i", 9), 9u);
  EXPECT_FALSE(jsonBoolOr(d, "s", false));
}

TEST(ForeignJson, MissingFieldsAndNonObjectDocumentsGiveNothing) {
  json d = doc();
  EXPECT_EQ(jsonString(d, "missing"), std::nullopt);
  EXPECT_EQ(jsonIntOr(d, "missing", 5), 5);
  for (const json& not_object : {json::array({1, 2}), json("x"), json(3), json(nullptr)}) {
    EXPECT_EQ(jsonString(not_object, "s"), std::nullopt) << not_object;
    EXPECT_EQ(jsonInt(not_object, "i"), std::nullopt) << not_object;
    EXPECT_EQ(jsonArray(not_object, "a"), nullptr) << not_object;
    EXPECT_EQ(jsonArraySize(not_object, "a"), 0u) << not_object;
  }
}

TEST(ForeignJson, ParseRefusesGarbageAndDeepNesting) {
  EXPECT_EQ(parseForeignJson("{not json"), std::nullopt);
  EXPECT_EQ(parseForeignJson(""), std::nullopt);
  auto ok = parseForeignJson(R"({"a":[{"b":"]]]]"}]})");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ((*ok)["a"][0]["b"], "]]]]");
  std::string deep =
      std::string(kMaxForeignJsonDepth + 1, '[') + std::string(kMaxForeignJsonDepth + 1, ']');
  EXPECT_EQ(parseForeignJson(deep), std::nullopt);
  std::string fits =
      std::string(kMaxForeignJsonDepth, '[') + std::string(kMaxForeignJsonDepth, ']');
  EXPECT_TRUE(parseForeignJson(fits).has_value());
  // Brackets inside strings (escaped quotes included) do not count.
  std::string quoted = "[\"\\\"" + std::string(200, '[') + "\"]";
  EXPECT_TRUE(parseForeignJson(quoted).has_value());
}

TEST(ForeignJson, DumpReplacesInvalidUtf8InsteadOfThrowing) {
  json d{{"cmdline", std::string("evil \xff\xfe arg")}, {"ok", "caf\xc3\xa9"}};
  EXPECT_THROW((void)d.dump(), json::type_error);  // what nlohmann does by default
  std::string out = dumpJson(d);
  EXPECT_EQ(out, "{\"cmdline\":\"evil \xef\xbf\xbd\xef\xbf\xbd arg\",\"ok\":\"caf\xc3\xa9\"}");
  EXPECT_TRUE(json::accept(out));
  EXPECT_NE(dumpJson(d, 2).find("\n  \"cmdline\""), std::string::npos);
}

}  // namespace
}  // namespace bulkhead
