// The /proc collectors against the real kernel, inside this process's private network
// namespace: a planted implant (a copied binary started, then deleted), a memfd executable,
// one socket of each kind, and the benchmark load of the issue (1,000 extra processes, 5,000
// sockets). Every child started here is killed and reaped by its pid.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netpacket/packet.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/collect/collectors.h"
#include "agent/linux/proc_scan.h"
#include "tests/kernel/loopback_conns.h"
#include "tests/kernel/private_netns.h"
#include "tests/unit/agent/memory_sink.h"

namespace bulkhead::agent::collect {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::Fd;
using testing::MemorySink;

extern "C" char** environ;

std::string fileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string linkOf(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Children started by a test: SIGKILLed and reaped when it ends, whatever happened.
class Children {
 public:
  ~Children() { killAll(); }
  void add(pid_t pid) { pids_.push_back(pid); }
  const std::vector<pid_t>& pids() const { return pids_; }
  void killAll() {
    for (pid_t p : pids_) ::kill(p, SIGKILL);
    for (pid_t p : pids_) {
      while (::waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    pids_.clear();
  }
  // Spawns `path` with `args` (argv[0] included); -1 on failure.
  pid_t spawn(const std::string& path, std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    if (::posix_spawn(&pid, path.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return -1;
    add(pid);
    return pid;
  }

 private:
  std::vector<pid_t> pids_;
};

// Waits until /proc/PID/exe satisfies `ok` (the exec happened), up to 5 s.
template <typename F>
bool waitExe(pid_t pid, F ok) {
  for (int i = 0; i < 500; ++i) {
    if (ok(linkOf(fmt::format("/proc/{}/exe", pid)))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

json processOf(const MemorySink& sink, pid_t pid) {
  for (const auto& r : sink.of("processes.jsonl")) {
    if (r["pid"] == pid) return r;
  }
  return nullptr;
}

class CollectProcKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BULKHEAD_REQUIRE_PRIVATE_NETNS();
    char tmpl[] = "/tmp/collect_proc_kernel.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto sha = sha256OfFile("/bin/sleep");
    ASSERT_TRUE(sha.ok()) << sha.status();
    sleep_sha_ = *sha;
    sleep_bytes_ = fileBytes("/bin/sleep");
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  fs::path dir_;
  std::string sleep_sha_;
  std::string sleep_bytes_;
};

TEST_F(CollectProcKernelTest, DeletedImplantIsFlaggedAndRecovered) {
  const fs::path implant = dir_ / "implant";
  fs::copy_file("/bin/sleep", implant);
  fs::permissions(implant, fs::perms::owner_all);
  Children kids;
  pid_t pid = kids.spawn(implant.string(), {"implant", "60"});
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(waitExe(pid, [&](const std::string& l) { return l == implant.string(); }));
  fs::remove(implant);
  ASSERT_TRUE(waitExe(pid, [](const std::string& l) { return l.ends_with(" (deleted)"); }));

  MemorySink sink;
  CollectContext ctx;
  ASSERT_TRUE(makeProcessCollector()->collect(ctx, sink).ok());
  json p = processOf(sink, pid);
  ASSERT_TRUE(p.is_object()) << "implant pid " << pid << " not in processes.jsonl";
  EXPECT_EQ(p["exe"], implant.string() + " (deleted)");
  EXPECT_TRUE(p["exe_deleted"].get<bool>());
  EXPECT_FALSE(p["exe_memfd"].get<bool>());
  EXPECT_EQ(p["exe_sha256"], sleep_sha_);
  EXPECT_EQ(p["recovered"], "binaries/" + sleep_sha_);
  EXPECT_FALSE(p["recovered_truncated"].get<bool>());
  EXPECT_EQ(p["cmdline"], json({"implant", "60"}));
  ASSERT_TRUE(sink.files.count("binaries/" + sleep_sha_));
  EXPECT_TRUE(sink.files.at("binaries/" + sleep_sha_) == sleep_bytes_)
      << "recovered bytes differ from /bin/sleep";
}

TEST_F(CollectProcKernelTest, MemfdExecutableIsFlaggedAndRecovered) {
  int mfd = ::memfd_create("stage2", 0);
  ASSERT_GE(mfd, 0);
  Fd memfd(mfd);
  ASSERT_EQ(::write(mfd, sleep_bytes_.data(), sleep_bytes_.size()),
            static_cast<ssize_t>(sleep_bytes_.size()));
  Children kids;
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char arg0[] = "stage2";
    char arg1[] = "60";
    char* argv[] = {arg0, arg1, nullptr};
    ::fexecve(mfd, argv, environ);
    ::_exit(127);
  }
  kids.add(pid);
  ASSERT_TRUE(waitExe(pid, [](const std::string& l) { return l.starts_with("/memfd:stage2"); }));

  MemorySink sink;
  CollectContext ctx;
  ASSERT_TRUE(makeProcessCollector()->collect(ctx, sink).ok());
  json p = processOf(sink, pid);
  ASSERT_TRUE(p.is_object());
  EXPECT_TRUE(p["exe_memfd"].get<bool>()) << p.dump();
  EXPECT_EQ(p["exe_sha256"], sleep_sha_);
  EXPECT_EQ(p["recovered"], "binaries/" + sleep_sha_);
  EXPECT_TRUE(sink.files.at("binaries/" + sleep_sha_) == sleep_bytes_);

  // open_files and memory_maps see the memfd mapping of the child.
  MemorySink files;
  ASSERT_TRUE(makeOpenFilesCollector()->collect(ctx, files).ok());
  bool mapped = false;
  for (const auto& m : files.of("memory_maps.jsonl")) {
    if (m["pid"] == pid && m["memfd"].get<bool>() && m["perms"].get<std::string>()[2] == 'x') {
      mapped = true;
    }
  }
  EXPECT_TRUE(mapped) << "no executable memfd mapping of pid " << pid;
}

// CPU time of the calling thread (user + system), in ms: the collectors' own cost, whatever
// else the shared machine runs.
double threadCpuMs() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

uint64_t inodeOf(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

TEST_F(CollectProcKernelTest, SocketsWithOwners) {
  Fd l4 = test::listenLoopback(AF_INET);
  Fd l6 = test::listenLoopback(AF_INET6);
  ASSERT_GE(l4.get(), 0);
  ASSERT_GE(l6.get(), 0);
  std::string err;
  auto conns = test::connectMany(AF_INET, l4, 1, &err);
  ASSERT_EQ(conns.size(), 1u) << err;
  Fd udp(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = test::makeAddr(AF_INET6, 0, &ss);
  ASSERT_EQ(::bind(udp.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  Fd u0(pair[0]), u1(pair[1]);
  Fd ulisten(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  const std::string upath = (dir_ / "ctl.sock").string();
  std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", upath.c_str());
  ASSERT_EQ(::bind(ulisten.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  ASSERT_EQ(::listen(ulisten.get(), 4), 0);
  Fd pkt(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  ASSERT_GE(pkt.get(), 0) << std::strerror(errno);
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(::if_nametoindex("lo"));
  ASSERT_EQ(::bind(pkt.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll), 0);

  MemorySink sink;
  CollectContext ctx;
  ASSERT_TRUE(makeSocketCollector()->collect(ctx, sink).ok());
  std::map<uint64_t, json> by_inode;
  for (const auto& r : sink.of("sockets.jsonl")) by_inode[r["inode"].get<uint64_t>()] = r;
  auto expectOwned = [&](int fd, const char* what) -> json {
    auto it = by_inode.find(inodeOf(fd));
    if (it == by_inode.end()) {
      ADD_FAILURE() << what << " not in sockets.jsonl";
      return json::object();
    }
    const json& r = it->second;
    EXPECT_NE(std::find(r["pids"].begin(), r["pids"].end(), json(::getpid())), r["pids"].end())
        << what << ": " << r.dump();
    EXPECT_EQ(r["pids"].size(), r["comms"].size());
    return r;
  };
  json r = expectOwned(l4.get(), "tcp listener v4");
  EXPECT_EQ(r["family"], "inet");
  EXPECT_EQ(r["protocol"], "tcp");
  EXPECT_EQ(r["state"], "listen");
  EXPECT_EQ(r["local_address"], "127.0.0.1");
  EXPECT_EQ(r["local_port"], test::localPort(l4.get()));
  r = expectOwned(l6.get(), "tcp listener v6");
  EXPECT_EQ(r["family"], "inet6");
  EXPECT_EQ(r["state"], "listen");
  EXPECT_EQ(r["local_address"], "::1");
  EXPECT_EQ(r["local_port"], test::localPort(l6.get()));
  r = expectOwned(conns[0].client.get(), "tcp client");
  EXPECT_EQ(r["state"], "established");
  EXPECT_EQ(r["local_port"], conns[0].client_port);
  EXPECT_EQ(r["remote_address"], "127.0.0.1");
  EXPECT_EQ(r["remote_port"], test::localPort(l4.get()));
  r = expectOwned(conns[0].server.get(), "tcp server side");
  EXPECT_EQ(r["state"], "established");
  EXPECT_EQ(r["remote_port"], conns[0].client_port);
  r = expectOwned(udp.get(), "udp");
  EXPECT_EQ(r["protocol"], "udp");
  EXPECT_EQ(r["family"], "inet6");
  EXPECT_EQ(r["state"], "unconnected");
  EXPECT_EQ(r["local_port"], test::localPort(udp.get()));
  r = expectOwned(u0.get(), "unix pair");
  EXPECT_EQ(r["family"], "unix");
  EXPECT_EQ(r["protocol"], "stream");
  EXPECT_EQ(r["state"], "established");
  EXPECT_EQ(r["peer_inode"], inodeOf(u1.get()));
  r = expectOwned(ulisten.get(), "unix listener");
  EXPECT_EQ(r["protocol"], "seqpacket");
  EXPECT_EQ(r["state"], "listen");
  EXPECT_EQ(r["path"], upath);
  r = expectOwned(pkt.get(), "packet");
  EXPECT_EQ(r["family"], "packet");
  EXPECT_EQ(r["protocol"], "packet");
  EXPECT_EQ(r["packet_protocol"], ETH_P_ALL);
  EXPECT_EQ(r["ifindex"], static_cast<int>(::if_nametoindex("lo")));
}

// The capture benchmark's load: 1,000 extra processes and 5,000 sockets (2,500 loopback TCP
// connections, both ends held here). Prints each collector's time; the target is <= 2 s for
// the whole capture, asserted loosely here (shared CI machines), reported exactly.
TEST_F(CollectProcKernelTest, BenchmarkThousandProcessesFiveThousandSockets) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 16384);
  ::setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 6000) GTEST_SKIP() << "RLIMIT_NOFILE too small: " << rl.rlim_cur;
  Children kids;
  for (int i = 0; i < 1000; ++i) ASSERT_GT(kids.spawn("/bin/sleep", {"sleep", "120"}), 0);
  Fd listener = test::listenLoopback(AF_INET);
  std::string err;
  auto conns = test::connectMany(AF_INET, listener, 2500, &err);
  ASSERT_EQ(conns.size(), 2500u) << err;

  CollectContext ctx;
  double total = 0, total_cpu = 0;
  size_t socket_records = 0, process_records = 0;
  for (auto make :
       {makeMetadataCollector, makeProcessCollector, makeOpenFilesCollector, makeSocketCollector}) {
    auto c = make();
    MemorySink sink;
    auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = threadCpuMs();
    absl::Status s = c->collect(ctx, sink);
    const double cpu = threadCpuMs() - cpu0;
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    total += ms;
    total_cpu += cpu;
    EXPECT_TRUE(s.ok()) << c->name() << ": " << s;
    size_t records = 0;
    for (const auto& [name, rs] : sink.records) records += rs.size();
    if (c->name() == "sockets") socket_records = records;
    if (c->name() == "processes") {
      process_records = sink.of("processes.jsonl").size();
      std::set<int> kid_pids(kids.pids().begin(), kids.pids().end());
      size_t kids_seen = 0;
      for (const auto& r : sink.of("processes.jsonl")) {
        if (!kid_pids.count(r["pid"].get<int>())) continue;
        ++kids_seen;
        EXPECT_EQ(r["exe_sha256"], sleep_sha_);
      }
      EXPECT_EQ(kids_seen, kid_pids.size());
      for (const auto& h : sink.of("hidden_pids.jsonl")) {
        EXPECT_FALSE(kid_pids.count(h["pid"].get<int>())) << "listed child reported hidden";
      }
    }
    std::printf("bench %-10s %8.1f ms (cpu %7.1f ms) %7zu records %zu warnings\n",
                std::string(c->name()).c_str(), ms, cpu, records, sink.warnings.size());
  }
  std::printf("bench total      %8.1f ms (cpu %7.1f ms) (%zu processes, %zu sockets)\n", total,
              total_cpu, process_records, socket_records);
  EXPECT_GE(process_records, 1000u);
  EXPECT_GE(socket_records, 5000u);
  EXPECT_LT(total, 20000) << "far over the 2 s target";
}

}  // namespace
}  // namespace bulkhead::agent::collect
