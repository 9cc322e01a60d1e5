// An older agent's result document (CommandResult.result_json) read into the typed result.
#include "controller/core/legacy_result.h"

#include <gtest/gtest.h>

#include <string>

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

// What an agent of the previous version sent for `kill-sessions --from 10.77.0.66/32 --freeze`
// (nlohmann::json dump: keys sorted).
constexpr const char* kOldKillSessions =
    R"({"connections_cut":1,"errors":[{"error":"EPERM","pid":43}],"freeze_method":"sigstop",)"
    R"("frozen":true,"killed":[{"cmdline":"sleep 1000","exe":"/usr/bin/sleep","pid":41,)"
    R"("ppid":40,"uid":1001,"user":"mallory"}],"records":[{"cmdline":"sleep 1000",)"
    R"("comm":"sleep","exe":"/usr/bin/sleep","exe_sha256":")"
    R"(9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","loginuid":1001,)"
    R"("pid":41,"ppid":40,"sessionid":7,"sockets":[{"inode":1234,"kind":"tcp",)"
    R"("local":"10.77.0.12:22","remote":"10.77.0.66:51234","state":1},)"
    R"({"inode":99,"kind":"other"}],"start_unix":1764780000,"uid":1001,"user":"mallory"},)"
    R"({"cmdline":"[kworker]","comm":"kworker","exe":"","exe_sha256":"",)"
    R"("exe_sha256_error":"NOT_FOUND: no exe","loginuid":4294967295,"pid":42,"ppid":2,)"
    R"("sessionid":4294967295,"sockets":[],"start_unix":0,"uid":0,"user":"root"}],)"
    R"("scan_rounds":2,"sessions":[{"id":7,"interactive":true,"leader_pid":40,)"
    R"("loginuid":1001,"pids":[40,41],"processes":2,"remote":"10.77.0.66","service":"sshd",)"
    R"("start_unix":1764779000,"tty":"pts/1","user":"mallory"}],"skipped":[{"cmdline":"bash",)"
    R"("pid":40,"why":"exited before it could be held"}],"spared":[{"cmdline":"init",)"
    R"("exe":"/sbin/init","pid":1,"ppid":0,"uid":0,"user":"root","why":"pid 1"}],)"
    R"("still_alive":[{"cmdline":"stuck","exe":"/x","pid":43,"ppid":1,"uid":0,"user":"root"}]})";

TEST(LegacyResult, AnOlderAgentsKillSessionsDocumentConvertsFieldByField) {
  v1::CommandResult r;
  ASSERT_TRUE(convertLegacyResult("kill-sessions", kOldKillSessions, &r).ok());
  ASSERT_TRUE(r.has_kill_processes());
  const v1::KillProcessesResult& k = r.kill_processes();
  EXPECT_EQ(k.scan_rounds(), 2u);
  EXPECT_TRUE(k.frozen());
  EXPECT_EQ(k.freeze_method(), v1::FREEZE_METHOD_SIGSTOP);
  EXPECT_EQ(k.connections_cut(), 1u);
  EXPECT_EQ(k.cut_error(), "");
  EXPECT_EQ(k.note(), "");
  ASSERT_EQ(k.killed_size(), 1);
  EXPECT_EQ(k.killed(0).pid(), 41);
  EXPECT_EQ(k.killed(0).ppid(), 40);
  EXPECT_EQ(k.killed(0).uid(), 1001u);
  EXPECT_EQ(k.killed(0).user(), "mallory");
  EXPECT_EQ(k.killed(0).cmdline(), "sleep 1000");
  EXPECT_EQ(k.killed(0).exe(), "/usr/bin/sleep");
  ASSERT_EQ(k.records_size(), 2);
  const v1::ProcessRecord& rec = k.records(0);
  EXPECT_EQ(rec.comm(), "sleep");
  EXPECT_EQ(rec.loginuid(), 1001u);
  EXPECT_EQ(rec.sessionid(), 7u);
  EXPECT_EQ(rec.start_unix(), 1764780000);
  EXPECT_EQ(rec.exe_sha256().size(), 64u);
  ASSERT_EQ(rec.sockets_size(), 2);
  EXPECT_EQ(rec.sockets(0).kind(), v1::SOCKET_KIND_TCP);
  EXPECT_EQ(rec.sockets(0).inode(), 1234u);
  EXPECT_EQ(rec.sockets(0).local(), "10.77.0.12:22");
  EXPECT_EQ(rec.sockets(0).remote(), "10.77.0.66:51234");
  EXPECT_EQ(rec.sockets(0).state(), 1u);
  EXPECT_EQ(rec.sockets(1).kind(), v1::SOCKET_KIND_OTHER);
  EXPECT_EQ(k.records(1).loginuid(), 4294967295u);
  EXPECT_EQ(k.records(1).exe_sha256_error(), "NOT_FOUND: no exe");
  ASSERT_EQ(k.spared_size(), 1);
  EXPECT_EQ(k.spared(0).why(), "pid 1");
  ASSERT_EQ(k.skipped_size(), 1);
  EXPECT_EQ(k.skipped(0).why(), "exited before it could be held");
  ASSERT_EQ(k.still_alive_size(), 1);
  EXPECT_EQ(k.still_alive(0).pid(), 43);
  ASSERT_EQ(k.errors_size(), 1);
  EXPECT_EQ(k.errors(0).pid(), 43);
  EXPECT_EQ(k.errors(0).error(), "EPERM");
  ASSERT_EQ(k.sessions_size(), 1);
  const v1::SessionRecord& s = k.sessions(0);
  EXPECT_EQ(s.id(), 7u);
  EXPECT_EQ(s.user(), "mallory");
  EXPECT_EQ(s.loginuid(), 1001u);
  EXPECT_EQ(s.tty(), "pts/1");
  EXPECT_EQ(s.remote(), "10.77.0.66");
  EXPECT_EQ(s.service(), "sshd");
  EXPECT_EQ(s.leader_pid(), 40);
  EXPECT_EQ(s.start_unix(), 1764779000);
  EXPECT_EQ(s.processes(), 2u);
  ASSERT_EQ(s.pids_size(), 2);
  EXPECT_EQ(s.pids(1), 41);
  EXPECT_TRUE(s.interactive());
}

TEST(LegacyResult, KillConnectionsSessionsAndANoMatchNoteConvert) {
  v1::CommandResult r;
  ASSERT_TRUE(
      convertLegacyResult("kill-connections",
                          R"({"connections":[{"forwarded":false,"how":"socket destroyed",)"
                          R"("local":"10.77.1.11","local_port":22,"pid":4242,"proto":"tcp",)"
                          R"("remote":"10.77.0.66","remote_port":51000},{"forwarded":true,)"
                          R"("how":"conntrack entry deleted","local":"10.77.1.12","local_port":53,)"
                          R"("pid":0,"proto":"udp","remote":"10.77.0.66","remote_port":5353}],)"
                          R"("connections_cut":2,"errors":["conntrack: EBUSY"]})",
                          &r)
          .ok());
  ASSERT_TRUE(r.has_kill_connections());
  const v1::KillConnectionsResult& c = r.kill_connections();
  EXPECT_EQ(c.connections_cut(), 2u);
  ASSERT_EQ(c.connections_size(), 2);
  EXPECT_EQ(c.connections(0).proto(), v1::PROTOCOL_TCP);
  EXPECT_EQ(c.connections(0).how(), v1::CUT_METHOD_SOCKET_DESTROYED);
  EXPECT_EQ(c.connections(0).pid(), 4242u);
  EXPECT_EQ(c.connections(0).local_port(), 22u);
  EXPECT_EQ(c.connections(0).remote(), "10.77.0.66");
  EXPECT_EQ(c.connections(1).proto(), v1::PROTOCOL_UDP);
  EXPECT_EQ(c.connections(1).how(), v1::CUT_METHOD_CONNTRACK_DELETED);
  EXPECT_TRUE(c.connections(1).forwarded());
  ASSERT_EQ(c.errors_size(), 1);
  EXPECT_EQ(c.errors(0), "conntrack: EBUSY");

  ASSERT_TRUE(convertLegacyResult("sessions",
                                  R"({"sessions":[{"id":3,"interactive":false,"leader_pid":9,)"
                                  R"("loginuid":0,"pids":[9],"processes":1,"remote":"",)"
                                  R"("service":"cron","start_unix":5,"tty":"","user":"root"}],)"
                                  R"("source":"proc"})",
                                  &r)
                  .ok());
  ASSERT_TRUE(r.has_list_sessions());
  EXPECT_EQ(r.list_sessions().source(), "proc");
  ASSERT_EQ(r.list_sessions().sessions_size(), 1);
  EXPECT_EQ(r.list_sessions().sessions(0).service(), "cron");

  ASSERT_TRUE(
      convertLegacyResult("kill-process",
                          R"({"killed":[],"note":"--user bob matches no session; nothing killed",)"
                          R"("sessions":[],"spared":[]})",
                          &r)
          .ok());
  ASSERT_TRUE(r.has_kill_processes());
  EXPECT_EQ(r.kill_processes().note(), "--user bob matches no session; nothing killed");
  EXPECT_FALSE(r.kill_processes().frozen());
  EXPECT_EQ(r.kill_processes().freeze_method(), v1::FREEZE_METHOD_UNSPECIFIED);
}

TEST(LegacyResult, NoDocumentSetsNothing) {
  v1::CommandResult r;
  r.mutable_list_sessions()->set_source("stale");
  ASSERT_TRUE(convertLegacyResult("kill-process", "", &r).ok());
  EXPECT_EQ(r.result_case(), v1::CommandResult::RESULT_NOT_SET);
}

TEST(LegacyResult, WhatDoesNotReadIsInvalidArgumentNamingTheKeyAndSetsNothing) {
  auto fails = [](const char* action, const std::string& doc, const std::string& needle) {
    v1::CommandResult r;
    absl::Status s = convertLegacyResult(action, doc, &r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << doc;
    EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << s.message();
    EXPECT_EQ(r.result_case(), v1::CommandResult::RESULT_NOT_SET) << doc;
  };
  fails("kill-sessions", R"({"killed":[{"pid":"41"}]})", "killed[0].pid: not an integer");
  fails("kill-sessions", R"({"killed":[{"pid":41},"x"]})", "killed[1]: not an object");
  fails("kill-sessions", R"({"spared":{"pid":1}})", "spared: not an array");
  fails("kill-sessions", R"({"frozen":"yes"})", "frozen: not true or false");
  fails("kill-sessions", R"({"connections_cut":-1})", "connections_cut: not an integer");
  fails("kill-sessions", R"({"freeze_method":"cgroup"})", "freeze_method");
  fails("kill-sessions", R"({"sessions":[{"pids":[1,"2"]}]})", "sessions[0].pids[1]");
  fails("kill-sessions", R"({"records":[{"sockets":[{"kind":"unix"}]}]})",
        "records[0].sockets[0].kind");
  fails("kill-process", R"({"killed":[{"pid":4294967296}]})", "killed[0].pid");
  fails("kill-connections", R"({"connections":[{"proto":"tcp","how":"magic"}]})",
        "connections[0].how");
  fails("kill-connections", R"({"connections":[{"proto":"icmp"}]})", "connections[0].proto");
  fails("kill-connections", R"({"errors":[3]})", "errors[0]: not a string");
  fails("sessions", R"({"source":7})", "source: not a string");
  fails("sessions", "[1]", "not a JSON object");
  fails("sessions", std::string(100000, '[') + std::string(100000, ']'), "not a JSON object");
  fails("capture", R"({"capture_id":"c"})", "no typed result for action \"capture\"");
}

}  // namespace
}  // namespace bulkhead::controller
