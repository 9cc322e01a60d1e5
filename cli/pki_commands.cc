// `bulkhead pki init`, `bulkhead pki issue agent|operator|controller` and `bulkhead pki revoke`.
//
// Layout of a PKI directory:
//   DIR/ca/ca.crt, DIR/ca/ca.key (0600)       the fleet CA; keep ca.key offline when you can
//   DIR/ca/controller-name                     the name in the controller's certificate
//   DIR/ca/issued/SERIAL.pem                   every certificate issued (for `pki revoke --name`)
//   DIR/ca/revoked.json                        what `pki revoke` revoked, with who/why/when
//   DIR/ca/crl.pem                             the signed CRL made from revoked.json
//   DIR/controller/{ca.crt,tls.crt,tls.key,controller-name,crl.pem}
//                                              --identity for bulkhead-controller
//   DIR/operators/NAME/{ca.crt,tls.crt,tls.key,controller-name}
//                                              --identity for the CLI (init issues "admin")
//   DIR/agents/HOST_ID/{...}                   --identity for bulkhead-agent
#include <arpa/inet.h>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <set>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/certificate.h"
#include "common/format.h"
#include "common/parse.h"
#include "common/pki/pki.h"
#include "common/tls/tls.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace bulkhead::cli {
namespace {

absl::StatusOr<CertAndKey> loadCa(const fs::path& dir) {
  auto cert = readFile(dir / "ca" / "ca.crt");
  if (!cert.ok()) return absl::NotFoundError(fmt::format("--dir: no CA in {}: {} (run `bulkhead pki init` first)", dir.string(), cert.status()));
  auto key = readFile(dir / "ca" / "ca.key");
  if (!key.ok()) return absl::NotFoundError(fmt::format("--dir: {}", key.status()));
  return CertAndKey{*cert, *key};
}

// Default certificate lifetimes: operators (people, laptops) short, agents and the controller
// longer (servers, rotated by automation).
constexpr std::chrono::hours kOperatorValidity{24 * 90};
constexpr std::chrono::hours kServerValidity{24 * 825};
constexpr std::chrono::hours kMaxValidity{24 * 3650};
// A CRL's nextUpdate; bulkhead does not enforce it (a stale list still denies what it names).
constexpr std::chrono::hours kCrlValidity{24 * 3650};

// Parses --valid-for; errors name the flag and the value.
absl::StatusOr<std::chrono::seconds> parseValidity(const std::string& text,
                                                   std::chrono::seconds fallback) {
  if (text.empty()) return fallback;
  auto d = parseDuration("--valid-for", text);
  if (!d.ok()) return d.status();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(*d);
  if (secs < std::chrono::seconds(60) || secs > kMaxValidity) {
    return absl::InvalidArgumentError(fmt::format(
        "--valid-for: invalid value \"{}\": must be between 1m and 3650d", text));
  }
  return secs;
}

// Keeps a copy of every issued certificate so `pki revoke --name` finds it.
absl::Status recordIssued(const fs::path& root, const std::string& cert_pem) {
  auto id = identityFromCertPem(cert_pem);
  if (!id.ok()) return id.status();
  std::error_code ec;
  fs::create_directories(root / "ca" / "issued", ec);
  if (ec) {
    return absl::PermissionDeniedError(fmt::format(
        "cannot create {}: {}", (root / "ca" / "issued").string(), ec.message()));
  }
  return writeFileAtomic(root / "ca" / "issued" / (id->serial + ".pem"), cert_pem, 0644);
}

// The controller name of a PKI: DIR/ca/controller-name, or the CN of DIR/controller/tls.crt
// for a PKI made before that file existed; empty when neither is there.
std::string pkiControllerName(const fs::path& root) {
  if (auto name = readFile(root / "ca" / kControllerNameFile); name.ok()) {
    std::string text = *name;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (isValidDnsName(text)) return text;
  }
  if (auto pem = readFile(root / "controller" / "tls.crt"); pem.ok()) {
    if (auto id = identityFromCertPem(*pem); id.ok() && id->kind == PeerKind::kController) {
      return id->name;
    }
  }
  return {};
}

absl::Status writeControllerName(const fs::path& dir, const std::string& name) {
  if (name.empty()) return absl::OkStatus();
  return writeFileAtomic(dir / kControllerNameFile, name + "\n", 0644);
}

std::string utcDate(int64_t unix_seconds) {
  return fmt::format("{:%Y-%m-%d %H:%M:%S} UTC",
                     fmt::gmtime(static_cast<std::time_t>(unix_seconds)));
}

void report(const GlobalOptions& g, Io& io, const std::string& what, const fs::path& dir,
            const std::string& identity, const std::string& cert_pem) {
  auto id = identityFromCertPem(cert_pem);
  std::string serial = id.ok() ? id->serial : "";
  int64_t not_after = id.ok() ? id->not_after_unix : 0;
  if (g.json) {
    printJson(io.out, nlohmann::json{{"issued", what},
                                     {"identity", identity},
                                     {"dir", dir.string()},
                                     {"serial", serial},
                                     {"not_after_unix_ms", not_after * 1000}});
  } else {
    io.out << "issued " << what << " " << identity << " in " << dir.string() << " (serial "
           << serial << ", valid until " << utcDate(not_after) << ")\n";
  }
}

int pkiInit(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string dir;
  std::string controller_name;
  std::vector<std::string> ips;
  std::vector<std::string> dns;
  std::string admin;
  po::options_description opts("pki init");
  opts.add_options()
      ("dir", po::value(&dir)->required(), "directory for the new PKI")
      ("controller-name", po::value(&controller_name)->default_value("bulkhead-controller"),
       "name agents and operators expect in the controller certificate")
      ("controller-ip", po::value(&ips)->composing(), "controller IP address (repeatable)")
      ("controller-dns", po::value(&dns)->composing(), "extra DNS name (repeatable)")
      ("admin-name", po::value(&admin)->default_value("admin"), "name of the first operator");
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("pki init", args, opts, {}, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  // The global option parser takes --controller-name wherever it appears on the line.
  if (g.controller_name_given && vm["controller-name"].defaulted()) {
    controller_name = g.controller_name;
  }
  for (const auto& ip : ips) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) {
      io.err << "bulkhead pki init: --controller-ip: invalid value \"" << ip
             << "\": not an IPv4 or IPv6 address\n";
      return kUsage;
    }
  }
  if (!isValidDnsName(controller_name) || controller_name.size() > 63) {
    io.err << "bulkhead pki init: --controller-name: invalid value \"" << controller_name
           << "\": expected a DNS name of at most 63 characters (labels of [A-Za-z0-9-] joined "
              "by dots)\n";
    return kUsage;
  }
  for (const auto& name : dns) {
    if (!isValidDnsName(name)) {
      io.err << "bulkhead pki init: --controller-dns: invalid value \"" << name
             << "\": expected a DNS name (labels of [A-Za-z0-9-] joined by dots)\n";
      return kUsage;
    }
  }
  if (!isValidName(admin)) {
    io.err << "bulkhead pki init: --admin-name: invalid value \"" << admin
           << "\": use 1-63 characters of [A-Za-z0-9._-], not starting with '.' or '-'\n";
    return kUsage;
  }
  fs::path root(dir);
  if (fs::exists(root / "ca" / "ca.key")) {
    io.err << "bulkhead pki init: " << (root / "ca" / "ca.key").string()
           << " already exists; refusing to replace the fleet CA\n";
    return kUsage;
  }
  auto ca = createCa("bulkhead fleet CA", std::chrono::hours(24 * 3650));
  if (!ca.ok()) {
    io.err << "bulkhead pki init: " << ca.status().message() << "\n";
    return kFailed;
  }
  std::error_code ec;
  fs::create_directories(root / "ca", ec);
  if (ec) {
    io.err << "bulkhead pki init: --dir: cannot create " << (root / "ca").string() << ": "
           << ec.message() << "\n";
    return kUsage;
  }
  fs::permissions(root / "ca", fs::perms::owner_all, ec);
  if (auto s = writeFileAtomic(root / "ca" / "ca.key", ca->key_pem, 0600); !s.ok()) {
    io.err << "bulkhead pki init: " << s.message() << "\n";
    return kFailed;
  }
  if (auto s = writeFileAtomic(root / "ca" / "ca.crt", ca->cert_pem, 0644); !s.ok()) {
    io.err << "bulkhead pki init: " << s.message() << "\n";
    return kFailed;
  }
  if (auto s = writeControllerName(root / "ca", controller_name); !s.ok()) {
    io.err << "bulkhead pki init: " << s.message() << "\n";
    return kFailed;
  }
  CertRequest ctl{.kind = PeerKind::kController, .name = controller_name, .dns_names = dns,
                  .ip_addresses = ips, .validity = kServerValidity};
  CertRequest op{.kind = PeerKind::kOperator, .name = admin, .role = Role::kAdmin,
                 .validity = kOperatorValidity};
  for (auto [req, sub] : {std::pair{&ctl, fs::path("controller")},
                          std::pair{&op, fs::path("operators") / admin}}) {
    auto leaf = issueCert(*ca, *req);
    if (!leaf.ok()) {
      io.err << "bulkhead pki init: " << leaf.status().message() << "\n";
      return kFailed;
    }
    absl::Status s =
        writeIdentity(root / sub, ca->cert_pem, leaf->cert_pem, leaf->key_pem, false);
    if (s.ok()) s = writeControllerName(root / sub, controller_name);
    if (s.ok()) s = recordIssued(root, leaf->cert_pem);
    if (!s.ok()) {
      io.err << "bulkhead pki init: " << s.message() << "\n";
      return kFailed;
    }
  }
  if (g.json) {
    printJson(io.out, nlohmann::json{{"dir", root.string()},
                                     {"ca", (root / "ca").string()},
                                     {"controller", (root / "controller").string()},
                                     {"operator", (root / "operators" / admin).string()}});
  } else {
    io.out << "created fleet CA in " << (root / "ca").string() << "\n"
           << "controller identity (" << controller_name << ") in "
           << (root / "controller").string() << "\n"
           << "operator identity " << admin << " (admin) in "
           << (root / "operators" / admin).string() << "\n";
  }
  return kOk;
}

int pkiIssue(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string kind;
  std::string dir;
  std::string out;
  std::string host_id;
  std::string name;
  std::string role_text;
  std::string valid_for;
  bool replace = false;
  std::vector<std::string> controller_ips;
  po::options_description opts("pki issue agent|operator|controller");
  opts.add_options()
      ("kind", po::value(&kind)->required(), "agent, operator or controller")
      ("dir", po::value(&dir)->required(), "PKI directory made by pki init")
      ("host-id", po::value(&host_id), "agent: the host id")
      ("name", po::value(&name), "operator: the operator name")
      ("role", po::value(&role_text)->default_value("responder"),
       "operator: viewer, responder or admin")
      ("controller-ip", po::value(&controller_ips)->value_name("IP"),
       "controller: an IP address agents dial (repeatable; default: those of the certificate "
       "being replaced)")
      ("out", po::value(&out), "output directory (default DIR/agents/ID or DIR/operators/NAME)")
      ("valid-for", po::value(&valid_for),
       "certificate lifetime, e.g. 30d (default: operators 90d, agents 825d)")
      ("replace", po::bool_switch(&replace),
       "replace the identity already in the output directory (rotation; the old certificate "
       "stays valid until revoked or expired)");
  po::positional_options_description pos;
  pos.add("kind", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("pki issue", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  CertRequest req;
  fs::path target;
  if (kind == "agent") {
    if (host_id.empty()) {
      io.err << "bulkhead pki issue agent: --host-id: required\n";
      return kUsage;
    }
    req = CertRequest{.kind = PeerKind::kAgent, .name = host_id};
    target = out.empty() ? fs::path(dir) / "agents" / host_id : fs::path(out);
  } else if (kind == "operator") {
    if (name.empty()) {
      io.err << "bulkhead pki issue operator: --name: required\n";
      return kUsage;
    }
    auto role = parseRole(role_text);
    if (!role.ok()) {
      io.err << "bulkhead pki issue operator: --" << role.status().message() << "\n";
      return kUsage;
    }
    req = CertRequest{.kind = PeerKind::kOperator, .name = name, .role = *role};
    target = out.empty() ? fs::path(dir) / "operators" / name : fs::path(out);
  } else if (kind == "controller") {
    // A new certificate for the same controller (rotation): the name of `pki init`, and the
    // IP addresses given or else those of the certificate it replaces.
    req = CertRequest{.kind = PeerKind::kController, .name = pkiControllerName(dir)};
    target = out.empty() ? fs::path(dir) / "controller" : fs::path(out);
    for (const auto& ip : controller_ips) {
      unsigned char buf[16];
      if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) {
        io.err << "bulkhead pki issue controller: --controller-ip: invalid value \"" << ip
               << "\": not an IPv4 or IPv6 address\n";
        return kUsage;
      }
    }
    req.ip_addresses = controller_ips;
    if (controller_ips.empty()) {
      if (auto old = readFile(target / "tls.crt"); old.ok()) {
        if (auto ips = certificateIpAddresses(*old); ips.ok()) req.ip_addresses = *ips;
      }
    }
  } else {
    io.err << "bulkhead pki issue: invalid kind \"" << kind
           << "\": expected agent, operator or controller\n";
    return kUsage;
  }
  auto validity =
      parseValidity(valid_for, kind == "operator" ? std::chrono::seconds(kOperatorValidity)
                                                  : std::chrono::seconds(kServerValidity));
  if (!validity.ok()) {
    io.err << "bulkhead pki issue " << kind << ": " << validity.status().message() << "\n";
    return kUsage;
  }
  req.validity = *validity;
  if (kind == "controller" && !isValidDnsName(req.name)) {
    io.err << "bulkhead pki issue controller: --dir: " << dir
           << " names no controller (no ca/controller-name and no controller/tls.crt; made by "
              "`bulkhead pki init`?)\n";
    return kUsage;
  }
  if (kind != "controller" && !isValidName(req.name)) {
    io.err << "bulkhead pki issue " << kind << ": " << (kind == "agent" ? "--host-id" : "--name")
           << ": invalid value \"" << req.name
           << "\": use 1-63 characters of [A-Za-z0-9._-], not starting with '.' or '-'\n";
    return kUsage;
  }
  auto ca = loadCa(dir);
  if (!ca.ok()) {
    io.err << "bulkhead pki issue " << kind << ": " << ca.status().message() << "\n";
    return kUsage;
  }
  auto leaf = issueCert(*ca, req);
  if (!leaf.ok()) {
    io.err << "bulkhead pki issue " << kind << ": " << leaf.status().message() << "\n";
    return kFailed;
  }
  if (auto s = writeIdentity(target, ca->cert_pem, leaf->cert_pem, leaf->key_pem, replace);
      !s.ok()) {
    io.err << "bulkhead pki issue " << kind << ": " << s.message()
           << (s.code() == absl::StatusCode::kAlreadyExists ? " (--replace rotates it)" : "")
           << "\n";
    return kUsage;
  }
  absl::Status s = writeControllerName(target, pkiControllerName(dir));
  if (s.ok()) s = recordIssued(dir, leaf->cert_pem);
  if (!s.ok()) {
    io.err << "bulkhead pki issue " << kind << ": " << s.message() << "\n";
    return kFailed;
  }
  report(g, io, kind, target, req.name, leaf->cert_pem);
  return kOk;
}

// A certificate `pki revoke` can name.
struct IssuedCert {
  PeerIdentity id;
  std::string source;  // file it was read from
};

// Every certificate issued from the PKI at `root`: the copies under ca/issued, plus the
// identities in the standard layout (PKIs made before ca/issued existed). Keyed by serial.
std::map<std::string, IssuedCert> issuedCerts(const fs::path& root) {
  std::map<std::string, IssuedCert> out;
  auto add = [&](const fs::path& file) {
    auto pem = readFile(file);
    if (!pem.ok()) return;
    auto id = identityFromCertPem(*pem);
    if (id.ok() && !id->serial.empty()) out.try_emplace(id->serial, IssuedCert{*id, file.string()});
  };
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root / "ca" / "issued", ec)) add(e.path());
  add(root / "controller" / "tls.crt");
  for (const char* sub : {"agents", "operators"}) {
    for (const auto& e : fs::directory_iterator(root / sub, ec)) add(e.path() / "tls.crt");
  }
  return out;
}

// DIR/ca/revoked.json: [{"serial", "kind", "name", "reason", "revoked_at_unix"}...].
absl::StatusOr<nlohmann::json> loadRevoked(const fs::path& root) {
  const fs::path path = root / "ca" / "revoked.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return nlohmann::json::array();
  auto text = readFile(path);
  if (!text.ok()) return text.status();
  auto doc = nlohmann::json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_array()) {
    return absl::InvalidArgumentError(
        fmt::format("{} is not a JSON array; fix or remove it", path.string()));
  }
  for (const auto& e : doc) {
    if (!e.is_object() || !e.contains("serial") || !e["serial"].is_string() ||
        !e.contains("revoked_at_unix") || !e["revoked_at_unix"].is_number_integer()) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: an entry without a string \"serial\" and an integer \"revoked_at_unix\"",
          path.string()));
    }
  }
  return doc;
}

int pkiRevoke(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string dir;
  std::string serial_text;
  std::string name;
  std::string kind_text;
  std::string reason;
  std::string controller_issued;
  po::options_description opts("pki revoke");
  opts.add_options()("dir", po::value(&dir)->required(), "PKI directory made by pki init")(
      "serial", po::value(&serial_text), "revoke the certificate with this serial (hex)")(
      "name", po::value(&name),
      "revoke every unrevoked certificate of this host id or operator name")(
      "kind", po::value(&kind_text), "with --name: only agent or operator certificates")(
      "issued-by-controller", po::value(&controller_issued),
      "with --serial: the certificate of this host id (or, with --kind operator, operator "
      "name) that the controller issued (an enrollment or a renewal: its serial is in "
      "`bulkhead audit`), not this directory")("reason", po::value(&reason)->required(),
                                               "why (kept in DIR/ca/revoked.json)");
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("pki revoke", args, opts, {}, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto usage = [&](const std::string& message) {
    io.err << "bulkhead pki revoke: " << message << "\n";
    return kUsage;
  };
  if (serial_text.empty() == name.empty()) return usage("give exactly one of --serial or --name");
  if (reason.empty()) return usage("--reason: must not be empty");
  std::optional<PeerKind> kind;
  if (!kind_text.empty()) {
    if (kind_text == "agent") {
      kind = PeerKind::kAgent;
    } else if (kind_text == "operator") {
      kind = PeerKind::kOperator;
    } else {
      return usage(fmt::format("--kind: invalid value \"{}\": expected agent or operator",
                               kind_text));
    }
    if (name.empty() && controller_issued.empty()) {
      return usage("--kind: only with --name or --issued-by-controller");
    }
  }
  if (!controller_issued.empty()) {
    if (serial_text.empty()) return usage("--issued-by-controller: only with --serial");
    const bool is_operator = kind == PeerKind::kOperator;
    if (is_operator ? !isValidOperatorName(controller_issued) : !isValidName(controller_issued)) {
      return usage(fmt::format("--issued-by-controller: invalid value \"{}\": {}",
                               controller_issued,
                               is_operator ? "an operator name (NAME or NAME@TENANT)"
                                           : "a host id (an operator's: add --kind operator)"));
    }
  }
  const fs::path root(dir);
  auto ca = loadCa(root);
  if (!ca.ok()) return usage(std::string(ca.status().message()));
  auto revoked = loadRevoked(root);
  if (!revoked.ok()) return usage(std::string(revoked.status().message()));
  std::set<std::string> already;
  for (const auto& e : *revoked) already.insert(e["serial"].get<std::string>());
  const auto issued = issuedCerts(root);

  std::vector<const IssuedCert*> chosen;
  IssuedCert by_controller;  // --issued-by-controller: known only by its serial and host id
  if (!serial_text.empty()) {
    auto serial = normalizeSerial(serial_text);
    if (!serial.ok()) return usage(fmt::format("--{}", serial.status().message()));
    auto it = issued.find(*serial);
    if (it != issued.end()) {
      chosen.push_back(&it->second);
    } else if (!controller_issued.empty()) {
      by_controller.id.kind = kind.value_or(PeerKind::kAgent);
      by_controller.id.name = controller_issued;
      by_controller.id.serial = *serial;
      by_controller.source = "the controller";
      chosen.push_back(&by_controller);
    } else {
      return usage(fmt::format(
          "--serial: no certificate with serial {} was issued from {} (one the controller "
          "issued, by enrollment or renewal: add --issued-by-controller HOST_ID)",
          *serial, dir));
    }
    if (already.count(*serial) != 0) {
      return usage(fmt::format("--serial: {} ({} \"{}\") is already revoked", *serial,
                               peerKindName(chosen[0]->id.kind), chosen[0]->id.name));
    }
  } else {
    bool known = false;
    for (const auto& [serial, cert] : issued) {
      if (cert.id.name != name || cert.id.kind == PeerKind::kController) continue;
      if (kind && cert.id.kind != *kind) continue;
      known = true;
      if (already.count(serial) == 0) chosen.push_back(&cert);
    }
    if (!known) {
      return usage(fmt::format("--name: no {}certificate named \"{}\" was issued from {}",
                               kind ? fmt::format("{} ", peerKindName(*kind)) : "", name, dir));
    }
    if (chosen.empty()) {
      return usage(fmt::format("--name: every certificate of \"{}\" is already revoked", name));
    }
  }

  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  nlohmann::json list = *revoked;
  for (const IssuedCert* c : chosen) {
    list.push_back({{"serial", c->id.serial},
                    {"kind", std::string(peerKindName(c->id.kind))},
                    {"name", c->id.name},
                    {"reason", reason},
                    {"revoked_at_unix", now}});
  }
  std::vector<RevokedCert> entries;
  for (const auto& e : list) {
    entries.push_back({e["serial"].get<std::string>(), e["revoked_at_unix"].get<int64_t>()});
  }
  auto crl = createCrl(*ca, entries, now, kCrlValidity);
  if (!crl.ok()) {
    io.err << "bulkhead pki revoke: " << crl.status().message() << "\n";
    return kFailed;
  }
  // The CRL is written before the record, so a failure in between leaves nothing revoked
  // silently: revoked.json only ever lists what a CRL on disk already holds.
  std::vector<fs::path> crl_files = {root / "ca" / "crl.pem"};
  std::error_code ec;
  if (fs::is_directory(root / "controller", ec)) {
    crl_files.push_back(root / "controller" / "crl.pem");
  }
  for (const auto& file : crl_files) {
    if (auto s = writeFileAtomic(file, *crl, 0644); !s.ok()) {
      io.err << "bulkhead pki revoke: " << s.message() << "\n";
      return kFailed;
    }
  }
  if (auto s = writeFileAtomic(root / "ca" / "revoked.json", list.dump(2) + "\n", 0644); !s.ok()) {
    io.err << "bulkhead pki revoke: " << s.message() << "\n";
    return kFailed;
  }
  if (g.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const IssuedCert* c : chosen) {
      out.push_back({{"serial", c->id.serial},
                     {"kind", std::string(peerKindName(c->id.kind))},
                     {"name", c->id.name}});
    }
    printJson(io.out, nlohmann::json{
                          {"revoked", out}, {"reason", reason}, {"crl", (root / "ca" / "crl.pem").string()}});
  } else {
    for (const IssuedCert* c : chosen) {
      io.out << "revoked " << peerKindName(c->id.kind) << " " << c->id.name << " (serial "
             << c->id.serial << ")\n";
    }
    io.out << "CRL with " << entries.size() << " entries written to "
           << (root / "ca" / "crl.pem").string()
           << (crl_files.size() > 1 ? " and " + crl_files[1].string() : std::string())
           << "; send the controller SIGHUP to apply it (copy crl.pem into its --identity "
              "directory first if it runs elsewhere)\n";
  }
  return kOk;
}

}  // namespace

void addPkiCommands(std::map<std::string, CommandInfo>& table) {
  table["pki init"] = {"create a fleet CA, the controller identity and an admin operator",
                       pkiInit};
  table["pki issue"] = {"issue an agent (--host-id) or operator (--name --role) identity",
                        pkiIssue};
  table["pki revoke"] = {"revoke a certificate (--serial or --name) into the CRL the controller "
                         "reads on SIGHUP",
                         pkiRevoke};
}

}  // namespace bulkhead::cli
