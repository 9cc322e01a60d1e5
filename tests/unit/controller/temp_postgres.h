// A throw-away PostgreSQL 15 server for tests: its own cluster in a fresh temporary directory,
// reachable only through a unix socket in that directory (no TCP listener at all), started and
// stopped by the test itself. Never the machine's own cluster: nothing here reads or writes
// /var/lib/postgresql or /etc/postgresql, calls pg_ctlcluster or systemctl, or listens on a
// network port.
//
// The server binaries come from scripts/lab-tools.sh (Debian 12's postgresql-15, extracted
// into ${BULKHEAD_LAB_TOOLS:-/var/cache/bulkhead/lab-tools}/postgresql-15, never installed), or
// from the directory named by BULKHEAD_PG_BIN (one holding initdb and postgres).
//
// PostgreSQL refuses to run as root: when the test runs as root, the directory is handed to
// nobody:nogroup and initdb and postgres run as that user (the test, as root, still reads the
// log and connects to the socket). Run such tests in their own namespaces (tests/README.md):
// `unshare --net --pid --fork --mount-proc --kill-child TEST`, so the server dies with the test
// whatever happens; without them a server is still killed (SIGQUIT, PostgreSQL's immediate
// shutdown) when the thread that started it dies.
//
// Not thread-safe: one thread drives an instance (several instances may run side by side).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::controller::testing {

class TempPostgres {
 public:
  // Makes a temporary directory /tmp/bulkhead-pg.XXXXXX, creates a cluster in its data/ (initdb
  // as superuser "bulkhead", trust authentication, UTF8, locale C, time zone UTC, no fsync at
  // initdb), starts postgres on it with the socket in the directory itself (port number 5432
  // names the socket file only: listen_addresses is empty) and returns once the server accepts
  // connections. Bounded: initdb 60 s, the server 30 s (then it is killed). On error nothing is
  // left behind (no process, no directory) and the message says which step failed, with the
  // tail of its log; FailedPrecondition, naming the directory and scripts/lab-tools.sh, when
  // the binaries are missing.
  static absl::StatusOr<std::unique_ptr<TempPostgres>> start();

  // Stops the server (by its own pid: stop()) and removes the temporary directory.
  ~TempPostgres();
  TempPostgres(const TempPostgres&) = delete;
  TempPostgres& operator=(const TempPostgres&) = delete;

  // libpq keyword/value connection string for `dbname` on this server:
  //   host='<dir>' port='5432' user='bulkhead' dbname='<dbname>'
  // Valid across restart() (same directory, same socket). Every parameter is given, so no
  // PGHOST/PGPORT/PGUSER/PGDATABASE of the environment applies.
  std::string conninfo(const std::string& dbname = "postgres") const;
  // The same as a URI: postgresql://bulkhead@/<dbname>?host=<dir>&port=5432, the database name
  // and the directory percent-encoded.
  std::string url(const std::string& dbname = "postgres") const;

  // CREATE DATABASE `name` (quoted as an identifier: any name works) through libpq, as the
  // superuser. Error (with the server's message) if the server is not running or the database
  // exists.
  absl::Status createDatabase(const std::string& name);

  // Fast shutdown: SIGINT to the postmaster (clients are disconnected, open transactions roll
  // back, a checkpoint is written), waits up to 20 s for it to exit, then SIGKILL. Ok when it
  // exited on SIGINT or was not running; DeadlineExceeded when it had to be killed (it is
  // stopped either way, as kill9() does it). Afterwards pid() is -1.
  absl::Status stop();
  // stop(), then starts postgres again on the same data directory and socket, as start() does
  // (bounded 30 s). After kill9(), this is crash recovery (WAL replay). Existing connections
  // are broken; conninfo() and url() stay valid.
  absl::Status restart();
  // Crash: the whole server dies at once, as in a power cut that spares the page cache. The
  // postmaster is stopped (SIGSTOP, so it forks nothing more), every server process it had
  // forked and then the postmaster get SIGKILL; waits (bounded 20 s) until all are gone, so
  // restart() can start on the same data directory (crash recovery). The data directory is
  // left as the crash leaves it. FailedPrecondition when not running. Afterwards pid() is -1.
  absl::Status kill9();

  // The postmaster's process id while running, -1 when stopped.
  pid_t pid() const { return pid_; }
  // The temporary directory (the socket directory; data/ and postgres.log are inside).
  const std::string& dir() const { return dir_; }

 private:
  TempPostgres(std::string bin_dir, std::string dir, uid_t uid, gid_t gid)
      : bin_dir_(std::move(bin_dir)), dir_(std::move(dir)), uid_(uid), gid_(gid) {}

  // Starts postgres on data/ and waits until it accepts connections (PQping), bounded 30 s;
  // on timeout or an early exit it is killed and the error carries the log's tail.
  absl::Status launch();
  // kill9()'s crash, also stop()'s last resort.
  absl::Status killHard();

  std::string bin_dir_;
  std::string dir_;
  uid_t uid_;  // the user postgres runs as: nobody when we are root, else ourselves
  gid_t gid_;
  pid_t pid_ = -1;
};

}  // namespace bulkhead::controller::testing
