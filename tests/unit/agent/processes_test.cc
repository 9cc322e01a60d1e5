#include "agent/core/processes.h"

#include <gtest/gtest.h>

namespace bulkhead::agent {
namespace {

TEST(ProcStat, ParsesCommWithSpacesAndParens) {
  auto st = parseProcStat(
      "4242 (my (odd) prog) S 4200 4242 4100 34818 4242 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
      "987654 1000 200 18446744073709551615\n");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->pid, 4242);
  EXPECT_EQ(st->comm, "my (odd) prog");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 4200);
  EXPECT_EQ(st->sid, 4100);
  EXPECT_EQ(st->tty_nr, 34818);
  EXPECT_EQ(st->start_ticks, 987654u);
  EXPECT_EQ(ttyName(st->tty_nr), "pts/2");
}

TEST(ProcStat, RejectsGarbage) {
  EXPECT_FALSE(parseProcStat("").ok());
  EXPECT_FALSE(parseProcStat("12 (x) S 1 2").ok());
  EXPECT_FALSE(parseProcStat("x (y) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5").ok());
}

TEST(ProcStatus, RealUid) {
  auto uid = parseStatusUid("Name:\tsleep\nUmask:\t0022\nState:\tS\nUid:\t1001\t0\t0\t0\nGid:\t0\n");
  ASSERT_TRUE(uid.ok());
  EXPECT_EQ(*uid, 1001u);
  EXPECT_FALSE(parseStatusUid("Name:\tx\n").ok());
  EXPECT_FALSE(parseStatusUid("Uid:\tabc\n").ok());
}

TEST(AuditId, NumbersAndUnset) {
  EXPECT_EQ(*parseAuditId("sessionid", "4294967295"), kNoAuditId);
  EXPECT_EQ(*parseAuditId("sessionid", "17\n"), 17u);
  auto bad = parseAuditId("sessionid", "-1");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("sessionid"), std::string::npos);
}

TEST(Cmdline, JoinsArguments) {
  EXPECT_EQ(joinCmdline(std::string_view("sleep\0" "1000\0", 11)), "sleep 1000");
  EXPECT_EQ(joinCmdline(""), "");
}

TEST(Tty, Names) {
  EXPECT_EQ(ttyName(0), "");
  EXPECT_EQ(ttyName((4 << 8) | 1), "tty1");
  EXPECT_EQ(ttyName((4 << 8) | 64), "ttyS0");
  EXPECT_EQ(ttyName((136 << 8) | 0), "pts/0");
}

TEST(ProcNetTcp, V4AndV6) {
  const char* v4 =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n"
      "   1: 0C004D0A:0016 0D004D0A:D431 01 00000000:00000000 02:000A7D8B 00000000     0        0 2222 4 0 20 4 30 10 -1\n";
  auto s = parseProcNetTcp(v4, false);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].state, 10);
  EXPECT_EQ(s[0].local, "0.0.0.0:22");
  EXPECT_EQ(s[1].local, "10.77.0.12:22");
  EXPECT_EQ(s[1].remote, "10.77.0.13:54321");
  EXPECT_EQ(s[1].remote_ip, "10.77.0.13");
  EXPECT_EQ(s[1].state, 1);
  EXPECT_EQ(s[1].inode, 2222u);

  const char* v6 =
      "  sl  local_address                         remote_address                        st\n"
      "   0: 0000000000000000FFFF00000C004D0A:0016 0000000000000000FFFF00000D004D0A:D431 01 "
      "00000000:00000000 00:00000000 00000000     0        0 3333 1 0\n"
      "   1: 000077FD000000000000000012000000:0016 000077FD000000000000000013000000:0050 01 "
      "00000000:00000000 00:00000000 00000000     0        0 4444 1 0\n";
  auto s6 = parseProcNetTcp(v6, true);
  ASSERT_EQ(s6.size(), 2u);
  EXPECT_EQ(s6[0].remote_ip, "10.77.0.13");   // v4-mapped peer reported as v4
  EXPECT_EQ(s6[1].remote, "[fd77::13]:80");
  EXPECT_EQ(s6[1].inode, 4444u);
}

ProcessInfo proc(int pid, int ppid, uint32_t sid, uint32_t uid, const char* comm, uint64_t start,
                 std::vector<uint64_t> inodes = {}, int tty = 0) {
  ProcessInfo p;
  p.pid = pid;
  p.ppid = ppid;
  p.sessionid = sid;
  p.loginuid = sid == kNoAuditId ? kNoAuditId : 1001;   // every sample session is mallory's
  p.uid = uid;
  p.user = uid == 0 ? "root" : "mallory";
  p.comm = comm;
  p.start_ticks = start;
  p.start_unix = 1700000000 + static_cast<int64_t>(start);
  p.socket_inodes = std::move(inodes);
  p.tty_nr = tty;
  return p;
}

std::vector<ProcessInfo> sampleHost() {
  return {
      proc(1, 0, kNoAuditId, 0, "holder", 1),
      proc(20, 1, kNoAuditId, 0, "sshd", 5, {1111}),         // listener
      proc(30, 1, kNoAuditId, 0, "bulkhead-agent", 6),
      // mallory over ssh from 10.77.0.13: [priv] (root, loginuid mallory), user sshd, shell,
      // a nohup'ed sleep re-parented to pid 1.
      proc(100, 20, 7, 0, "sshd", 50, {2222}),
      proc(101, 100, 7, 1001, "sshd", 51, {2222}),
      proc(102, 101, 7, 1001, "bash", 52),
      proc(103, 1, 7, 1001, "sleep", 53),
      // a second session with a terminal, no socket
      proc(200, 1, 9, 1001, "login", 60, {}, (136 << 8) | 4),
      proc(201, 200, 9, 1001, "bash", 61, {}, (136 << 8) | 4),
  };
}

std::vector<ProcNetSocket> sampleSockets() {
  ProcNetSocket listen;
  listen.state = 10;
  listen.inode = 1111;
  ProcNetSocket est;
  est.state = 1;
  est.inode = 2222;
  est.remote_ip = "10.77.0.13";
  return {listen, est};
}

TEST(Sessions, GroupsByAuditSessionIncludingDetachedChildren) {
  auto sessions = groupSessions(sampleHost(), sampleSockets());
  ASSERT_EQ(sessions.size(), 2u);
  const auto& ssh = sessions[0];
  EXPECT_EQ(ssh.id, 7u);
  EXPECT_EQ(ssh.leader_pid, 100);
  EXPECT_EQ(ssh.pids, (std::vector<int>{100, 101, 102, 103}));
  EXPECT_EQ(ssh.remote, "10.77.0.13");
  EXPECT_EQ(ssh.service, "sshd");
  EXPECT_EQ(ssh.user, "mallory");
  EXPECT_EQ(ssh.start_unix, 1700000050);
  EXPECT_TRUE(ssh.interactive());
  const auto& tty = sessions[1];
  EXPECT_EQ(tty.id, 9u);
  EXPECT_EQ(tty.tty, "pts/4");
  EXPECT_EQ(tty.remote, "");
  EXPECT_EQ(tty.service, "login");
  EXPECT_TRUE(tty.interactive());
}

TEST(Sessions, Matching) {
  auto sessions = groupSessions(sampleHost(), sampleSockets());
  SessionMatch from;
  from.from = *parseCidr("from", "10.77.0.13/32");
  EXPECT_TRUE(sessionMatches(sessions[0], from));
  EXPECT_FALSE(sessionMatches(sessions[1], from));
  from.from = *parseCidr("from", "10.77.0.14/32");
  EXPECT_FALSE(sessionMatches(sessions[0], from));
  from.from = *parseCidr("from", "fd77::/16");
  EXPECT_FALSE(sessionMatches(sessions[0], from));

  SessionMatch user;
  user.uid = 1001;
  EXPECT_TRUE(sessionMatches(sessions[0], user));
  EXPECT_TRUE(sessionMatches(sessions[1], user));
  user.uid = 1002;
  EXPECT_FALSE(sessionMatches(sessions[0], user));

  SessionMatch id;
  id.session_id = 9;
  EXPECT_FALSE(sessionMatches(sessions[0], id));
  EXPECT_TRUE(sessionMatches(sessions[1], id));

  SessionMatch all;
  all.all = true;
  EXPECT_TRUE(sessionMatches(sessions[0], all));
  SessionMatch none;
  EXPECT_FALSE(sessionMatches(sessions[0], none));
}

TEST(Descendants, WholeTreeRootFirst) {
  auto procs = sampleHost();
  EXPECT_EQ(withDescendants(procs, 100), (std::vector<int>{100, 101, 102}));
  EXPECT_EQ(withDescendants(procs, 200), (std::vector<int>{200, 201}));
  EXPECT_EQ(withDescendants(procs, 103), (std::vector<int>{103}));
}

TEST(Protection, Pid1AgentListenerAndConfiguredList) {
  auto procs = sampleHost();
  Protection prot;
  prot.self_pid = 30;
  prot.exes = {"/usr/sbin/postgres"};
  prot.comms = {"login"};
  EXPECT_EQ(protectedBecause(procs[0], prot), "pid 1");
  EXPECT_EQ(protectedBecause(procs[1], prot), "the sshd listener");
  EXPECT_EQ(protectedBecause(procs[2], prot), "the bulkhead agent itself");
  EXPECT_EQ(protectedBecause(procs[3], prot), std::nullopt);   // a session's sshd is fair game
  EXPECT_EQ(protectedBecause(procs[7], prot), "protected name login");
  ProcessInfo pg = proc(300, 1, kNoAuditId, 0, "postgres", 70);
  pg.exe = "/usr/sbin/postgres";
  EXPECT_EQ(protectedBecause(pg, prot), "protected exe /usr/sbin/postgres");

  auto plan = planKill(procs, prot);
  std::vector<int> killed;
  for (const auto& p : plan.kill) killed.push_back(p.pid);
  EXPECT_EQ(killed, (std::vector<int>{100, 101, 102, 103, 201}));
  ASSERT_EQ(plan.spared.size(), 4u);
  EXPECT_EQ(plan.spared[0].process.pid, 1);
  EXPECT_EQ(plan.spared[3].process.pid, 200);
}

TEST(Protection, OnlyProtectedMeansNothingToKill) {
  auto procs = sampleHost();
  Protection prot;
  prot.self_pid = 30;
  auto plan = planKill({procs[0], procs[2]}, prot);
  EXPECT_TRUE(plan.kill.empty());
  EXPECT_EQ(plan.spared.size(), 2u);
  ProcessInfo kthread = proc(2, 0, kNoAuditId, 0, "kthreadd", 1);
  kthread.kernel_thread = true;
  plan = planKill({kthread}, prot);
  EXPECT_TRUE(plan.kill.empty());
  EXPECT_TRUE(plan.spared.empty());
}

}  // namespace
}  // namespace bulkhead::agent

namespace bulkhead::agent {
namespace {

TEST(Logind, ParsesLoginctlOutput) {
  auto ids = parseLoginctlList("      3 1001 mallory seat0 tty2\n     c1  120 gdm     seat0 tty1\n");
  EXPECT_EQ(ids, (std::vector<std::string>{"3", "c1"}));
  auto s = parseLoginctlShow("Id=3\nUser=1001\nName=mallory\nTTY=pts/0\nRemoteHost=10.77.0.66\n"
                             "Service=sshd\nLeader=4\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->id, "3");
  EXPECT_EQ(s->uid, 1001u);
  EXPECT_EQ(s->user, "mallory");
  EXPECT_EQ(s->tty, "pts/0");
  EXPECT_EQ(s->remote_host, "10.77.0.66");
  EXPECT_EQ(s->service, "sshd");
  EXPECT_EQ(s->leader, 4);
  EXPECT_FALSE(parseLoginctlShow("User=1\n").ok());
  EXPECT_FALSE(parseLoginctlShow("Id=3\nUser=x\n").ok());
}

TEST(Logind, MergeKeepsProcPidsAndLogindDetails) {
  std::vector<SessionInfo> proc(2);
  proc[0].id = 3;
  proc[0].pids = {100, 101, 103};
  proc[0].leader_pid = 100;
  proc[0].user = "1001";
  proc[1].id = 9;   // a daemon with an audit id logind does not list
  proc[1].pids = {200};
  LogindSession a;
  a.id = "3";
  a.uid = 1001;
  a.user = "mallory";
  a.remote_host = "10.77.0.66";
  a.service = "sshd";
  a.leader = 100;
  LogindSession greeter;
  greeter.id = "c1";
  greeter.uid = 120;
  greeter.user = "gdm";
  greeter.tty = "tty1";
  auto out = mergeLogindSessions({a, greeter}, proc);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].id, 3u);
  EXPECT_EQ(out[0].pids, (std::vector<int>{100, 101, 103}));
  EXPECT_EQ(out[0].user, "mallory");
  EXPECT_EQ(out[0].remote, "10.77.0.66");
  EXPECT_EQ(out[0].service, "sshd");
  EXPECT_EQ(out[1].id, 9u);
  EXPECT_EQ(out[2].id, kNoAuditId);   // "c1": no audit id, listed but never killed by id
  EXPECT_TRUE(out[2].pids.empty());
  EXPECT_EQ(out[2].tty, "tty1");
  SessionMatch from;
  from.from = *parseCidr("from", "10.77.0.66/32");
  EXPECT_TRUE(sessionMatches(out[0], from));
}

}  // namespace
}  // namespace bulkhead::agent
