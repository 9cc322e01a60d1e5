#include "agent/core/signal_args.h"

#include <boost/program_options.hpp>
#include <cmath>
#include <sstream>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/parse.h"

namespace bulkhead::agent {
namespace po = boost::program_options;
namespace v1 = bulkhead::v1;
namespace {

po::options_description commonOptions() {
  po::options_description o("options");
  o.add_options()("state-dir", po::value<std::string>(),
                  "the agent's state DIR, where signal.sock is (default /var/lib/bulkhead-agent)")(
      "timeout", po::value<std::string>(),
      "how long to wait for the controller's receipt, per signal (default 5s, at most 5m)")(
      "severity", po::value<std::string>(), "info | low | medium | high | critical")(
      "help", po::bool_switch(), "print this help");
  return o;
}

po::options_description signalOptions() {
  po::options_description o("signal options");
  o.add_options()("source", po::value<std::string>(),
                  "fail2ban | wazuh | sshguard | cli (required)")(
      "rule", po::value<std::string>(), "the tool's rule or jail NAME (required)")(
      "ip", po::value<std::vector<std::string>>()->composing(),
      "offending address or CIDR (repeatable, at most 64)")(
      "ttl", po::value<std::string>(), "how long the tool wants its verdict to last, e.g. 600s")(
      "resolved", po::bool_switch(), "the detection ended (fail2ban's unban)")(
      "key", po::value<std::string>(),
      "idempotency KEY: the same key twice acts once (default: derived by the agent)")(
      "label", po::value<std::vector<std::string>>()->composing(), "label k=v (repeatable)")(
      "json", po::bool_switch(), "print the receipt as one JSON line");
  o.add(commonOptions());
  return o;
}

absl::Status invalid(std::string_view flag, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("{}: invalid value \"{}\": {}", flag, value, why));
}

}  // namespace

bool isReportSubcommand(std::string_view first) {
  return first == "signal" || first == "wazuh-active-response" || first == "sshguard-backend";
}

std::string reportUsage() {
  std::ostringstream ss;
  ss << "  bulkhead-agent signal --source fail2ban|wazuh|sshguard|cli --rule NAME [--ip ADDR]...\n"
        "      [--severity LEVEL] [--ttl DURATION] [--resolved] [--key KEY] [--label k=v]...\n"
        "      [--timeout 5s] [--json] [--state-dir DIR]\n"
        "                              report a detection to the controller through the agent\n"
        "  bulkhead-agent wazuh-active-response [--severity LEVEL] [--timeout 5s] [--state-dir "
        "DIR]\n"
        "                              Wazuh active response: one message on stdin\n"
        "  bulkhead-agent sshguard-backend [--severity LEVEL] [--timeout 5s] [--state-dir DIR]\n"
        "                              sshguard's BACKEND: block/release lines on stdin\n"
        "  exit status: 0 recorded by the controller, 1 not delivered or refused by the\n"
        "  controller, 2 bad input (nothing sent)\n\n"
     << signalOptions();
  return ss.str();
}

std::vector<ShellFlag> reportFlags(ReportMode mode) {
  return shellFlagsOf(mode == ReportMode::kSignal ? signalOptions() : commonOptions());
}

absl::StatusOr<ReportCommand> parseReportCommand(const std::vector<std::string>& raw) {
  if (raw.empty() || !isReportSubcommand(raw.front())) {
    return absl::InvalidArgumentError("expected signal, wazuh-active-response or sshguard-backend");
  }
  ReportCommand c;
  const std::string& sub = raw.front();
  c.mode = sub == "signal"                  ? ReportMode::kSignal
           : sub == "wazuh-active-response" ? ReportMode::kWazuh
                                            : ReportMode::kSshguard;
  std::vector<std::string> args(raw.begin() + 1, raw.end());
  po::variables_map vm;
  try {
    auto opts = c.mode == ReportMode::kSignal ? signalOptions() : commonOptions();
    opts.add_options()("stray-argument", po::value<std::vector<std::string>>());
    po::positional_options_description stray;
    stray.add("stray-argument", -1);
    po::store(po::command_line_parser(args).options(opts).positional(stray).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return absl::InvalidArgumentError(fmt::format("{}: {} (see --help)", sub, e.what()));
  }
  if (vm.count("stray-argument")) {
    return absl::InvalidArgumentError(
        fmt::format("{}: unexpected argument \"{}\" (see --help)", sub,
                    vm["stray-argument"].as<std::vector<std::string>>().front()));
  }
  if (vm["help"].as<bool>()) {
    c.help = true;
    return c;
  }
  auto get = [&](const char* name) -> std::string {
    return vm.count(name) ? vm[name].as<std::string>() : std::string();
  };
  if (vm.count("state-dir")) {
    c.state_dir = get("state-dir");
    if (c.state_dir.empty()) return invalid("--state-dir", "", "empty path");
  }
  if (vm.count("timeout")) {
    auto t = parseDuration("--timeout", get("timeout"));
    if (!t.ok()) return t.status();
    if (*t > kMaxSignalTimeout) return invalid("--timeout", get("timeout"), "at most 5m");
    c.timeout = *t;
  }
  if (vm.count("severity")) {
    auto s = parseSeverity("--severity", get("severity"));
    if (!s.ok()) return s.status();
    c.severity = *s;
  }
  if (c.mode != ReportMode::kSignal) return c;

  c.json = vm["json"].as<bool>();
  v1::Signal& s = c.signal;
  if (!vm.count("source")) {
    return absl::InvalidArgumentError("--source: required (fail2ban, wazuh, sshguard or cli)");
  }
  auto source = parseLocalSignalSource("--source", get("source"));
  if (!source.ok()) return source.status();
  s.set_source(*source);
  if (!vm.count("rule") || get("rule").empty()) {
    return absl::InvalidArgumentError("--rule: required (the tool's rule or jail name)");
  }
  s.set_rule(get("rule"));
  if (s.rule().size() > kMaxSignalRuleBytes) {
    return invalid("--rule", s.rule().substr(0, 32) + "...",
                   fmt::format("{} bytes, at most {}", s.rule().size(), kMaxSignalRuleBytes));
  }
  s.set_severity(c.severity);
  if (vm.count("ip")) {
    const auto& ips = vm["ip"].as<std::vector<std::string>>();
    if (ips.size() > static_cast<size_t>(kMaxSignalAddresses)) {
      return absl::InvalidArgumentError(
          fmt::format("--ip: {} addresses, at most {}", ips.size(), kMaxSignalAddresses));
    }
    for (const auto& ip : ips) {
      auto cidr = parseCidr("--ip", ip);
      if (!cidr.ok()) return cidr.status();
      s.add_addresses(cidr->toString());
    }
  }
  if (vm.count("ttl")) {
    auto ttl = parseDuration("--ttl", get("ttl"));
    if (!ttl.ok()) return ttl.status();
    auto seconds = (ttl->count() + 999) / 1000;  // rounded up: a 500ms verdict lasts 1 s
    if (seconds > static_cast<int64_t>(UINT32_MAX)) {
      return invalid("--ttl", get("ttl"), "too long");
    }
    s.set_ttl_seconds(static_cast<uint32_t>(seconds));
  }
  s.set_resolved(vm["resolved"].as<bool>());
  if (vm.count("key")) {
    if (get("key").empty()) return invalid("--key", "", "empty key");
    s.set_idempotency_key(get("key"));
  }
  if (vm.count("label")) {
    for (const auto& text : vm["label"].as<std::vector<std::string>>()) {
      auto kv = parseLabel("--label", text);
      if (!kv.ok()) return kv.status();
      if (s.labels().contains(kv->first)) {
        return invalid("--label", text, fmt::format("label \"{}\" given twice", kv->first));
      }
      (*s.mutable_labels())[kv->first] = kv->second;
    }
  }
  if (auto st = checkLocalSignal(s); !st.ok()) return st;
  return c;
}

}  // namespace bulkhead::agent
