// The evidence summary on the wire: the controller's document -> EvidenceSummary
// (rpc/translate.h), through the wire, back to the document in the CLI
// (cli/evidence_commands.h): the same document, so `evidence show` prints the same text.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/evidence_commands.h"
#include "controller/rpc/translate.h"
#include "evidence/summary.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using nlohmann::json;

std::string lines(const std::vector<json>& records) {
  std::string out;
  for (const auto& r : records) out += r.dump() + "\n";
  return out;
}

json socket(const std::string& protocol, const std::string& state, const std::string& local,
            int local_port, const std::string& remote, int remote_port, const json& pids) {
  return {{"family", "inet"},
          {"protocol", protocol},
          {"state", state},
          {"local_address", local},
          {"local_port", local_port},
          {"remote_address", remote},
          {"remote_port", remote_port},
          {"pids", pids}};
}

// A bundle with one of every finding, and the fields that may be absent or unreadable both
// ways: a process with an unreadable comm and exe, a hidden pid without comm, the agent's own
// connection (note), a current login, a login without host.
std::map<std::string, std::string> membersWithFindings() {
  std::map<std::string, std::string> m;
  m["metadata.json"] = json{
      {"host_id", "web-03"},
      {"capture_id", "cap-7"},
      {"collected_at_unix_ms", 1763917262000},
      {"agent_pid", 900}}.dump();
  m["artifacts/processes.jsonl"] =
      lines({{{"pid", 4242},
              {"comm", "implant"},
              {"exe", "/tmp/implant (deleted)"},
              {"exe_deleted", true},
              {"exe_sha256", std::string(64, 'a')},
              {"recovered", "binaries/" + std::string(64, 'a')}},
             {{"pid", 5000}, {"exe_deleted", true}, {"exe_memfd", true}},  // comm, exe unreadable
             {{"pid", 6000}, {"comm", "tool"}, {"exe", "/home/bob/tool"}},
             {{"pid", 900}, {"comm", "bulkhead-agent"}, {"exe", "/usr/sbin/bulkhead-agent"}}}) +
      "not JSON\n";
  m["artifacts/sockets.jsonl"] =
      lines({socket("tcp", "established", "10.0.0.5", 51234, "10.77.0.66", 443, {4242}),
             socket("tcp", "established", "10.0.0.5", 51235, "10.77.0.67", 443, {5000}),
             socket("tcp", "established", "10.0.0.5", 51236, "10.77.0.68", 443, {77}),
             socket("tcp", "listen", "0.0.0.0", 4444, "0.0.0.0", 0, {4242}),
             socket("udp", "unconnected", "0.0.0.0", 5353, "0.0.0.0", 0, {6000}),
             socket("tcp", "listen", "0.0.0.0", 8080, "0.0.0.0", 0, json::array()),
             socket("tcp", "listen", "0.0.0.0", 9090, "0.0.0.0", 0, {31}),
             socket("tcp", "established", "10.0.0.5", 41000, "10.0.0.1", 7443, {900})});
  m["artifacts/utmp.jsonl"] = lines({{{"type", "user_process"},
                                      {"user", "root"},
                                      {"line", "pts/9"},
                                      {"address", "203.0.113.7"},
                                      {"at_unix_ms", 1763917000000}}});
  m["artifacts/wtmp.jsonl"] =
      lines({{{"type", "user_process"}, {"user", "bob"}, {"line", "pts/1"}, {"at_unix_ms", 5}},
             {{"type", "user_process"}, {"user", 7}}});
  m["artifacts/btmp.jsonl"] = lines({{{"host", "1.2.3.4"}}, {{"host", "1.2.3.4"}}, json::object()});
  m["artifacts/preload.jsonl"] =
      lines({{{"source", "/etc/ld.so.preload"}, {"entry", "/lib/libhide.so"}}, json::object()});
  m["artifacts/kernel.json"] = json{{"tainted", 4096}}.dump();
  m["artifacts/hidden_pids.jsonl"] = lines({{{"pid", 31337}, {"comm", "ghost"}}, {{"pid", 31338}}});
  m["collection-log.jsonl"] =
      lines({{{"collector", "processes"}, {"status", "ok"}},
             {{"collector", "persistence"}, {"status", "timeout"}, {"error", "time limit"}},
             {{"collector", "sockets"}, {"status", "error"}}});
  return m;
}

// More entries than a list holds: `omitted` set.
std::map<std::string, std::string> membersOverTheBounds() {
  std::vector<json> procs;
  for (int pid = 1; pid <= 150; ++pid) {
    procs.push_back(
        {{"pid", pid}, {"comm", "c"}, {"exe", "/tmp/x (deleted)"}, {"exe_deleted", true}});
  }
  std::vector<json> hidden;
  for (int pid = 1; pid <= 120; ++pid) hidden.push_back({{"pid", 100000 + pid}});
  return {{"artifacts/processes.jsonl", lines(procs)},
          {"artifacts/hidden_pids.jsonl", lines(hidden)}};
}

// What the CLI reads back from what the controller sends, through the wire.
json overTheWire(const json& document) {
  const v1::EvidenceSummary sent = toEvidenceSummary(document);
  std::string wire;
  EXPECT_TRUE(sent.SerializeToString(&wire));
  v1::EvidenceSummary received;
  EXPECT_TRUE(received.ParseFromString(wire));
  return cli::summaryDocument(received);
}

TEST(SummaryOnTheWire, TheCliReadsBackTheControllersDocumentAndPrintsTheSameText) {
  for (const auto& members :
       {membersWithFindings(), membersOverTheBounds(), std::map<std::string, std::string>{}}) {
    const json document = evidence::summarizeMembers(members);
    const json read_back = overTheWire(document);
    EXPECT_EQ(read_back, document) << "sent:\n"
                                   << document.dump(1) << "\nread back:\n"
                                   << read_back.dump(1);
    EXPECT_EQ(evidence::renderSummary(read_back), evidence::renderSummary(document));
  }
}

TEST(SummaryOnTheWire, TheTypedSummaryKeepsAbsentApartFromUnreadable) {
  const json document = evidence::summarizeMembers(membersWithFindings());
  ShownEvidence shown;
  shown.summary = document;
  shown.evidence.row.id = std::string(64, 'c');
  const v1::ShowEvidenceResponse resp = toProto(shown);
  ASSERT_TRUE(resp.has_summary());
  EXPECT_EQ(resp.record().evidence_id(), shown.evidence.row.id);
  const v1::EvidenceSummary& s = resp.summary();
  EXPECT_EQ(s.host_id(), "web-03");
  EXPECT_EQ(s.capture_id(), "cap-7");
  EXPECT_EQ(s.collected_at_unix_ms(), 1763917262000);
  EXPECT_EQ(s.unreadable_lines(), 1u);
  EXPECT_EQ(s.kernel_tainted(), 4096u);

  auto findingOf = [&](const std::string& kind,
                       int64_t pid) -> const v1::EvidenceSummary::Finding* {
    for (const auto& f : s.findings()) {
      if (f.kind() == kind && f.has_pid() && f.pid() == pid) return &f;
    }
    return nullptr;
  };
  // Listed with comm and exe.
  const auto* implant = findingOf("deleted_executable", 4242);
  ASSERT_NE(implant, nullptr);
  EXPECT_EQ(implant->severity(), "high");
  EXPECT_TRUE(implant->comm_listed() && implant->has_comm());
  EXPECT_EQ(implant->comm(), "implant");
  EXPECT_EQ(implant->exe(), "/tmp/implant (deleted)");
  EXPECT_NE(implant->detail().find("listening on tcp 0.0.0.0:4444"), std::string::npos);
  // Listed, comm and exe unreadable.
  const auto* memfd = findingOf("memfd_executable", 5000);
  ASSERT_NE(memfd, nullptr);
  EXPECT_TRUE(memfd->comm_listed());
  EXPECT_FALSE(memfd->has_comm());
  EXPECT_TRUE(memfd->exe_listed());
  EXPECT_FALSE(memfd->has_exe());
  // Not in the process list: neither listed.
  const auto* unknown_owner = findingOf("remote_connection", 77);
  ASSERT_NE(unknown_owner, nullptr);
  EXPECT_FALSE(unknown_owner->comm_listed());
  EXPECT_FALSE(unknown_owner->exe_listed());
  // A hidden process: comm from the probe (or unreadable), never an exe.
  const auto* ghost = findingOf("hidden_process", 31337);
  ASSERT_NE(ghost, nullptr);
  EXPECT_TRUE(ghost->comm_listed());
  EXPECT_EQ(ghost->comm(), "ghost");
  EXPECT_FALSE(ghost->exe_listed());
  const auto* nameless = findingOf("hidden_process", 31338);
  ASSERT_NE(nameless, nullptr);
  EXPECT_TRUE(nameless->comm_listed());
  EXPECT_FALSE(nameless->has_comm());
  // About no one process: no pid.
  int without_pid = 0;
  for (const auto& f : s.findings()) {
    if (f.kind() == "preload" || f.kind() == "failed_logins" || f.kind() == "collector_failed") {
      EXPECT_FALSE(f.has_pid()) << f.kind();
      ++without_pid;
    }
  }
  EXPECT_EQ(without_pid, 2 + 1 + 2);  // two preload entries, failed logins, two collectors

  // The agent's own channel: listed with its note, no finding.
  bool agent_listed = false;
  for (const auto& c : s.remote_connections()) {
    if (c.has_pid() && c.pid() == 900) {
      agent_listed = true;
      EXPECT_EQ(c.note(), "the bulkhead agent's controller channel");
    } else {
      EXPECT_FALSE(c.has_note()) << c.remote();
    }
  }
  EXPECT_TRUE(agent_listed);
  EXPECT_EQ(findingOf("remote_connection", 900), nullptr);

  // A listener without an owner: no pid; with an owner not in the process list: pid, no comm.
  bool ownerless = false, unlisted_owner = false;
  for (const auto& l : s.unexpected_listeners()) {
    if (l.local() == "0.0.0.0:8080") {
      ownerless = true;
      EXPECT_FALSE(l.has_pid());
      EXPECT_EQ(l.why(), "no owning process");
    }
    if (l.local() == "0.0.0.0:9090") {
      unlisted_owner = true;
      EXPECT_EQ(l.pid(), 31);
      EXPECT_FALSE(l.has_comm());
    }
  }
  EXPECT_TRUE(ownerless && unlisted_owner);

  ASSERT_EQ(s.deleted_executables_size(), 2);
  EXPECT_EQ(s.deleted_executables(0).recovered(), "binaries/" + std::string(64, 'a'));
  EXPECT_TRUE(s.deleted_executables(1).memfd());
  EXPECT_FALSE(s.deleted_executables(1).has_exe_sha256());

  ASSERT_EQ(s.recent_logins_size(), 3);
  EXPECT_TRUE(s.recent_logins(0).current());
  EXPECT_EQ(s.recent_logins(0).from(), "203.0.113.7");
  EXPECT_FALSE(s.recent_logins(1).current());
  EXPECT_FALSE(s.recent_logins(1).has_from());
  EXPECT_FALSE(s.recent_logins(2).has_user());  // a user of another type: unreadable
  EXPECT_FALSE(s.recent_logins(2).has_at_unix_ms());

  EXPECT_EQ(s.failed_logins().count(), 3u);
  ASSERT_EQ(s.failed_logins().top_sources_size(), 2);
  EXPECT_EQ(s.failed_logins().top_sources(0).from(), "1.2.3.4");
  EXPECT_EQ(s.failed_logins().top_sources(0).count(), 2u);
  ASSERT_EQ(s.preload_size(), 2);
  EXPECT_FALSE(s.preload(1).has_entry());
  ASSERT_EQ(s.hidden_pids_size(), 2);
  EXPECT_FALSE(s.hidden_pids(1).has_comm());
  EXPECT_EQ(s.collectors().ok(), 1u);
  ASSERT_EQ(s.collectors().failed_size(), 2);
  EXPECT_EQ(s.collectors().failed(0).error(), "time limit");
  EXPECT_FALSE(s.collectors().failed(1).has_error());
  EXPECT_EQ(s.omitted().ByteSizeLong(), 0u);
}

TEST(SummaryOnTheWire, OmittedCountsTheEntriesLeftOut) {
  const v1::EvidenceSummary s =
      toEvidenceSummary(evidence::summarizeMembers(membersOverTheBounds()));
  EXPECT_EQ(s.deleted_executables_size(), 100);
  EXPECT_EQ(s.omitted().deleted_executables(), 50u);
  EXPECT_EQ(s.omitted().hidden_pids(), 20u);
  EXPECT_EQ(s.omitted().findings(), 170u);  // 150 deleted + 120 hidden, 100 kept
  EXPECT_EQ(s.omitted().preload(), 0u);
  EXPECT_FALSE(s.has_host_id());
  EXPECT_FALSE(s.has_collected_at_unix_ms());
}

TEST(SummaryOnTheWire, ADocumentOfAnotherShapeGivesEmptyFields) {
  for (const json& odd : {json(), json::array(), json("x"),
                          json{{"findings", 3}, {"failed_logins", "x"}, {"omitted", {1}}}}) {
    v1::EvidenceSummary s;
    ASSERT_NO_THROW(s = toEvidenceSummary(odd)) << odd.dump();
    EXPECT_EQ(s.findings_size(), 0);
    EXPECT_FALSE(s.has_host_id());
  }
}

}  // namespace
}  // namespace bulkhead::controller
