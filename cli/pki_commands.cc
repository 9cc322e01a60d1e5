// `bulkhead pki init` and `bulkhead pki issue agent|operator`.
//
// Layout of a PKI directory:
//   DIR/ca/ca.crt, DIR/ca/ca.key (0600)       the fleet CA; keep ca.key offline when you can
//   DIR/controller/{ca.crt,tls.crt,tls.key}    --identity for bulkhead-controller
//   DIR/operators/NAME/{...}                   --identity for the CLI (init issues "admin")
//   DIR/agents/HOST_ID/{...}                   --identity for bulkhead-agent
#include <filesystem>
#include <ostream>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/cli.h"
#include "common/format.h"
#include "common/pki.h"
#include "common/tls.h"

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

void report(const GlobalOptions& g, Io& io, const std::string& what, const fs::path& dir,
            const std::string& identity) {
  if (g.json) {
    io.out << nlohmann::json{{"issued", what}, {"identity", identity}, {"dir", dir.string()}}.dump(2)
           << "\n";
  } else {
    io.out << "issued " << what << " " << identity << " in " << dir.string() << "\n";
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
  if (!parseCommandArgs("pki init", args, opts, {}, vm, io.out, io.err, &help)) {
    return help ? kOk : kUsage;
  }
  for (const auto& ip : ips) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) {
      io.err << "bulkhead pki init: --controller-ip: invalid value \"" << ip
             << "\": not an IPv4 or IPv6 address\n";
      return kUsage;
    }
  }
  if (!isValidName(controller_name) || !isValidName(admin)) {
    io.err << "bulkhead pki init: --controller-name/--admin-name: use 1-63 characters of "
              "[A-Za-z0-9._-]\n";
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
  CertRequest ctl{.kind = PeerKind::kController, .name = controller_name, .dns_names = dns,
                  .ip_addresses = ips};
  CertRequest op{.kind = PeerKind::kOperator, .name = admin, .role = Role::kAdmin};
  for (auto [req, sub] : {std::pair{&ctl, fs::path("controller")},
                          std::pair{&op, fs::path("operators") / admin}}) {
    auto leaf = issueCert(*ca, *req);
    if (!leaf.ok()) {
      io.err << "bulkhead pki init: " << leaf.status().message() << "\n";
      return kFailed;
    }
    if (auto s = writeIdentity(root / sub, ca->cert_pem, leaf->cert_pem, leaf->key_pem, false);
        !s.ok()) {
      io.err << "bulkhead pki init: " << s.message() << "\n";
      return kFailed;
    }
  }
  if (g.json) {
    io.out << nlohmann::json{{"dir", root.string()},
                             {"ca", (root / "ca").string()},
                             {"controller", (root / "controller").string()},
                             {"operator", (root / "operators" / admin).string()}}
                  .dump(2)
           << "\n";
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
  po::options_description opts("pki issue agent|operator");
  opts.add_options()
      ("kind", po::value(&kind)->required(), "agent or operator")
      ("dir", po::value(&dir)->required(), "PKI directory made by pki init")
      ("host-id", po::value(&host_id), "agent: the host id")
      ("name", po::value(&name), "operator: the operator name")
      ("role", po::value(&role_text)->default_value("responder"),
       "operator: viewer, responder or admin")
      ("out", po::value(&out), "output directory (default DIR/agents/ID or DIR/operators/NAME)");
  po::positional_options_description pos;
  pos.add("kind", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("pki issue", args, opts, pos, vm, io.out, io.err, &help)) {
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
  } else {
    io.err << "bulkhead pki issue: invalid kind \"" << kind << "\": expected agent or operator\n";
    return kUsage;
  }
  if (!isValidName(req.name)) {
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
  if (auto s = writeIdentity(target, ca->cert_pem, leaf->cert_pem, leaf->key_pem, false);
      !s.ok()) {
    io.err << "bulkhead pki issue " << kind << ": " << s.message() << "\n";
    return kUsage;
  }
  report(g, io, kind, target, req.name);
  return kOk;
}

}  // namespace

void addPkiCommands(std::map<std::string, CommandInfo>& table) {
  table["pki init"] = {"create a fleet CA, the controller identity and an admin operator",
                       pkiInit};
  table["pki issue"] = {"issue an agent (--host-id) or operator (--name --role) identity",
                        pkiIssue};
}

}  // namespace bulkhead::cli
