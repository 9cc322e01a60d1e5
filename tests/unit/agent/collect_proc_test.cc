// The /proc collectors (metadata, processes, open_files, sockets) against a fixture proc tree
// in a temp dir (CollectContext.proc_root), the capture's shared fd walk (fd_table.h) that
// open_files and sockets read, then the collectors against the real /proc of this process.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "agent/collect/collectors.h"
#include "agent/collect/fd_table.h"
#include "agent/core/processes.h"
#include "agent/linux/fd_walk.h"
#include "agent/linux/proc_files.h"
#include "agent/linux/proc_scan.h"
#include "tests/unit/agent/memory_sink.h"

namespace bulkhead::agent::collect {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::MemorySink;

TEST(ProcParsers, StatusFields) {
  auto f = parseProcStatus(
      "Name:\tsleep\nTgid:\t4242\nPid:\t4243\nPPid:\t1\nUid:\t1000\t0\t0\t0\n"
      "Gid:\t100\t101\t101\t101\nThreads:\t3\n");
  EXPECT_EQ(f.tgid, 4242);
  EXPECT_EQ(f.ppid, 1);
  EXPECT_EQ(f.threads, 3);
  EXPECT_EQ(f.uid, 1000u);
  EXPECT_EQ(f.euid, 0u);
  EXPECT_EQ(f.gid, 100u);
  auto empty = parseProcStatus("Name:\tx\nUid:\tabc\n");
  EXPECT_EQ(empty.tgid, -1);
  EXPECT_FALSE(empty.uid.has_value());
}

TEST(ProcParsers, NulListsTimesAndIds) {
  EXPECT_EQ(proc::splitNul(std::string_view("a\0b c\0", 6)), json({"a", "b c"}));
  EXPECT_EQ(proc::splitNul(""), json::array());
  EXPECT_EQ(proc::splitNul(std::string_view("x\0\xff", 3)), json({"x", "\xef\xbf\xbd"}));
  EXPECT_EQ(proc::parseBootTime("cpu 1 2\nbtime 1700000000\nprocesses 9\n"), 1700000000);
  EXPECT_FALSE(proc::parseBootTime("cpu 1 2\n").has_value());
  EXPECT_EQ(proc::parseUptimeMs("1234.56 99.00\n"), 1234560);
  EXPECT_EQ(proc::parseUptimeMs("7 1\n"), 7000);
  // Out of range for milliseconds in an int64_t (found by fuzz/proc_fuzz).
  EXPECT_FALSE(proc::parseUptimeMs("1111111111111110242 42\n").has_value());
  EXPECT_FALSE(proc::parseBootTime("btime 9223372036854776\n").has_value());
  EXPECT_EQ(proc::parseBootTime("btime 9223372036854775\n"), 9223372036854775);
  EXPECT_FALSE(proc::auditIdOrUnset("4294967295").has_value());
  EXPECT_EQ(proc::auditIdOrUnset("17\n"), 17u);
  EXPECT_FALSE(proc::ttyOrNone(0).has_value());
  EXPECT_EQ(proc::ttyOrNone((136 << 8) | 5), "pts/5");
  EXPECT_EQ(proc::ttyOrNone((4 << 8) | 1), "tty1");
}

TEST(ProcParsers, LinkFlags) {
  auto d = proc::linkFlags("/tmp/x (deleted)");
  EXPECT_TRUE(d.deleted);
  EXPECT_FALSE(d.memfd);
  auto m = proc::linkFlags("/memfd:evil (deleted)");
  EXPECT_TRUE(m.deleted);
  EXPECT_TRUE(m.memfd);
  auto n = proc::linkFlags("/usr/bin/sleep");
  EXPECT_FALSE(n.deleted || n.memfd);
}

TEST(ProcParsers, MapsLines) {
  auto m = proc::parseMapsLine(
      "7f00a000-7f00b000 r-xp 00001000 fd:01 1234                       /tmp/my lib.so (deleted)");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->start, "7f00a000");
  EXPECT_EQ(m->end, "7f00b000");
  EXPECT_EQ(m->perms, "r-xp");
  EXPECT_EQ(m->offset, "00001000");
  EXPECT_EQ(m->path, "/tmp/my lib.so (deleted)");
  EXPECT_TRUE(proc::interestingMapping(*m));
  auto anon = proc::parseMapsLine("7f00a000-7f00b000 rwxp 00000000 00:00 0 ");
  ASSERT_TRUE(anon.has_value());
  EXPECT_EQ(anon->path, "");
  EXPECT_TRUE(proc::interestingMapping(*anon));
  EXPECT_FALSE(proc::interestingMapping(
      *proc::parseMapsLine("7f00a000-7f00b000 rw-p 00000000 00:00 0                  [heap]")));
  EXPECT_FALSE(proc::interestingMapping(
      *proc::parseMapsLine("7ffd000-7ffe000 r-xp 00000000 00:00 0                  [vdso]")));
  EXPECT_FALSE(proc::interestingMapping(
      *proc::parseMapsLine("5600-5700 r-xp 00000000 fd:01 99 /usr/bin/sleep")));
  EXPECT_TRUE(proc::interestingMapping(
      *proc::parseMapsLine("5600-5700 r--s 00000000 00:01 99 /memfd:shm (deleted)")));
  EXPECT_FALSE(proc::parseMapsLine("garbage").has_value());
}

// A fake proc tree: <tmp>/proc/{stat,uptime,PID/...}, executables under <tmp>/bin.
class FixtureProc : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/collect_proc_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    proc_ = dir_ / "proc";
    fs::create_directories(proc_);
    fs::create_directories(dir_ / "bin");
    write(proc_ / "stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 99\n");
    write(proc_ / "uptime", "1234.56 99.00\n");
    fs::create_directories(proc_ / "self");
    fs::create_directories(proc_ / "12x");
    write(dir_ / "bin" / "x (deleted)", "implant bytes");
    ctx_.proc_root = proc_;
    ctx_.capture_id = "cap-1";
    ctx_.host_id = "h1";
    ctx_.hostname = "web-03";
    ctx_.agent_version = "0.1.0";
    ctx_.requested_by = "alice";
    ctx_.reason = "INC-42";
    ctx_.controller_time_unix_ms = 1700000100000;
    ctx_.received_at_unix_ms = 1700000100250;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void write(const fs::path& p, std::string_view bytes) {
    std::ofstream(p, std::ios::binary) << bytes;
  }
  static std::string statLine(int pid, const std::string& comm, int ppid, int tty_nr,
                              uint64_t start_ticks) {
    // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize ...
    return std::to_string(pid) + " (" + comm + ") S " + std::to_string(ppid) + " 1 1 " +
           std::to_string(tty_nr) + " -1 0 0 0 0 0 0 0 0 0 20 0 1 0 " +
           std::to_string(start_ticks) + " 1000 200\n";
  }
  // One process directory; `exe` is the link target ("" for none: a kernel thread).
  fs::path addProcess(int pid, const std::string& comm, const std::string& exe, int tty_nr = 0) {
    fs::path p = proc_ / std::to_string(pid);
    fs::create_directories(p);
    write(p / "stat", statLine(pid, comm, 1, tty_nr, 250));
    write(p / "status", "Name:\tx\nTgid:\t" + std::to_string(pid) +
                            "\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nThreads:\t2\n");
    write(p / "loginuid", "1000");
    write(p / "sessionid", "4294967295");
    if (!exe.empty()) {
      write(p / "cmdline", std::string_view("/bin/x\0-v\0", 10));
      write(p / "environ", std::string_view("A=1\0B=2\0", 8));
      fs::create_symlink(exe, p / "exe");
      fs::create_symlink("/tmp", p / "cwd");
      fs::create_symlink("/", p / "root");
    } else {
      write(p / "cmdline", "");
      write(p / "environ", "");
    }
    return p;
  }
  std::map<int, json> byPid(const MemorySink& sink) {
    std::map<int, json> out;
    for (const auto& r : sink.of("processes.jsonl")) out[r["pid"].get<int>()] = r;
    return out;
  }

  fs::path dir_;
  fs::path proc_;
  CollectContext ctx_;
};

TEST_F(FixtureProc, Metadata) {
  MemorySink sink;
  ASSERT_TRUE(makeMetadataCollector()->collect(ctx_, sink).ok());
  json m = json::parse(sink.files.at("metadata.json"));
  EXPECT_EQ(m["host_id"], "h1");
  EXPECT_EQ(m["reason"], "INC-42");
  EXPECT_EQ(m["requested_by"], "alice");
  EXPECT_EQ(m["boot_time_unix_ms"], 1700000000000);
  EXPECT_EQ(m["uptime_ms"], 1234560);
  EXPECT_EQ(m["clock_offset_ms"], 250);
  EXPECT_EQ(m["controller_time_unix_ms"], 1700000100000);
  EXPECT_TRUE(m["uname"]["sysname"] == "Linux") << m.dump();
  EXPECT_EQ(m["agent_version"], "0.1.0");
  std::string utc = m["collected_at_utc"];
  ASSERT_EQ(utc.size(), 24u) << utc;  // 2026-11-23T17:01:02.345Z
  EXPECT_EQ(utc.back(), 'Z');
  EXPECT_GT(m["collected_at_unix_ms"].get<int64_t>(), 1700000000000);
  EXPECT_TRUE(m["pid_namespace"].is_null());  // the fixture has no self/ns/pid

  ctx_.controller_time_unix_ms = 0;
  MemorySink again;
  ASSERT_TRUE(makeMetadataCollector()->collect(ctx_, again).ok());
  EXPECT_TRUE(json::parse(again.files.at("metadata.json"))["clock_offset_ms"].is_null());
}

TEST_F(FixtureProc, ProcessesParsedFlaggedAndRecovered) {
  const std::string deleted_exe = (dir_ / "bin" / "x (deleted)").string();
  addProcess(100, "a) b (c", deleted_exe, (136 << 8) | 1);
  addProcess(300, "twin", deleted_exe);
  addProcess(200, "evil", "/memfd:evil (deleted)");
  addProcess(400, "kworker/0:1", "");
  MemorySink sink;
  ASSERT_TRUE(makeProcessCollector()->collect(ctx_, sink).ok());
  auto procs = byPid(sink);
  ASSERT_EQ(procs.size(), 4u) << json(sink.of("processes.jsonl")).dump();
  EXPECT_TRUE(sink.of("hidden_pids.jsonl").empty()) << "not probed on a fixture";

  const json& a = procs[100];
  EXPECT_EQ(a["comm"], "a) b (c");
  EXPECT_EQ(a["ppid"], 1);
  EXPECT_EQ(a["state"], "S");
  EXPECT_EQ(a["cmdline"], json({"/bin/x", "-v"}));
  EXPECT_EQ(a["environ"], json({"A=1", "B=2"}));
  EXPECT_EQ(a["uid"], 0);
  EXPECT_EQ(a["user"], "root");
  EXPECT_EQ(a["loginuid"], 1000);
  EXPECT_TRUE(a["sessionid"].is_null());
  EXPECT_EQ(a["tty"], "pts/1");
  EXPECT_EQ(a["threads"], 2);
  const int64_t ticks = ::sysconf(_SC_CLK_TCK);
  EXPECT_EQ(a["start_time_unix_ms"], 1700000000000 + 250 * 1000 / ticks);
  EXPECT_EQ(a["exe"], deleted_exe);
  EXPECT_TRUE(a["exe_deleted"].get<bool>());
  EXPECT_FALSE(a["exe_memfd"].get<bool>());
  auto sha = sha256OfFile(deleted_exe);
  ASSERT_TRUE(sha.ok());
  EXPECT_EQ(a["exe_sha256"], *sha);
  EXPECT_EQ(a["exe_size"], 13);
  EXPECT_EQ(a["recovered"], "binaries/" + *sha);
  EXPECT_FALSE(a["recovered_truncated"].get<bool>());
  EXPECT_EQ(sink.files.at("binaries/" + *sha), "implant bytes");
  EXPECT_EQ(a["cwd"], "/tmp");
  EXPECT_EQ(a["root"], "/");

  // Same (dev, inode): same hash and recovery, one copy.
  EXPECT_EQ(procs[300]["exe_sha256"], *sha);
  EXPECT_EQ(procs[300]["recovered"], "binaries/" + *sha);
  EXPECT_EQ(sink.files.size(), 1u);

  const json& evil = procs[200];
  EXPECT_TRUE(evil["exe_memfd"].get<bool>());
  EXPECT_TRUE(evil["exe_deleted"].get<bool>());
  EXPECT_TRUE(evil["exe_sha256"].is_null());  // dangling in the fixture: nothing to read
  EXPECT_TRUE(evil["tty"].is_null());

  const json& k = procs[400];
  EXPECT_TRUE(k["exe"].is_null());
  EXPECT_FALSE(k["exe_deleted"].get<bool>());
  EXPECT_EQ(k["cmdline"], json::array());
}

TEST_F(FixtureProc, BytesThatAreNotUtf8StillSerialise) {
  fs::path p = addProcess(100, "evil\xff\xfe", "/tmp/\xc3(bin");
  write(p / "cmdline", std::string_view("\x80\0ok\0", 5));
  MemorySink sink;
  ASSERT_TRUE(makeProcessCollector()->collect(ctx_, sink).ok());
  auto procs = byPid(sink);
  ASSERT_EQ(procs.size(), 1u);
  EXPECT_NO_THROW(procs[100].dump());
  EXPECT_EQ(procs[100]["comm"], "evil\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(procs[100]["cmdline"][1], "ok");
}

TEST_F(FixtureProc, RecoveryCapped) {
  const std::string deleted_exe = (dir_ / "bin" / "x (deleted)").string();
  addProcess(100, "x", deleted_exe);
  ctx_.max_binary_bytes = 4;
  MemorySink sink;
  ASSERT_TRUE(makeProcessCollector()->collect(ctx_, sink).ok());
  auto procs = byPid(sink);
  EXPECT_TRUE(procs[100]["recovered_truncated"].get<bool>());
  EXPECT_EQ(sink.files.at(procs[100]["recovered"].get<std::string>()), "impl");
}

TEST_F(FixtureProc, VanishedPidIsSkipped) {
  addProcess(100, "x", "/usr/bin/x");
  fs::create_directories(proc_ / "555");  // exited: nothing left to read
  MemorySink sink;
  ASSERT_TRUE(makeProcessCollector()->collect(ctx_, sink).ok());
  EXPECT_EQ(byPid(sink).size(), 1u);
}

TEST_F(FixtureProc, StopsWhenTheSinkIsStopped) {
  addProcess(100, "x", "/usr/bin/x");
  MemorySink sink;
  sink.stop = true;
  EXPECT_TRUE(makeProcessCollector()->collect(ctx_, sink).ok());
  EXPECT_TRUE(sink.of("processes.jsonl").empty());
}

TEST_F(FixtureProc, OpenFilesAndMaps) {
  fs::path p = addProcess(100, "x", "/usr/bin/x");
  fs::create_directories(p / "fd");
  fs::create_symlink("/dev/null", p / "fd" / "0");
  fs::create_symlink("/tmp/gone (deleted)", p / "fd" / "3");
  fs::create_symlink("socket:[123]", p / "fd" / "4");
  write(p / "maps",
        "5600-5700 r-xp 00000000 fd:01 99 /usr/bin/x\n"
        "7f00-7f10 r-xp 00000000 fd:01 77 /tmp/lib.so (deleted)\n"
        "7f10-7f20 rwxp 00000000 00:00 0 \n"
        "7f20-7f30 r-xp 00000000 00:01 5 /memfd:stage2 (deleted)\n"
        "7ffd-7ffe r-xp 00000000 00:00 0 [vdso]\n");
  MemorySink sink;
  ASSERT_TRUE(makeOpenFilesCollector()->collect(ctx_, sink).ok());
  std::map<int, json> fds;
  for (const auto& r : sink.of("open_files.jsonl")) fds[r["fd"].get<int>()] = r;
  ASSERT_EQ(fds.size(), 3u);
  EXPECT_EQ(fds[0]["target"], "/dev/null");
  EXPECT_FALSE(fds[0]["deleted"].get<bool>());
  EXPECT_TRUE(fds[3]["deleted"].get<bool>());
  EXPECT_EQ(fds[4]["target"], "socket:[123]");
  EXPECT_EQ(fds[4]["pid"], 100);
  auto maps = sink.of("memory_maps.jsonl");
  ASSERT_EQ(maps.size(), 3u) << json(maps).dump();
  EXPECT_EQ(maps[0]["path"], "/tmp/lib.so (deleted)");
  EXPECT_EQ(maps[0]["start"], "7f00");
  EXPECT_EQ(maps[0]["end"], "7f10");
  EXPECT_TRUE(maps[0]["deleted"].get<bool>());
  EXPECT_TRUE(maps[1]["path"].is_null());
  EXPECT_EQ(maps[1]["perms"], "rwxp");
  EXPECT_TRUE(maps[2]["memfd"].get<bool>());
}

// ---- the shared fd walk (fd_table.h) ----------------------------------------------------

// A real socket's link text: the sockets collector dumps the real network namespace, the
// fixture's fd links name it.
class SharedFdWalk : public FixtureProc {
 protected:
  void SetUp() override {
    FixtureProc::SetUp();
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair_), 0);
    struct stat st {};
    ASSERT_EQ(::fstat(pair_[0], &st), 0);
    inode_ = st.st_ino;
    link_ = "socket:[" + std::to_string(inode_) + "]";
  }
  void TearDown() override {
    ::close(pair_[0]);
    ::close(pair_[1]);
    FixtureProc::TearDown();
  }
  // Process `pid` with fd links {fd: target} and a comm file.
  void addHolder(int pid, const std::string& comm, const std::map<int, std::string>& fds) {
    fs::path p = addProcess(pid, comm, "/usr/bin/" + comm);
    fs::create_directories(p / "fd");
    for (const auto& [fd, target] : fds) fs::create_symlink(target, p / "fd" / std::to_string(fd));
    write(p / "comm", comm + "\n");
  }
  json socketRecord(const MemorySink& sink) const {
    for (const auto& r : sink.of("sockets.jsonl")) {
      if (r["inode"] == inode_) return r;
    }
    return nullptr;
  }

  int pair_[2] = {-1, -1};
  uint64_t inode_ = 0;
  std::string link_;
};

TEST_F(SharedFdWalk, WalkReadsEveryFdAndTheCommOfSocketHolders) {
  addHolder(100, "holder", {{0, "/dev/null"}, {5, link_}});
  addHolder(300, "plain", {{1, "/etc/passwd"}});
  addProcess(2, "kthreadd", "");  // no fd directory: left out
  proc::FdWalk walk = proc::walkOpenFds(proc_, std::chrono::seconds(5), [] { return false; });
  EXPECT_EQ(walk.end, proc::FdWalk::End::kComplete);
  std::map<int, proc::ProcessFds> by_pid;
  for (auto& p : walk.processes) by_pid[p.pid] = p;
  ASSERT_EQ(by_pid.size(), 2u);
  EXPECT_EQ(by_pid[100].comm, "holder");
  ASSERT_EQ(by_pid[100].fds.size(), 2u);
  std::map<int, std::string> fds;
  for (const auto& f : by_pid[100].fds) fds[f.fd] = f.target;
  EXPECT_EQ(fds, (std::map<int, std::string>{{0, "/dev/null"}, {5, link_}}));
  EXPECT_FALSE(by_pid[300].comm.has_value());  // holds no socket: comm not read
  EXPECT_EQ(by_pid[300].fds.size(), 1u);

  auto missing = proc::walkOpenFds(dir_ / "nope", std::chrono::seconds(5), [] { return false; });
  EXPECT_EQ(missing.end, proc::FdWalk::End::kNoProc);
  EXPECT_NE(missing.error.find("cannot open"), std::string::npos) << missing.error;
}

TEST_F(SharedFdWalk, OpenFilesAndSocketOwnersComeFromOneWalk) {
  addHolder(100, "holder", {{0, "/dev/null"}, {5, link_}, {6, "/tmp/gone (deleted)"}});
  addHolder(200, "child", {{7, link_}});  // inherited
  addHolder(300, "plain", {{1, "/etc/passwd"}});
  ctx_.fd_table = std::make_shared<FdTable>();
  MemorySink files;
  MemorySink sockets;
  // Concurrently, as the engine runs them: whichever asks first walks, the other waits.
  absl::Status files_status;
  std::thread t([&] { files_status = makeOpenFilesCollector()->collect(ctx_, files); });
  absl::Status sockets_status = makeSocketCollector()->collect(ctx_, sockets);
  t.join();
  ASSERT_TRUE(files_status.ok()) << files_status;
  ASSERT_TRUE(sockets_status.ok()) << sockets_status;
  EXPECT_EQ(ctx_.fd_table->walks(), 1);

  std::map<std::pair<int, int>, json> opened;
  for (const auto& r : files.of("open_files.jsonl")) {
    opened[{r["pid"].get<int>(), r["fd"].get<int>()}] = r;
  }
  ASSERT_EQ(opened.size(), 5u) << json(files.of("open_files.jsonl")).dump();
  auto at = [&](int pid, int fd) { return opened[std::make_pair(pid, fd)]; };
  EXPECT_EQ(at(100, 5)["target"], link_);
  EXPECT_FALSE(at(100, 5)["deleted"].get<bool>());
  EXPECT_TRUE(at(100, 6)["deleted"].get<bool>());
  EXPECT_EQ(at(200, 7)["target"], link_);
  EXPECT_EQ(at(300, 1)["target"], "/etc/passwd");
  EXPECT_TRUE(files.warnings.empty()) << files.warnings.front();

  json r = socketRecord(sockets);
  ASSERT_TRUE(r.is_object()) << "the socketpair is not in sockets.jsonl";
  EXPECT_EQ(r["pids"], json({100, 200}));
  EXPECT_EQ(r["comms"], json({"holder", "child"}));
  for (const auto& w : sockets.warnings) EXPECT_EQ(w.find("owners"), std::string::npos) << w;

  // A capture's table walks once however often it is asked: an fd opened since is not seen.
  fs::create_symlink(link_, proc_ / "300" / "fd" / "9");
  MemorySink files_again;
  MemorySink sockets_again;
  ASSERT_TRUE(makeOpenFilesCollector()->collect(ctx_, files_again).ok());
  ASSERT_TRUE(makeSocketCollector()->collect(ctx_, sockets_again).ok());
  EXPECT_EQ(files_again.of("open_files.jsonl").size(), 5u);
  EXPECT_EQ(socketRecord(sockets_again)["pids"], json({100, 200}));
  EXPECT_EQ(ctx_.fd_table->walks(), 1);
}

TEST_F(SharedFdWalk, AWalkPastItsBudgetIsReportedByBothCollectors) {
  addHolder(100, "holder", {{5, link_}});
  ctx_.fd_table = std::make_shared<FdTable>(std::chrono::milliseconds(-1));  // already past
  MemorySink files;
  MemorySink sockets;
  ASSERT_TRUE(makeOpenFilesCollector()->collect(ctx_, files).ok());
  ASSERT_TRUE(makeSocketCollector()->collect(ctx_, sockets).ok());
  EXPECT_EQ(ctx_.fd_table->walks(), 1);
  EXPECT_TRUE(files.of("open_files.jsonl").empty());
  ASSERT_EQ(files.warnings.size(), 1u);
  EXPECT_EQ(files.warnings[0].rfind("open files incomplete: the /proc fd scan passed its", 0), 0u)
      << files.warnings[0];
  bool warned = false;
  for (const auto& w : sockets.warnings) {
    warned |= w.rfind("socket owners incomplete: the /proc fd scan passed its", 0) == 0;
  }
  EXPECT_TRUE(warned);
  json r = socketRecord(sockets);
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["pids"], json::array());  // written all the same, without owners
}

TEST_F(SharedFdWalk, AWalkCutByItsCollectorIsReportedByTheOther) {
  addHolder(100, "holder", {{5, link_}});
  ctx_.fd_table = std::make_shared<FdTable>();
  MemorySink stopped;
  stopped.stop = true;
  ASSERT_TRUE(makeOpenFilesCollector()->collect(ctx_, stopped).ok());
  EXPECT_TRUE(stopped.warnings.empty());  // its own stop: the engine reports it
  MemorySink sockets;
  ASSERT_TRUE(makeSocketCollector()->collect(ctx_, sockets).ok());
  EXPECT_EQ(ctx_.fd_table->walks(), 1);
  bool warned = false;
  for (const auto& w : sockets.warnings) {
    warned |= w.rfind("socket owners incomplete: the /proc fd scan was cut", 0) == 0;
  }
  EXPECT_TRUE(warned);
}

// A sink whose stopped() holds its caller until `release`: keeps a walk going on its thread.
class HoldingSink final : public ArtifactSink {
 public:
  bool record(std::string_view, const json&) override { return true; }
  bool file(std::string_view, std::string_view) override { return true; }
  absl::StatusOr<Copied> copy(std::string_view, int, uint64_t) override { return Copied{}; }
  bool has(std::string_view) const override { return false; }
  void warn(std::string_view) override {}
  bool stopped() const override {
    held = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return false;
  }
  mutable std::atomic<bool> held{false};
  std::atomic<bool> release{false};
};

TEST_F(SharedFdWalk, AWaiterWhoseSinkStopsLeavesWithoutTheWalk) {
  addHolder(100, "holder", {{5, link_}});
  auto table = std::make_shared<FdTable>();
  ctx_.fd_table = table;
  HoldingSink walker;
  std::shared_ptr<const proc::FdWalk> walked;
  std::thread t([&] { walked = table->get(ctx_, walker); });
  while (!walker.held) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  MemorySink waiter;
  waiter.stop = true;
  EXPECT_EQ(table->get(ctx_, waiter), nullptr);  // returns while the walk is still going
  walker.release = true;
  t.join();
  ASSERT_NE(walked, nullptr);
  EXPECT_EQ(walked->end, proc::FdWalk::End::kComplete);
  EXPECT_EQ(walked->processes.size(), 1u);
  MemorySink late;
  EXPECT_EQ(table->get(ctx_, late), walked);  // the same walk for everyone after
  EXPECT_EQ(table->walks(), 1);
}

// ---- the real /proc ------------------------------------------------------------------------

TEST(RealProc, FindsItselfWithTheRightHash) {
  // A second thread: its tid answers kill() but is never listed; it must not be "hidden".
  std::atomic<bool> quit{false};
  std::atomic<int> tid{0};
  std::thread t([&] {
    tid = static_cast<int>(::gettid());
    while (!quit) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  });
  while (tid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CollectContext ctx;
  MemorySink sink;
  auto t0 = std::chrono::steady_clock::now();
  absl::Status s = makeProcessCollector()->collect(ctx, sink);
  auto took = std::chrono::steady_clock::now() - t0;
  quit = true;
  t.join();
  ASSERT_TRUE(s.ok()) << s;
  std::printf(
      "processes collector on /proc: %zu processes, %lld ms\n", sink.of("processes.jsonl").size(),
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  json self;
  for (const auto& r : sink.of("processes.jsonl")) {
    if (r["pid"] == ::getpid()) self = r;
  }
  ASSERT_TRUE(self.is_object());
  auto sha = sha256OfFile("/proc/self/exe");
  ASSERT_TRUE(sha.ok());
  EXPECT_EQ(self["exe_sha256"], *sha);
  EXPECT_FALSE(self["exe_deleted"].get<bool>());
  EXPECT_TRUE(self["recovered"].is_null());
  // This test's two threads, and the collector's hidden pid probe while it runs.
  EXPECT_THAT(self["threads"].get<int>(), ::testing::AnyOf(2, 3));
  EXPECT_EQ(self["uid"], ::getuid());
  for (const auto& h : sink.of("hidden_pids.jsonl")) {
    EXPECT_NE(h["pid"], tid.load()) << "a thread reported as a hidden process";
  }
}

TEST(RealProc, APidFileLongerThanOneReadIsReadWholeAndUpToItsCap) {
  // A child of this test whose environment (40,000 bytes in /proc/PID/environ) takes
  // readPidFileAt more than one read() of its 16 KiB buffer, then ends in a short one.
  std::string big = "BIG=" + std::string(40000 - 5, 'x');  // 40,000 bytes with its NUL
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char* env[] = {big.data(), nullptr};
    ::execle("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr), env);
    ::_exit(127);
  }
  std::string pid = std::to_string(child);
  std::string environ;
  std::string capped;
  std::string checked;
  bool read = false;
  bool read_capped = false;
  for (int i = 0; i < 200 && environ.size() != 40000; ++i) {  // until it has exec'd
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    proc::ScopedFd dir = proc::openDir(AT_FDCWD, ("/proc/" + pid).c_str());
    ASSERT_TRUE(dir.ok());
    ASSERT_TRUE(proc::onProcfs(dir.get()));
    read = proc::readPidFileAt(dir.get(), "environ", 1 << 20, &environ);
    read_capped = proc::readPidFileAt(dir.get(), "environ", 20000, &capped);
    proc::readFileAt(dir.get(), "environ", 1 << 20, &checked);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(read);
  EXPECT_EQ(environ, big + '\0');
  EXPECT_EQ(environ, checked) << "the lean read and the checked one differ";
  EXPECT_TRUE(read_capped);
  EXPECT_EQ(capped, big.substr(0, 20000));
  proc::ScopedFd tmp = proc::openDir(AT_FDCWD, "/tmp");
  EXPECT_FALSE(proc::onProcfs(tmp.get()));
}

TEST(RealProc, AnExitedProcessAnswersNoCommThroughTheFdDirectoryOpenedBeforeItExited) {
  // walkOpenFds reads a socket holder's comm as <pid>/fd/../comm: the ".." must be the process
  // that was opened, not whatever holds the pid later. A child of this test, reaped with its
  // fd directory still open here: the read that worked before fails after.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string comm;
  bool alive_read = false;
  proc::ScopedFd fds;
  for (int i = 0; i < 200 && comm != "sleep\n"; ++i) {  // until it has exec'd
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    fds = proc::openDir(AT_FDCWD, ("/proc/" + std::to_string(child) + "/fd").c_str());
    ASSERT_TRUE(fds.ok());
    alive_read = proc::readFileAt(fds.get(), "../comm", 64, &comm);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(alive_read);
  EXPECT_EQ(comm, "sleep\n");
  EXPECT_FALSE(proc::readFileAt(fds.get(), "../comm", 64, &comm)) << "read after exit: " << comm;
}

TEST(RealProc, StoppedProcessesRecordsAChildInFullWithItsBinary) {
  // A child of this test (never another process of the machine), stopped as a capture-first
  // kill would hold it, with a pipe open; and a pid that does not exist.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // exec'd
  ASSERT_EQ(::kill(child, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CollectContext ctx;
  ctx.target_pids = {child, 999999999};
  MemorySink sink;
  absl::Status s = makeStoppedProcessCollector()->collect(ctx, sink);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(fds[0]);
  ASSERT_TRUE(s.ok()) << s;
  auto recs = sink.of("stopped_processes.jsonl");
  ASSERT_EQ(recs.size(), 2u);
  const json& r = recs[0];
  EXPECT_EQ(r["pid"], child);
  EXPECT_EQ(r["state"], "T");
  EXPECT_EQ(r["cmdline"], json::array({"sleep", "1000"}));
  EXPECT_TRUE(r["environ"].is_array());
  EXPECT_GT(r["maps"].size(), 3u);
  bool stack = false;
  for (const auto& line : r["maps"])
    stack |= line.get<std::string>().find("[stack]") != std::string::npos;
  EXPECT_TRUE(stack) << r["maps"].dump();
  ASSERT_TRUE(r["fds"].is_array());
  EXPECT_GE(r["fds"].size(), 3u);  // stdin, stdout, stderr at least
  EXPECT_TRUE(r["fds"][0].contains("pos")) << r["fds"][0].dump();
  bool state_line = false;
  for (const auto& line : r["status"])
    state_line |= line.get<std::string>().rfind("State:\tT", 0) == 0;
  EXPECT_TRUE(state_line);
  auto sha = sha256OfFile("/bin/sleep");
  ASSERT_TRUE(sha.ok());
  EXPECT_EQ(r["exe_sha256"], *sha);
  EXPECT_EQ(r["binary"], "binaries/" + *sha);
  EXPECT_EQ(sink.files.count("binaries/" + *sha), 1u);
  EXPECT_EQ(recs[1]["pid"], 999999999);
  EXPECT_TRUE(recs[1].contains("error"));
}

TEST(RealProc, MetadataNamesThePidNamespace) {
  CollectContext ctx;
  MemorySink sink;
  ASSERT_TRUE(makeMetadataCollector()->collect(ctx, sink).ok());
  json m = json::parse(sink.files.at("metadata.json"));
  EXPECT_EQ(m["pid_namespace"].get<std::string>().rfind("pid:[", 0), 0u) << m.dump();
  EXPECT_GT(m["boot_time_unix_ms"].get<int64_t>(), 0);
  EXPECT_LE(m["boot_time_unix_ms"].get<int64_t>(), m["collected_at_unix_ms"].get<int64_t>());
}

TEST(RealProc, TimesEveryCollector) {
  CollectContext ctx;
  for (auto make :
       {makeMetadataCollector, makeProcessCollector, makeOpenFilesCollector, makeSocketCollector}) {
    auto c = make();
    MemorySink sink;
    auto t0 = std::chrono::steady_clock::now();
    absl::Status s = c->collect(ctx, sink);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    size_t records = 0;
    for (const auto& [name, rs] : sink.records) {
      records += rs.size();
      for (const auto& r : rs) EXPECT_NO_THROW(r.dump()) << name;  // valid UTF-8 throughout
    }
    std::printf("%-10s %5lld ms  %6zu records  %zu warnings  %s\n", std::string(c->name()).c_str(),
                static_cast<long long>(ms), records, sink.warnings.size(),
                s.ok() ? "ok" : std::string(s.message()).c_str());
    for (size_t i = 0; i < sink.warnings.size() && i < 3; ++i) {
      std::printf("  warning: %s\n", sink.warnings[i].c_str());
    }
    EXPECT_TRUE(s.ok()) << c->name() << ": " << s;
  }
}

}  // namespace
}  // namespace bulkhead::agent::collect
