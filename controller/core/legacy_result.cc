#include "controller/core/legacy_result.h"

#include <fmt/format.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "common/json.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;
using nlohmann::json;

namespace {

// Reads keys of one document; the first problem is kept in `error` and later reads return
// defaults.
// `v` as a T, when it is an integer T can hold.
template <typename T>
std::optional<T> asInteger(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (std::in_range<T>(u)) return static_cast<T>(u);
  } else if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (std::in_range<T>(i)) return static_cast<T>(i);
  }
  return std::nullopt;
}

class Reader {
 public:
  std::string error;

  // A present, non-null value of `key` in object `o`; nullptr when absent or null.
  static const json* find(const json& o, const char* key) {
    if (!o.is_object()) return nullptr;
    auto it = o.find(key);
    return it == o.end() || it->is_null() ? nullptr : &*it;
  }

  void fail(const std::string& path, std::string_view want) {
    if (error.empty()) error = fmt::format("{}: not {}", path, want);
  }

  template <typename T>
  T integer(const json& o, const char* key, const std::string& path) {
    const json* v = find(o, key);
    if (v == nullptr) return T{};
    if (auto i = asInteger<T>(*v)) return *i;
    fail(path + key, "an integer in range");
    return T{};
  }

  std::string string(const json& o, const char* key, const std::string& path) {
    const json* v = find(o, key);
    if (v == nullptr) return "";
    if (!v->is_string()) {
      fail(path + key, "a string");
      return "";
    }
    return v->get<std::string>();
  }

  bool boolean(const json& o, const char* key, const std::string& path) {
    const json* v = find(o, key);
    if (v == nullptr) return false;
    if (!v->is_boolean()) {
      fail(path + key, "true or false");
      return false;
    }
    return v->get<bool>();
  }

  // Calls each(item, "<path><key>[i].") for every item of array `key` (absent: none).
  template <typename Each>
  void array(const json& o, const char* key, const std::string& path, Each each) {
    const json* v = find(o, key);
    if (v == nullptr) return;
    if (!v->is_array()) {
      fail(path + key, "an array");
      return;
    }
    for (size_t i = 0; i < v->size() && error.empty(); ++i) {
      each((*v)[i], fmt::format("{}{}[{}].", path, key, i));
    }
  }

  // Like array(), for an array of objects.
  template <typename Each>
  void objects(const json& o, const char* key, const std::string& path, Each each) {
    array(o, key, path, [&](const json& item, const std::string& at) {
      if (item.is_object()) {
        each(item, at);
      } else {
        fail(at.substr(0, at.size() - 1), "an object");
      }
    });
  }
};

v1::ProcessEntry processEntry(Reader& rd, const json& p, const std::string& at) {
  v1::ProcessEntry e;
  e.set_pid(rd.integer<int32_t>(p, "pid", at));
  e.set_ppid(rd.integer<int32_t>(p, "ppid", at));
  e.set_user(rd.string(p, "user", at));
  e.set_uid(rd.integer<uint32_t>(p, "uid", at));
  e.set_cmdline(rd.string(p, "cmdline", at));
  e.set_exe(rd.string(p, "exe", at));
  e.set_why(rd.string(p, "why", at));
  return e;
}

v1::SessionRecord sessionRecord(Reader& rd, const json& s, const std::string& at) {
  v1::SessionRecord r;
  r.set_id(rd.integer<uint32_t>(s, "id", at));
  r.set_loginuid(rd.integer<uint32_t>(s, "loginuid", at));
  r.set_user(rd.string(s, "user", at));
  r.set_tty(rd.string(s, "tty", at));
  r.set_remote(rd.string(s, "remote", at));
  r.set_service(rd.string(s, "service", at));
  r.set_leader_pid(rd.integer<int32_t>(s, "leader_pid", at));
  r.set_start_unix(rd.integer<int64_t>(s, "start_unix", at));
  r.set_processes(rd.integer<uint32_t>(s, "processes", at));
  rd.array(s, "pids", at, [&](const json& pid, const std::string& where) {
    if (auto i = asInteger<int32_t>(pid)) {
      r.add_pids(*i);
    } else {
      rd.fail(where.substr(0, where.size() - 1), "a process id");
    }
  });
  r.set_interactive(rd.boolean(s, "interactive", at));
  return r;
}

v1::ProcessRecord processRecord(Reader& rd, const json& p, const std::string& at) {
  v1::ProcessRecord r;
  r.set_pid(rd.integer<int32_t>(p, "pid", at));
  r.set_ppid(rd.integer<int32_t>(p, "ppid", at));
  r.set_user(rd.string(p, "user", at));
  r.set_uid(rd.integer<uint32_t>(p, "uid", at));
  r.set_cmdline(rd.string(p, "cmdline", at));
  r.set_exe(rd.string(p, "exe", at));
  r.set_comm(rd.string(p, "comm", at));
  r.set_loginuid(rd.integer<uint32_t>(p, "loginuid", at));
  r.set_sessionid(rd.integer<uint32_t>(p, "sessionid", at));
  r.set_start_unix(rd.integer<int64_t>(p, "start_unix", at));
  r.set_exe_sha256(rd.string(p, "exe_sha256", at));
  r.set_exe_sha256_error(rd.string(p, "exe_sha256_error", at));
  rd.objects(p, "sockets", at, [&](const json& s, const std::string& where) {
    v1::SocketRecord& sock = *r.add_sockets();
    sock.set_inode(rd.integer<uint64_t>(s, "inode", where));
    const std::string kind = rd.string(s, "kind", where);
    if (kind == "tcp") {
      sock.set_kind(v1::SOCKET_KIND_TCP);
    } else if (kind == "other") {
      sock.set_kind(v1::SOCKET_KIND_OTHER);
    } else {
      rd.fail(where + "kind", "\"tcp\" or \"other\"");
    }
    sock.set_local(rd.string(s, "local", where));
    sock.set_remote(rd.string(s, "remote", where));
    sock.set_state(rd.integer<uint32_t>(s, "state", where));
  });
  return r;
}

void killConnections(Reader& rd, const json& doc, v1::KillConnectionsResult& out) {
  rd.objects(doc, "connections", "", [&](const json& c, const std::string& at) {
    v1::CutConnection& cut = *out.add_connections();
    const std::string proto = rd.string(c, "proto", at);
    if (proto == "tcp") {
      cut.set_proto(v1::PROTOCOL_TCP);
    } else if (proto == "udp") {
      cut.set_proto(v1::PROTOCOL_UDP);
    } else {
      rd.fail(at + "proto", "\"tcp\" or \"udp\"");
    }
    cut.set_local(rd.string(c, "local", at));
    cut.set_local_port(rd.integer<uint32_t>(c, "local_port", at));
    cut.set_remote(rd.string(c, "remote", at));
    cut.set_remote_port(rd.integer<uint32_t>(c, "remote_port", at));
    cut.set_pid(rd.integer<uint32_t>(c, "pid", at));
    cut.set_forwarded(rd.boolean(c, "forwarded", at));
    const std::string how = rd.string(c, "how", at);
    if (how == "socket destroyed") {
      cut.set_how(v1::CUT_METHOD_SOCKET_DESTROYED);
    } else if (how == "conntrack entry deleted") {
      cut.set_how(v1::CUT_METHOD_CONNTRACK_DELETED);
    } else {
      rd.fail(at + "how", "\"socket destroyed\" or \"conntrack entry deleted\"");
    }
  });
  out.set_connections_cut(rd.integer<uint32_t>(doc, "connections_cut", ""));
  rd.array(doc, "errors", "", [&](const json& e, const std::string& at) {
    if (e.is_string()) {
      out.add_errors(e.get<std::string>());
    } else {
      rd.fail(at.substr(0, at.size() - 1), "a string");
    }
  });
}

void listSessions(Reader& rd, const json& doc, v1::ListSessionsResult& out) {
  out.set_source(rd.string(doc, "source", ""));
  rd.objects(doc, "sessions", "", [&](const json& s, const std::string& at) {
    *out.add_sessions() = sessionRecord(rd, s, at);
  });
}

void killProcesses(Reader& rd, const json& doc, v1::KillProcessesResult& out) {
  out.set_scan_rounds(rd.integer<uint32_t>(doc, "scan_rounds", ""));
  out.set_frozen(rd.boolean(doc, "frozen", ""));
  const std::string method = rd.string(doc, "freeze_method", "");
  if (method == "sigstop") {
    out.set_freeze_method(v1::FREEZE_METHOD_SIGSTOP);
  } else if (!method.empty()) {
    rd.fail("freeze_method", "\"sigstop\"");
  }
  rd.objects(doc, "records", "", [&](const json& p, const std::string& at) {
    *out.add_records() = processRecord(rd, p, at);
  });
  out.set_cut_error(rd.string(doc, "cut_error", ""));
  out.set_connections_cut(rd.integer<uint32_t>(doc, "connections_cut", ""));
  auto entries = [&](const char* key, auto add) {
    rd.objects(doc, key, "",
               [&](const json& p, const std::string& at) { *add() = processEntry(rd, p, at); });
  };
  entries("killed", [&] { return out.add_killed(); });
  entries("spared", [&] { return out.add_spared(); });
  entries("skipped", [&] { return out.add_skipped(); });
  entries("still_alive", [&] { return out.add_still_alive(); });
  rd.objects(doc, "errors", "", [&](const json& e, const std::string& at) {
    v1::SignalError& err = *out.add_errors();
    err.set_pid(rd.integer<int32_t>(e, "pid", at));
    err.set_error(rd.string(e, "error", at));
  });
  rd.objects(doc, "sessions", "", [&](const json& s, const std::string& at) {
    *out.add_sessions() = sessionRecord(rd, s, at);
  });
  out.set_note(rd.string(doc, "note", ""));
}

}  // namespace

absl::Status convertLegacyResult(std::string_view action, std::string_view document,
                                 v1::CommandResult* result) {
  result->clear_result();
  if (document.empty()) return absl::OkStatus();
  auto parsed = parseForeignJson(document);
  if (!parsed || !parsed->is_object()) {
    return absl::InvalidArgumentError("the agent's result document is not a JSON object");
  }
  Reader rd;
  if (action == "kill-connections") {
    killConnections(rd, *parsed, *result->mutable_kill_connections());
  } else if (action == "sessions") {
    listSessions(rd, *parsed, *result->mutable_list_sessions());
  } else if (action == "kill-sessions" || action == "kill-process") {
    killProcesses(rd, *parsed, *result->mutable_kill_processes());
  } else {
    return absl::InvalidArgumentError(
        fmt::format("no typed result for action \"{}\" of an agent's result document", action));
  }
  if (!rd.error.empty()) {
    result->clear_result();
    return absl::InvalidArgumentError(
        fmt::format("the agent's result document does not read: {}", rd.error));
  }
  return absl::OkStatus();
}

}  // namespace bulkhead::controller
