#include "agent/daemon/enroll_command.h"

#include <unistd.h>

#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>

#include "common/certificate.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/join_token.h"
#include "common/parse.h"
#include "common/pki/pki.h"
#include "common/tls/enrollment_client.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {
namespace {

namespace po = boost::program_options;
namespace fs = std::filesystem;

constexpr int kEnrolled = 0;
constexpr int kRefused = 1;
constexpr int kUsage = 2;

// This machine's host name up to its first dot.
std::string shortHostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return {};
  std::string s(name);
  return s.substr(0, s.find('.'));
}

}  // namespace

int enrollMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::string token_text, token_file, host_id, identity = "/etc/bulkhead/identity", timeout = "30s";
  po::options_description opts(
      "Usage: bulkhead-agent enroll --token TOKEN [--host-id ID] [--identity DIR]");
  opts.add_options()("help,h", "this help")("token", po::value(&token_text),
                                            "the join token `bulkhead tokens create` printed")(
      "token-file", po::value(&token_file),
      "read the token from this file instead (keeps it out of the process list)")(
      "host-id", po::value(&host_id),
      "this host's id on the controller (default: the host name up to its first dot)")(
      "identity", po::value(&identity),
      "where to write ca.crt, tls.crt, tls.key (default /etc/bulkhead/identity)")(
      "timeout", po::value(&timeout), "how long to wait for the controller (default 30s)");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    err << "bulkhead-agent enroll: " << e.what() << "\n";
    return kUsage;
  }
  if (vm.count("help")) {
    out << opts;
    return kEnrolled;
  }
  auto usage = [&](const std::string& message) {
    err << "bulkhead-agent enroll: " << message << "\n";
    return kUsage;
  };
  if (token_text.empty() == token_file.empty()) {
    return usage("name the token with exactly one of --token and --token-file");
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in) return usage(fmt::format("--token-file: cannot read {}", token_file));
    std::stringstream text;
    text << in.rdbuf();
    token_text = text.str();
  }
  auto token = parseJoinToken(token_text);
  if (!token.ok()) return usage(std::string(token.status().message()));
  if (host_id.empty()) host_id = shortHostname();
  if (!isValidName(host_id)) {
    return usage(fmt::format(
        "--host-id: invalid value \"{}\": use 1-63 characters of [A-Za-z0-9._-], not starting "
        "with '.' or '-'",
        host_id));
  }
  auto wait = parseDuration("--timeout", timeout);
  if (!wait.ok()) return usage(std::string(wait.status().message()));
  const fs::path dir(identity);
  std::error_code ec;
  if (fs::exists(dir / "tls.key", ec) || fs::exists(dir / "tls.crt", ec)) {
    err << fmt::format(
        "bulkhead-agent enroll: {} already holds an identity (tls.crt, tls.key): nothing "
        "written; choose another --identity, or remove the old one first\n",
        dir.string());
    return kRefused;
  }

  auto request = createKeyAndCsr(host_id);
  if (!request.ok()) {
    err << "bulkhead-agent enroll: " << request.status().message() << "\n";
    return kRefused;
  }
  auto answer = enrollWithToken(*token, host_id, request->csr_pem, *wait);
  if (!answer.ok()) {
    err << "bulkhead-agent enroll: refused, nothing written: " << answer.status().message() << "\n";
    return kRefused;
  }
  if (auto s = checkIdentityFiles(answer->ca_pem(), answer->cert_pem(), request->key_pem);
      !s.ok()) {
    err << "bulkhead-agent enroll: the controller's certificate does not check out, nothing "
           "written: "
        << s.message() << "\n";
    return kRefused;
  }
  auto issued = identityFromCertPem(answer->cert_pem());
  if (!issued.ok() || issued->kind != PeerKind::kAgent || issued->name != host_id) {
    err << "bulkhead-agent enroll: the controller issued a certificate for another identity, "
           "nothing written\n";
    return kRefused;
  }
  if (auto s = writeIdentity(dir, answer->ca_pem(), answer->cert_pem(), request->key_pem, false);
      !s.ok()) {
    err << "bulkhead-agent enroll: " << s.message() << "\n";
    return kRefused;
  }
  if (auto s = writeFileAtomic(dir / kControllerNameFile, answer->controller_name() + "\n", 0644);
      !s.ok()) {
    err << "bulkhead-agent enroll: " << s.message() << "\n";
    return kRefused;
  }
  const std::string labels = labelsText(Labels(answer->labels().begin(), answer->labels().end()));
  const std::string controller =
      answer->controller_addresses().empty() ? "ADDR:PORT" : answer->controller_addresses(0);
  out << fmt::format(
      "enrolled as {} (serial {}, labels {}, token {}); identity written to {}\n"
      "start the agent: bulkhead-agent --controller {} --identity {} --state-dir DIR\n"
      "(packaged: echo CONTROLLER={} >> /etc/default/bulkhead-agent; systemctl start "
      "bulkhead-agent)\n",
      host_id, issued->serial, labels.empty() ? "none" : labels, answer->token_id(), dir.string(),
      controller, dir.string(), controller);
  return kEnrolled;
}

}  // namespace bulkhead::agent
