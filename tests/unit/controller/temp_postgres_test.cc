// TempPostgres (temp_postgres.h): a real PostgreSQL 15 server in a temporary directory, its data
// across a restart and a crash, its cleanup. Root (label root): CTest runs this binary in fresh
// network, pid and mount namespaces (tests/unit/controller/CMakeLists.txt).
#include "tests/unit/controller/temp_postgres.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>

namespace bulkhead::controller::testing {
namespace {

namespace fs = std::filesystem;

using Conn = std::unique_ptr<PGconn, decltype(&PQfinish)>;

Conn connect(const std::string& conninfo) { return {PQconnectdb(conninfo.c_str()), &PQfinish}; }

// Runs `sql`; the first column of the first row, or "" for a command; an "ERROR: ..." text on
// failure.
std::string query(PGconn* conn, const std::string& sql) {
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn, sql.c_str()), &PQclear);
  auto status = PQresultStatus(res.get());
  if (status == PGRES_TUPLES_OK) return PQntuples(res.get()) > 0 ? PQgetvalue(res.get(), 0, 0) : "";
  if (status == PGRES_COMMAND_OK) return "";
  return std::string("ERROR: ") + PQerrorMessage(conn);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether the process runs: it exists and is not a zombie (in the test's pid namespace the
// test is pid 1, and the server processes left by a crash become its zombies).
bool running(pid_t pid) {
  std::string stat = readFile(fmt::format("/proc/{}/stat", pid));
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z' &&
         stat[close + 2] != 'X';
}

// The socket inodes of a process's open descriptors.
std::set<std::string> socketInodes(pid_t pid) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& fd : fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
    std::string target = fs::read_symlink(fd.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) out.insert(target.substr(8, target.size() - 9));
  }
  return out;
}

// The inodes of every TCP socket of the process's network namespace (/proc/PID/net/tcp{,6}).
std::set<std::string> tcpInodes(pid_t pid) {
  std::set<std::string> out;
  for (const char* table : {"tcp", "tcp6"}) {
    std::ifstream in(fmt::format("/proc/{}/net/{}", pid, table));
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string field;
      for (int i = 0; i < 10 && fields >> field; ++i) {
      }
      if (fields) out.insert(field);  // the 10th field: inode
    }
  }
  return out;
}

TEST(TempPostgresTest, KeepsCommittedRowsAcrossRestartAndCrashAndLeavesNothingBehind) {
  auto started_at = std::chrono::steady_clock::now();
  auto pg = TempPostgres::start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started_at);
  std::cout << "start() took " << ms.count() << " ms\n";
  TempPostgres& server = **pg;
  const std::string dir = server.dir();
  ASSERT_GT(server.pid(), 0);
  EXPECT_EQ(dir.rfind("/tmp/bulkhead-pg.", 0), 0u) << dir;
  EXPECT_TRUE(fs::exists(dir + "/.s.PGSQL.5432")) << "the socket is in the directory itself";
  if (geteuid() == 0) {
    const passwd* nobody = getpwnam("nobody");
    ASSERT_NE(nobody, nullptr);
    EXPECT_NE(readFile(fmt::format("/proc/{}/status", server.pid()))
                  .find(fmt::format("\nUid:\t{}\t", nobody->pw_uid)),
              std::string::npos)
        << "as root, postgres runs as nobody";
  }

  // no TCP socket at all: the socket is a unix socket only
  for (const auto& inode : socketInodes(server.pid())) {
    EXPECT_EQ(tcpInodes(server.pid()).count(inode), 0u) << "postgres has a TCP socket " << inode;
  }

  EXPECT_EQ(server.conninfo("db x"),
            fmt::format("host='{}' port=5432 user='bulkhead' dbname='db x'", dir));
  std::string encoded_dir = dir;
  for (size_t i = 0; (i = encoded_dir.find('/', i)) != std::string::npos;) {
    encoded_dir.replace(i, 1, "%2F");
  }
  EXPECT_EQ(server.url("db x"),
            fmt::format("postgresql://bulkhead@/db%20x?host={}&port=5432", encoded_dir));

  ASSERT_TRUE(server.createDatabase("bulkhead_test").ok());
  EXPECT_FALSE(server.createDatabase("bulkhead_test").ok()) << "it exists";
  {
    Conn conn = connect(server.conninfo("bulkhead_test"));
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
    EXPECT_EQ(query(conn.get(), "SELECT current_user"), "bulkhead");
    EXPECT_EQ(query(conn.get(), "SHOW listen_addresses"), "");
    EXPECT_EQ(query(conn.get(), "SHOW server_version_num").substr(0, 2), "15");
    EXPECT_EQ(query(conn.get(), "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)"), "");
    EXPECT_EQ(query(conn.get(), "INSERT INTO t VALUES (1, 'before restart')"), "");
  }

  const pid_t first = server.pid();
  ASSERT_TRUE(server.restart().ok());
  EXPECT_FALSE(running(first));
  ASSERT_GT(server.pid(), 0);
  {
    Conn conn = connect(server.url("bulkhead_test"));  // the URI form works too
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
    EXPECT_EQ(query(conn.get(), "SELECT v FROM t WHERE id = 1"), "before restart");
    EXPECT_EQ(query(conn.get(), "INSERT INTO t VALUES (2, 'before crash')"), "");
  }

  // a crash with a client connected: that backend dies with the postmaster
  Conn open = connect(server.conninfo("bulkhead_test"));
  ASSERT_EQ(PQstatus(open.get()), CONNECTION_OK) << PQerrorMessage(open.get());
  const pid_t second = server.pid();
  const std::string backend = query(open.get(), "SELECT pg_backend_pid()");
  ASSERT_EQ(backend.find_first_not_of("0123456789"), std::string::npos) << backend;
  ASSERT_TRUE(server.kill9().ok());
  EXPECT_EQ(server.pid(), -1);
  EXPECT_FALSE(running(second));
  EXPECT_FALSE(running(std::stoi(backend))) << "the client's backend died with it";
  EXPECT_EQ(PQping(server.conninfo().c_str()), PQPING_NO_RESPONSE);
  EXPECT_EQ(query(open.get(), "SELECT 1").rfind("ERROR: ", 0), 0u) << "the connection is broken";
  EXPECT_FALSE(server.kill9().ok()) << "not running";

  ASSERT_TRUE(server.restart().ok());
  EXPECT_NE(readFile(dir + "/postgres.log").find("automatic recovery in progress"),
            std::string::npos)
      << "the restart after kill9 replays the WAL";
  {
    Conn conn = connect(server.conninfo("bulkhead_test"));
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
    EXPECT_EQ(query(conn.get(), "SELECT string_agg(v, ',' ORDER BY id) FROM t"),
              "before restart,before crash");
  }

  const pid_t last = server.pid();
  pg->reset();
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(running(last));
  EXPECT_TRUE(kill(last, 0) != 0 && errno == ESRCH) << "reaped, not a zombie";
}

TEST(TempPostgresTest, TwoServersSideBySideAndStopTwice) {
  auto a = TempPostgres::start();
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = TempPostgres::start();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE((*a)->dir(), (*b)->dir());
  ASSERT_TRUE((*a)->createDatabase("only_in_a").ok());
  Conn in_a = connect((*a)->conninfo("only_in_a"));
  EXPECT_EQ(PQstatus(in_a.get()), CONNECTION_OK) << PQerrorMessage(in_a.get());
  Conn in_b = connect((*b)->conninfo("only_in_a"));
  EXPECT_EQ(PQstatus(in_b.get()), CONNECTION_BAD) << "b is another cluster";

  EXPECT_TRUE((*a)->stop().ok());
  EXPECT_EQ((*a)->pid(), -1);
  EXPECT_TRUE((*a)->stop().ok()) << "stopping a stopped server is fine";
  EXPECT_EQ(PQping((*a)->conninfo().c_str()), PQPING_NO_RESPONSE);
  EXPECT_EQ(PQping((*b)->conninfo().c_str()), PQPING_OK);
}

// Sets an environment variable for its lifetime.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::set<std::string> tempDirs() {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator("/tmp")) {
    if (e.path().filename().string().rfind("bulkhead-pg.", 0) == 0) out.insert(e.path());
  }
  return out;
}

TEST(TempPostgresTest, MissingBinariesNameTheFix) {
  ScopedEnv bin("BULKHEAD_PG_BIN", "/nonexistent/pg/bin");
  auto pg = TempPostgres::start();
  ASSERT_FALSE(pg.ok());
  EXPECT_EQ(pg.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(pg.status().message().find("/nonexistent/pg/bin/initdb"), std::string::npos)
      << pg.status();
  EXPECT_NE(pg.status().message().find("scripts/lab-tools.sh"), std::string::npos) << pg.status();
}

TEST(TempPostgresTest, ServerThatExitsAtOnceIsReportedWithItsLogAndLeavesNothing) {
  auto real = TempPostgres::start();  // where the real binaries are (and that they work)
  ASSERT_TRUE(real.ok()) << real.status();
  std::string real_bin =
      fs::read_symlink(fmt::format("/proc/{}/exe", (*real)->pid())).parent_path();
  real->reset();
  // the real initdb (it finds its share/ and postgres from its resolved path), a postgres
  // that fails at once
  std::string fake = "/tmp/bulkhead-pg-fake.XXXXXX";
  ASSERT_NE(mkdtemp(fake.data()), nullptr);
  fs::permissions(fake, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  fs::create_symlink(real_bin + "/initdb", fake + "/initdb");
  {
    std::ofstream script(fake + "/postgres");
    script << "#!/bin/sh\necho 'FATAL:  planted failure' >&2\nexit 3\n";
  }
  fs::permissions(fake + "/postgres", fs::perms::owner_all | fs::perms::group_read |
                                          fs::perms::group_exec | fs::perms::others_read |
                                          fs::perms::others_exec);
  const auto before = tempDirs();
  {
    ScopedEnv bin("BULKHEAD_PG_BIN", fake);
    auto pg = TempPostgres::start();
    ASSERT_FALSE(pg.ok());
    EXPECT_NE(pg.status().message().find("exit status 3"), std::string::npos) << pg.status();
    EXPECT_NE(pg.status().message().find("planted failure"), std::string::npos) << pg.status();
  }
  EXPECT_EQ(tempDirs(), before) << "the temporary directory is removed";
  fs::remove_all(fake);
}

}  // namespace
}  // namespace bulkhead::controller::testing
