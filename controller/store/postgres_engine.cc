#include "controller/store/postgres_engine.h"

#include <algorithm>
#include <cctype>
#include <pqxx/pqxx>

#include "common/format.h"

namespace bulkhead::controller::postgres {

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string dollarParameters(const std::string& sql, int* max_parameter) {
  std::string out;
  out.reserve(sql.size());
  *max_parameter = 0;
  char quote = 0;  // the quote character of the text or identifier we are in, else 0
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      if (c == quote) quote = 0;  // a doubled quote reopens at the next character: same result
      out += c;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      continue;
    }
    if (c == '?' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1]))) {
      int n = 0;
      size_t j = i + 1;
      while (j < sql.size() && std::isdigit(static_cast<unsigned char>(sql[j]))) {
        n = n * 10 + (sql[j] - '0');
        ++j;
      }
      *max_parameter = std::max(*max_parameter, n);
      out += '$';
      out.append(sql, i + 1, j - i - 1);
      i = j - 1;
      continue;
    }
    out += c;
  }
  return out;
}

namespace {

class PgDb final : public sql::Db {
 public:
  explicit PgDb(std::string url) : url_(std::move(url)) {}
  ~PgDb() override;
  PgDb(const PgDb&) = delete;
  PgDb& operator=(const PgDb&) = delete;

  std::unique_ptr<sql::Cursor> prepare(const std::string& sql) override;
  absl::Status exec(const std::string& sql) override;
  absl::Status begin() override;
  absl::Status commit() override;
  void rollback() override;
  int64_t changes() override { return changes_; }
  absl::Status notify(const std::string& channel, const std::string& payload) override;
  std::string lastError() override { return last_error_; }

  // Runs `sql` ($N parameters, as text) in the open transaction or on its own; nullptr with
  // lastError() set on failure. Reconnects first when the connection was lost.
  std::unique_ptr<pqxx::result> run(const std::string& sql, const std::vector<std::string>& params);
  // The connection, opened again if it was lost; nullptr (lastError() set) when it cannot be.
  pqxx::connection* connection();
  // A statement refused before it was sent: `why` becomes the last error.
  void refuse(std::string why) { last_error_ = std::move(why); }

 private:
  void fail(const std::exception& e, bool connection_lost);

  const std::string url_;
  std::unique_ptr<pqxx::connection> connection_;
  std::unique_ptr<pqxx::work> tx_;
  int64_t changes_ = 0;
  std::string last_error_;
};

constexpr pqxx::oid kByteaOid = 17;  // pg_type.oid of bytea

constexpr char kHexDigits[] = "0123456789abcdef";

// bytea's text input: "\x" and two hex digits a byte.
std::string byteaText(const std::string& bytes) {
  std::string out = "\\x";
  out.reserve(2 + 2 * bytes.size());
  for (unsigned char c : bytes) {
    out += kHexDigits[c >> 4];
    out += kHexDigits[c & 0xf];
  }
  return out;
}

class PgCursor final : public sql::Cursor {
 public:
  PgCursor(PgDb* db, const std::string& sql) : db_(db) {
    int max_parameter = 0;
    sql_ = dollarParameters(sql, &max_parameter);
    params_.resize(static_cast<size_t>(max_parameter));
  }
  absl::Status prepared() const override { return absl::OkStatus(); }
  // A parameter the SQL does not name is dropped, as SQLite does. PostgreSQL's text holds no
  // NUL byte, and libpq would cut the value there: such a value fails the statement (a row
  // stored cut would no longer match its hash).
  void bind(int i, int64_t v) override { set(i, std::to_string(v)); }
  void bind(int i, const std::string& v) override {
    if (v.find('\0') != std::string::npos) nul_parameter_ = i;
    set(i, v);
  }
  void bindBlob(int i, const std::string& v) override { set(i, byteaText(v)); }
  int step() override {
    if (nul_parameter_ != 0) {
      db_->refuse(
          fmt::format("parameter {}: text with a NUL byte cannot be stored", nul_parameter_));
      return 1;
    }
    if (!result_) {
      result_ = db_->run(sql_, params_);
      if (!result_) return 1;  // SQLite's SQLITE_ERROR: an error, lastError() says which
      row_ = 0;
    } else {
      ++row_;
    }
    return row_ < result_->size() ? sql::kRow : sql::kDone;
  }
  void reset() override {
    result_.reset();
    nul_parameter_ = 0;
    for (std::string& p : params_) p.clear();
  }
  int64_t i64(int col) override {
    const pqxx::field f = field(col);
    if (f.is_null()) return 0;
    // A boolean column (an EXISTS, a comparison) reads as 1 or 0, as SQLite gives it.
    std::string_view text = f.c_str();
    if (text == "t" || text == "f") return text == "t" ? 1 : 0;
    return f.as<int64_t>();
  }
  std::string text(int col) override {
    const pqxx::field f = field(col);
    if (f.is_null()) return {};
    if (result_->column_type(col) == kByteaOid) return pqxx::binarystring(f).str();
    return std::string(f.c_str(), f.size());
  }

 private:
  void set(int i, std::string v) {
    if (i >= 1 && static_cast<size_t>(i) <= params_.size()) params_[i - 1] = std::move(v);
  }
  pqxx::field field(int col) const {
    return (*result_)[static_cast<pqxx::result::size_type>(row_)][col];
  }

  PgDb* db_;
  std::string sql_;
  std::vector<std::string> params_;
  std::unique_ptr<pqxx::result> result_;
  size_t row_ = 0;
  int nul_parameter_ = 0;  // a text parameter holding a NUL byte, else 0
};

PgDb::~PgDb() {
  rollback();
  connection_.reset();
}

pqxx::connection* PgDb::connection() {
  if (connection_ && connection_->is_open()) return connection_.get();
  tx_.reset();
  connection_.reset();
  try {
    connection_ = std::make_unique<pqxx::connection>(url_);
  } catch (const std::exception& e) {
    last_error_ = trimmed(e.what());
    return nullptr;
  }
  return connection_.get();
}

void PgDb::fail(const std::exception& e, bool connection_lost) {
  last_error_ = trimmed(e.what());
  if (connection_lost) {
    tx_.reset();
    connection_.reset();
    last_error_ = fmt::format("connection to PostgreSQL lost: {}", last_error_);
  }
}

std::unique_ptr<pqxx::result> PgDb::run(const std::string& sql,
                                        const std::vector<std::string>& params) {
  try {
    if (tx_) {
      auto r = std::make_unique<pqxx::result>(
          tx_->exec_params(sql, pqxx::prepare::make_dynamic_params(params)));
      changes_ = r->affected_rows();
      return r;
    }
    for (int attempt = 0;; ++attempt) {
      pqxx::connection* c = connection();
      if (c == nullptr) return nullptr;
      try {
        pqxx::nontransaction autocommit(*c);
        auto r = std::make_unique<pqxx::result>(
            autocommit.exec_params(sql, pqxx::prepare::make_dynamic_params(params)));
        changes_ = r->affected_rows();
        return r;
      } catch (const pqxx::broken_connection& e) {
        // A read is run again on a new connection, once; a write may have been done.
        if (attempt > 0 || !sql.starts_with("SELECT")) throw;
        fail(e, true);
      }
    }
  } catch (const pqxx::broken_connection& e) {
    fail(e, true);
  } catch (const std::exception& e) {
    fail(e, false);
  }
  return nullptr;
}

std::unique_ptr<sql::Cursor> PgDb::prepare(const std::string& sql) {
  return std::make_unique<PgCursor>(this, sql);
}

absl::Status PgDb::exec(const std::string& sql) {
  try {
    if (tx_) {
      tx_->exec(sql);
      return absl::OkStatus();
    }
    pqxx::connection* c = connection();
    if (c == nullptr) return absl::UnavailableError(last_error_);
    pqxx::nontransaction autocommit(*c);
    autocommit.exec(sql);
    return absl::OkStatus();
  } catch (const pqxx::broken_connection& e) {
    fail(e, true);
    return absl::UnavailableError(last_error_);
  } catch (const std::exception& e) {
    fail(e, false);
    return absl::InternalError(fmt::format("postgresql: {}", last_error_));
  }
}

absl::Status PgDb::notify(const std::string& channel, const std::string& payload) {
  if (!tx_) return absl::FailedPreconditionError("notify: outside a write transaction");
  if (run("SELECT pg_notify($1, $2)", {channel, payload}) == nullptr) {
    return absl::InternalError(fmt::format("notify {}: {}", channel, last_error_));
  }
  return absl::OkStatus();
}

absl::Status PgDb::begin() {
  rollback();
  // A connection the server closed (a restart, a failover) shows only when used: nothing is
  // done before the lock is held, so a lost one is opened again and the begin retried, once.
  for (int attempt = 0;; ++attempt) {
    pqxx::connection* c = connection();
    if (c == nullptr) return absl::UnavailableError(last_error_);
    try {
      tx_ = std::make_unique<pqxx::work>(*c);
      tx_->exec(fmt::format("SELECT pg_advisory_xact_lock({})", kWriteLock));
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      fail(e, true);
      if (attempt == 0) continue;
      return absl::UnavailableError(last_error_);
    } catch (const std::exception& e) {
      fail(e, false);
      tx_.reset();
      return absl::InternalError(fmt::format("begin a transaction: {}", last_error_));
    }
  }
}

absl::Status PgDb::commit() {
  if (!tx_) return absl::FailedPreconditionError("commit: no transaction is open");
  try {
    tx_->commit();
    tx_.reset();
    return absl::OkStatus();
  } catch (const pqxx::in_doubt_error& e) {
    fail(e, true);
    return absl::UnavailableError(fmt::format(
        "commit: the connection was lost while committing; whether it committed is unknown: {}",
        last_error_));
  } catch (const pqxx::broken_connection& e) {
    fail(e, true);
    return absl::UnavailableError(fmt::format("commit: {}", last_error_));
  } catch (const std::exception& e) {
    fail(e, false);
    tx_.reset();
    return absl::InternalError(fmt::format("commit: {}", last_error_));
  }
}

void PgDb::rollback() {
  if (!tx_) return;
  try {
    tx_->abort();
  } catch (const std::exception& e) {
    last_error_ = trimmed(e.what());
  }
  tx_.reset();
}

}  // namespace

absl::StatusOr<std::unique_ptr<sql::Db>> connect(const std::string& url) {
  auto db = std::make_unique<PgDb>(url);
  if (db->connection() == nullptr) {
    return absl::UnavailableError(fmt::format("cannot connect to PostgreSQL: {}", db->lastError()));
  }
  return db;
}

}  // namespace bulkhead::controller::postgres
