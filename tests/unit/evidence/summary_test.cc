// evidence/summary: findings from a synthetic bundle (a deleted implant with a connection out
// and a listener, logins, preload, hidden pid, a failed collector) and their rendering.
#include "evidence/summary.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "evidence/bundle.h"
#include "tests/unit/evidence/evidence_testing.h"

namespace bulkhead::evidence {
namespace {

using nlohmann::json;
using testing::Pki;
using testing::TempDir;

std::string lines(const std::vector<json>& records) {
  std::string out;
  for (const auto& r : records) out += r.dump() + "\n";
  return out;
}

const std::string kSha(64, 'a');

std::filesystem::path writeSyntheticBundle(const TempDir& dir) {
  auto out = dir / "b.tar.gz";
  auto w = BundleWriter::create(out, "cap-9", {{"host_id", "web-03"}, {"capture_id", "cap-9"}});
  EXPECT_TRUE(w.ok());
  auto add = [&](const std::string& path, const std::string& bytes) {
    EXPECT_TRUE((*w)->addBytes(path, bytes).ok()) << path;
  };
  add("metadata.json", json{{"capture_id", "cap-9"},
                            {"host_id", "web-03"},
                            {"collected_at_unix_ms", 1763917262000},
                            {"agent_pid", 900}}
                           .dump());
  add("artifacts/processes.jsonl",
      lines({{{"pid", 1}, {"comm", "systemd"}, {"exe", "/usr/lib/systemd/systemd"}},
             {{"pid", 700}, {"comm", "sshd"}, {"exe", "/usr/sbin/sshd"}},
             {{"pid", 4242},
              {"comm", "implant"},
              {"exe", "/tmp/implant (deleted)"},
              {"exe_deleted", true},
              {"exe_memfd", false},
              {"exe_sha256", kSha},
              {"recovered", "binaries/" + kSha}},
             {{"pid", 5000},
              {"comm", "miner"},
              {"exe", "/memfd:x (deleted)"},
              {"exe_deleted", true},
              {"exe_memfd", true},
              {"exe_sha256", nullptr},
              {"recovered", nullptr}},
             {{"pid", 6000}, {"comm", "tool"}, {"exe", "/home/bob/tool"}},
             {{"pid", 900}, {"comm", "bulkhead-agent"}, {"exe", "/usr/sbin/bulkhead-agent"}}}) +
          "this line is not JSON\n");
  auto sock = [](std::string proto, std::string state, std::string la, int lp, std::string ra,
                 int rp, std::vector<int> pids) {
    return json{{"family", la.find(':') != std::string::npos ? "inet6" : "inet"},
                {"protocol", proto},
                {"state", state},
                {"local_address", la},
                {"local_port", lp},
                {"remote_address", ra},
                {"remote_port", rp},
                {"pids", pids}};
  };
  add("artifacts/sockets.jsonl",
      lines({sock("tcp", "established", "10.0.0.5", 51234, "10.77.0.66", 443, {4242}),
             sock("tcp", "listen", "0.0.0.0", 4444, "0.0.0.0", 0, {4242}),
             sock("tcp", "listen", "0.0.0.0", 22, "0.0.0.0", 0, {700}),
             sock("tcp", "established", "10.0.0.5", 22, "192.0.2.9", 60000, {700}),
             sock("tcp", "established", "127.0.0.1", 5432, "127.0.0.1", 40000, {700}),
             sock("tcp", "time-wait", "10.0.0.5", 40001, "10.77.0.66", 80, {}),
             sock("udp", "unconnected", "0.0.0.0", 5353, "0.0.0.0", 0, {6000}),
             sock("udp", "unconnected", "127.0.0.1", 323, "0.0.0.0", 0, {6000}),
             sock("tcp", "listen", "::", 8080, "::", 0, {}),
             sock("tcp", "established", "10.0.0.5", 41000, "10.0.0.1", 7443, {900}),
             json{{"family", "unix"}, {"protocol", "stream"}, {"state", "listen"}}}));
  std::vector<json> wtmp;
  for (int i = 0; i < 12; ++i) {
    wtmp.push_back({{"type", "user_process"},
                    {"user", "u" + std::to_string(i)},
                    {"line", "pts/" + std::to_string(i)},
                    {"host", "198.51.100." + std::to_string(i)},
                    {"at_unix_ms", 1763900000000 + i * 1000}});
  }
  wtmp.push_back({{"type", "dead_process"}, {"line", "pts/1"}, {"at_unix_ms", 1763999999999}});
  add("artifacts/wtmp.jsonl", lines(wtmp));
  add("artifacts/utmp.jsonl", lines({{{"type", "user_process"},
                                      {"user", "root"},
                                      {"line", "pts/9"},
                                      {"address", "203.0.113.7"},
                                      {"at_unix_ms", 1763917000000}},
                                     {{"type", "boot_time"}, {"at_unix_ms", 1}}}));
  add("artifacts/btmp.jsonl", lines({{{"user", "admin"}, {"host", "1.2.3.4"}},
                                     {{"user", "root"}, {"host", "1.2.3.4"}},
                                     {{"user", "oracle"}, {"host", "1.2.3.4"}},
                                     {{"user", "test"}, {"address", "5.6.7.8"}}}));
  add("artifacts/preload.jsonl",
      lines({{{"source", "/etc/ld.so.preload"}, {"entry", "/lib/libhide.so"}}}));
  add("artifacts/kernel.json", json{{"tainted", 4096}}.dump());
  add("artifacts/hidden_pids.jsonl", lines({{{"pid", 31337}, {"comm", "ghost"}}}));
  add("collection-log.jsonl", lines({{{"collector", "processes"}, {"status", "ok"}, {"error", ""}},
                                     {{"collector", "sockets"}, {"status", "ok"}, {"error", ""}},
                                     {{"collector", "persistence"},
                                      {"status", "timeout"},
                                      {"error", "time limit 2000 ms reached"}}}));
  EXPECT_TRUE((*w)->finish(Pki::signer()).ok());
  return out;
}

TEST(Summary, NamesTheImplantAndWhatItDoes) {
  TempDir dir;
  auto s = summarize(writeSyntheticBundle(dir));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)["host_id"], "web-03");
  EXPECT_EQ((*s)["capture_id"], "cap-9");
  EXPECT_EQ((*s)["unreadable_lines"], 1);

  const json& f = (*s)["findings"];
  ASSERT_GE(f.size(), 5u) << f.dump(1);
  // Most severe first; the implant's finding names its connection and its listener.
  EXPECT_EQ(f[0]["kind"], "deleted_executable");
  EXPECT_EQ(f[0]["severity"], "high");
  EXPECT_EQ(f[0]["pid"], 4242);
  EXPECT_EQ(f[0]["comm"], "implant");
  EXPECT_EQ(f[0]["detail"], "sha256 aaaaaaaaaaaa... recovered binaries/" + kSha +
                                "; connected to tcp 10.77.0.66:443; listening on tcp 0.0.0.0:4444");
  EXPECT_EQ(f[1]["kind"], "memfd_executable");
  EXPECT_EQ(f[1]["detail"], "sha256 unknown not recovered");
  std::map<std::string, int> kinds;
  for (const auto& x : f) ++kinds[x["kind"].get<std::string>()];
  EXPECT_EQ(kinds["preload"], 1);
  EXPECT_EQ(kinds["hidden_process"], 1);
  EXPECT_EQ(kinds["unexpected_listener"], 3);  // implant 4444, /home tool 5353, no owner 8080
  // implant, sshd (loopback, time-wait and the agent's own controller channel left out)
  EXPECT_EQ(kinds["remote_connection"], 2);
  EXPECT_EQ(kinds["failed_logins"], 1);
  EXPECT_EQ(kinds["collector_failed"], 1);
  // The agent's channel is listed, marked as such.
  bool agent_listed = false;
  for (const auto& c : (*s)["remote_connections"]) {
    if (c["pid"] == 900) {
      agent_listed = true;
      EXPECT_EQ(c["note"], "the bulkhead agent's controller channel");
    }
  }
  EXPECT_TRUE(agent_listed);
  for (size_t i = 1; i < f.size(); ++i) {
    auto rank = [](const json& x) {
      return x["severity"] == "high" ? 0 : x["severity"] == "medium" ? 1 : 2;
    };
    EXPECT_LE(rank(f[i - 1]), rank(f[i])) << i;
  }

  ASSERT_EQ((*s)["deleted_executables"].size(), 2u);
  EXPECT_EQ((*s)["deleted_executables"][0]["recovered"], "binaries/" + kSha);
  EXPECT_EQ((*s)["deleted_executables"][1]["memfd"], true);

  const json& remote = (*s)["remote_connections"];
  // implant, sshd, and the agent's channel (listed, marked, no finding)
  ASSERT_EQ(remote.size(), 3u) << remote.dump(1);
  EXPECT_EQ(remote[0], (json{{"pid", 4242},
                             {"comm", "implant"},
                             {"exe", "/tmp/implant (deleted)"},
                             {"protocol", "tcp"},
                             {"local", "10.0.0.5:51234"},
                             {"remote", "10.77.0.66:443"},
                             {"state", "established"}}));

  const json& listeners = (*s)["unexpected_listeners"];
  ASSERT_EQ(listeners.size(), 3u) << listeners.dump(1);
  EXPECT_EQ(listeners[0]["local"], "0.0.0.0:4444");
  EXPECT_EQ(listeners[0]["why"], "executable deleted");
  EXPECT_EQ(listeners[1]["why"], "executable under /home");
  EXPECT_EQ(listeners[2]["local"], "[::]:8080");
  EXPECT_EQ(listeners[2]["why"], "no owning process");

  const json& logins = (*s)["recent_logins"];
  ASSERT_EQ(logins.size(), 11u);  // the current one and the 10 newest past ones
  EXPECT_EQ(logins[0]["user"], "root");
  EXPECT_EQ(logins[0]["from"], "203.0.113.7");
  EXPECT_EQ(logins[0]["current"], true);
  EXPECT_EQ(logins[1]["user"], "u11");
  EXPECT_EQ(logins[10]["user"], "u2");
  EXPECT_EQ((*s)["failed_logins"]["count"], 4);
  EXPECT_EQ((*s)["failed_logins"]["top_sources"][0], (json{{"from", "1.2.3.4"}, {"count", 3}}));
  EXPECT_EQ((*s)["preload"][0]["entry"], "/lib/libhide.so");
  EXPECT_EQ((*s)["hidden_pids"][0]["pid"], 31337);
  EXPECT_EQ((*s)["kernel_tainted"], 4096);
  EXPECT_EQ((*s)["collectors"]["ok"], 2);
  EXPECT_EQ((*s)["collectors"]["failed"][0]["collector"], "persistence");

  const std::string text = renderSummary(*s);
  EXPECT_NE(text.find("HIGH    deleted executable: pid 4242 implant /tmp/implant (deleted) "
                      "sha256 aaaaaaaaaaaa... recovered binaries/" +
                      kSha),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("tcp   10.0.0.5:51234 -> 10.77.0.66:443"), std::string::npos) << text;
  EXPECT_NE(text.find("0.0.0.0:4444  pid 4242 implant"), std::string::npos) << text;
  EXPECT_NE(text.find("Failed logins: 4; from 1.2.3.4 (3), 5.6.7.8 (1)"), std::string::npos);
  EXPECT_NE(text.find("persistence: timeout: time limit 2000 ms reached"), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
  std::printf("%s", text.c_str());
}

TEST(Summary, EmptyOrForeignBundles) {
  TempDir dir;
  auto out = dir / "e.tar.gz";
  auto w = BundleWriter::create(out, "cap-0", {{"host_id", "web-03"}});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->finish(Pki::signer()).ok());
  auto s = summarize(out);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)["host_id"], "web-03");
  EXPECT_TRUE((*s)["findings"].empty());
  EXPECT_NE(renderSummary(*s).find("Findings (0)"), std::string::npos);
  EXPECT_EQ(renderSummary(json()), "no summary\n");

  testing::writeFile(dir / "junk.tar.gz", "junk");
  EXPECT_EQ(summarize(dir / "junk.tar.gz").status().code(), absl::StatusCode::kDataLoss);
}

TEST(Summary, ListsAndTextsOfAHostileBundleAreBounded) {
  TempDir dir;
  auto out = dir / "h.tar.gz";
  auto w = BundleWriter::create(out, "cap-h", {{"host_id", "web-03"}});
  ASSERT_TRUE(w.ok());
  std::vector<json> procs;
  for (int pid = 1; pid <= 500; ++pid) {
    procs.push_back({{"pid", pid},
                     {"comm", std::string(5000, 'c')},
                     {"exe", "/tmp/x\033[2J (deleted)"},
                     {"exe_deleted", true}});
  }
  procs.push_back({{"pid", "not a number"}, {"comm", {{"nested", 1}}}, {"exe_deleted", "yes"}});
  ASSERT_TRUE((*w)->addBytes("artifacts/processes.jsonl", lines(procs)).ok());
  ASSERT_TRUE(
      (*w)->addBytes("metadata.json", json{{"host_id", {1, 2}}, {"agent_pid", "x"}}.dump()).ok());
  ASSERT_TRUE((*w)->finish(Pki::signer()).ok());
  absl::StatusOr<json> s = absl::UnknownError("not run");
  ASSERT_NO_THROW(s = summarize(out));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)["findings"].size(), 100u);
  EXPECT_EQ((*s)["deleted_executables"].size(), 100u);
  EXPECT_EQ((*s)["omitted"]["deleted_executables"], 400);
  EXPECT_EQ((*s)["omitted"]["findings"], 400);
  EXPECT_TRUE((*s)["host_id"].is_null());
  const auto& d = (*s)["deleted_executables"][0];
  EXPECT_LT(d["comm"].get<std::string>().size(), 600u);
  EXPECT_EQ(d["exe"], "/tmp/x\\x1b[2J (deleted)");
  EXPECT_LT(s->dump().size(), size_t{1} << 20);
  const std::string text = renderSummary(*s);
  EXPECT_EQ(text.find('\033'), std::string::npos);
  EXPECT_NE(text.find("400 more deleted executables"), std::string::npos) << text.substr(0, 400);
}

// The summary's document has one type per field whatever the members hold: text fields are
// strings or null, integer fields int64 or null, counts unsigned, flags booleans.
enum class Want { kText, kInt, kUnsigned, kBool, kString, kArray, kObject };

void expectFields(const json& entry, const std::map<std::string, Want>& fields,
                  const std::string& where) {
  ASSERT_TRUE(entry.is_object()) << where << ": " << entry.dump();
  for (const auto& [key, want] : fields) {
    if (!entry.contains(key)) continue;  // presence is checked by the callers that rely on it
    const json& v = entry[key];
    switch (want) {
      case Want::kText:
        EXPECT_TRUE(v.is_string() || v.is_null()) << where << "." << key << ": " << v.dump();
        break;
      case Want::kInt:
        EXPECT_TRUE(v.is_number_integer() || v.is_null())
            << where << "." << key << ": " << v.dump();
        break;
      case Want::kUnsigned:
        EXPECT_TRUE(v.is_number_unsigned()) << where << "." << key << ": " << v.dump();
        break;
      case Want::kBool:
        EXPECT_TRUE(v.is_boolean()) << where << "." << key << ": " << v.dump();
        break;
      case Want::kString:
        EXPECT_TRUE(v.is_string()) << where << "." << key << ": " << v.dump();
        break;
      case Want::kArray: EXPECT_TRUE(v.is_array()) << where << "." << key; break;
      case Want::kObject: EXPECT_TRUE(v.is_object()) << where << "." << key; break;
    }
  }
  for (const auto& item : entry.items()) {
    EXPECT_TRUE(fields.count(item.key()) == 1) << where << ": unexpected key " << item.key();
  }
}

void expectList(const json& s, const char* name, const std::map<std::string, Want>& fields) {
  ASSERT_TRUE(s.contains(name) && s[name].is_array()) << name;
  for (size_t i = 0; i < s[name].size(); ++i) {
    expectFields(s[name][i], fields, fmt::format("{}[{}]", name, i));
  }
}

// Checks the whole document against the fixed types (evidence/README.md, "Summary").
void expectFixedTypes(const json& s) {
  using W = Want;
  expectFields(s,
               {{"host_id", W::kText},
                {"capture_id", W::kText},
                {"collected_at_unix_ms", W::kInt},
                {"findings", W::kArray},
                {"deleted_executables", W::kArray},
                {"remote_connections", W::kArray},
                {"unexpected_listeners", W::kArray},
                {"recent_logins", W::kArray},
                {"failed_logins", W::kObject},
                {"preload", W::kArray},
                {"hidden_pids", W::kArray},
                {"kernel_tainted", W::kUnsigned},
                {"collectors", W::kObject},
                {"unreadable_lines", W::kUnsigned},
                {"omitted", W::kObject}},
               "summary");
  for (const char* key :
       {"host_id", "capture_id", "collected_at_unix_ms", "kernel_tainted", "unreadable_lines"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  expectList(s, "findings",
             {{"kind", W::kString},
              {"severity", W::kString},
              {"pid", W::kInt},
              {"comm", W::kText},
              {"exe", W::kText},
              {"detail", W::kString}});
  for (const auto& f : s["findings"]) EXPECT_FALSE(f.contains("pid") && f["pid"].is_null());
  expectList(s, "deleted_executables",
             {{"pid", W::kInt},
              {"comm", W::kText},
              {"exe", W::kText},
              {"exe_sha256", W::kText},
              {"recovered", W::kText},
              {"memfd", W::kBool}});
  expectList(s, "remote_connections",
             {{"pid", W::kInt},
              {"comm", W::kText},
              {"exe", W::kText},
              {"protocol", W::kString},
              {"local", W::kString},
              {"remote", W::kString},
              {"state", W::kString},
              {"note", W::kString}});
  expectList(s, "unexpected_listeners",
             {{"pid", W::kInt},
              {"comm", W::kText},
              {"exe", W::kText},
              {"protocol", W::kString},
              {"local", W::kString},
              {"why", W::kString}});
  expectList(s, "recent_logins",
             {{"user", W::kText},
              {"from", W::kText},
              {"line", W::kText},
              {"at_unix_ms", W::kInt},
              {"current", W::kBool}});
  expectFields(s["failed_logins"], {{"count", W::kUnsigned}, {"top_sources", W::kArray}},
               "failed_logins");
  expectList(s["failed_logins"], "top_sources", {{"from", W::kString}, {"count", W::kUnsigned}});
  expectList(s, "preload", {{"source", W::kText}, {"entry", W::kText}});
  expectList(s, "hidden_pids", {{"pid", W::kInt}, {"comm", W::kText}});
  expectFields(s["collectors"], {{"ok", W::kUnsigned}, {"failed", W::kArray}}, "collectors");
  expectList(s["collectors"], "failed",
             {{"collector", W::kText}, {"status", W::kText}, {"error", W::kText}});
  if (s.contains("omitted")) {
    ASSERT_TRUE(s["omitted"].is_object());
    for (const auto& item : s["omitted"].items()) {
      EXPECT_TRUE(item.value().is_number_unsigned()) << item.key();
    }
  }
}

// Members whose fields have the wrong types: every field of the summary still has its type.
TEST(Summary, FieldsHaveOneTypeWhateverTheMembersHold) {
  const json odd_values[] = {5,
                             1.5,
                             -3,
                             true,
                             nullptr,
                             json::array({1, "x"}),
                             json{{"nested", 1}},
                             "text",
                             18446744073709551615ULL};
  for (const json& odd : odd_values) {
    SCOPED_TRACE(odd.dump());
    std::map<std::string, std::string> members;
    members["metadata.json"] = json{
        {"host_id", odd},
        {"capture_id", odd},
        {"collected_at_unix_ms", odd},
        {"agent_pid", odd}}.dump();
    members["artifacts/processes.jsonl"] =
        lines({{{"pid", 10},
                {"comm", odd},
                {"exe", odd},
                {"exe_deleted", true},
                {"exe_memfd", odd},
                {"exe_sha256", odd},
                {"recovered", odd}},
               {{"pid", odd}, {"comm", odd}, {"exe_deleted", true}}});
    members["artifacts/sockets.jsonl"] = lines({{{"family", "inet"},
                                                 {"protocol", "tcp"},
                                                 {"state", "established"},
                                                 {"local_address", "10.0.0.5"},
                                                 {"local_port", odd},
                                                 {"remote_address", "192.0.2.1"},
                                                 {"remote_port", odd},
                                                 {"pids", json::array({10, odd, 11})}},
                                                {{"family", "inet"},
                                                 {"protocol", "tcp"},
                                                 {"state", "listen"},
                                                 {"local_address", "0.0.0.0"},
                                                 {"local_port", 4444},
                                                 {"pids", odd}}});
    const json login = {{"type", "user_process"}, {"user", odd},      {"line", odd}, {"host", odd},
                        {"address", odd},         {"at_unix_ms", odd}};
    members["artifacts/utmp.jsonl"] = lines({login});
    members["artifacts/wtmp.jsonl"] = lines({login, json{{"type", "user_process"}}});
    members["artifacts/btmp.jsonl"] = lines({{{"host", odd}}, json::object()});
    members["artifacts/preload.jsonl"] = lines({{{"source", odd}, {"entry", odd}}});
    members["artifacts/kernel.json"] = json{{"tainted", odd}}.dump();
    members["artifacts/hidden_pids.jsonl"] = lines({{{"pid", odd}, {"comm", odd}}});
    members["collection-log.jsonl"] =
        lines({{{"collector", odd}, {"status", odd}, {"error", odd}}, json::object()});
    json s;
    ASSERT_NO_THROW(s = summarizeMembers(members));
    expectFixedTypes(s);
    EXPECT_FALSE(s["findings"].empty());
    EXPECT_FALSE(s["hidden_pids"].empty());
    EXPECT_FALSE(s["recent_logins"].empty());
    ASSERT_NO_THROW((void)renderSummary(s));
  }
}

// Members missing, empty, or with records that have no fields at all.
TEST(Summary, MissingMembersAndFieldsKeepTheTypes) {
  expectFixedTypes(summarizeMembers({}));
  std::map<std::string, std::string> members;
  for (const char* path :
       {"artifacts/processes.jsonl", "artifacts/sockets.jsonl", "artifacts/utmp.jsonl",
        "artifacts/wtmp.jsonl", "artifacts/btmp.jsonl", "artifacts/preload.jsonl",
        "artifacts/hidden_pids.jsonl", "collection-log.jsonl"}) {
    members[path] = "{}\n[]\n";
  }
  members["metadata.json"] = "[]";
  members["artifacts/kernel.json"] = "{}";
  const json s = summarizeMembers(members);
  expectFixedTypes(s);
  EXPECT_TRUE(s["host_id"].is_null());
  EXPECT_TRUE(s["collected_at_unix_ms"].is_null());
  EXPECT_EQ(s["kernel_tainted"], 0);
  ASSERT_EQ(s["hidden_pids"].size(), 1u);
  EXPECT_TRUE(s["hidden_pids"][0]["pid"].is_null());
  ASSERT_EQ(s["preload"].size(), 1u);
  EXPECT_TRUE(s["preload"][0]["entry"].is_null());
  ASSERT_EQ(s["collectors"]["failed"].size(), 1u);
  EXPECT_TRUE(s["collectors"]["failed"][0]["status"].is_null());
  EXPECT_EQ(s["failed_logins"]["count"], 1);
  EXPECT_EQ(s["unreadable_lines"], 8);  // the "[]" lines
}

// The synthetic bundle's document has the fixed types too.
TEST(Summary, ASummaryOfARealisticBundleHasTheFixedTypes) {
  TempDir dir;
  auto s = summarize(writeSyntheticBundle(dir));
  ASSERT_TRUE(s.ok()) << s.status();
  expectFixedTypes(*s);
}

}  // namespace
}  // namespace bulkhead::evidence
