#include "common/identity.h"

#include <cctype>
#include <ctime>
#include <memory>

#include "absl/status/status.h"
#include "common/format.h"

namespace bulkhead {

std::string_view peerKindName(PeerKind kind) {
  switch (kind) {
    case PeerKind::kController: return "controller";
    case PeerKind::kAgent: return "agent";
    case PeerKind::kOperator: return "operator";
  }
  return "unknown";
}

absl::StatusOr<Role> parseRole(std::string_view text) {
  if (text == "none") return Role::kNone;
  if (text == "viewer") return Role::kViewer;
  if (text == "responder") return Role::kResponder;
  if (text == "approver") return Role::kApprover;
  if (text == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(fmt::format(
      "role: invalid value \"{}\": expected none, viewer, responder, approver or admin", text));
}

std::string_view roleName(Role role) {
  switch (role) {
    case Role::kNone: return "none";
    case Role::kViewer: return "viewer";
    case Role::kResponder: return "responder";
    case Role::kApprover: return "approver";
    case Role::kAdmin: return "admin";
  }
  return "unknown";
}

bool isValidName(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '.' || name.front() == '-') {
    return false;
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

bool isValidOperatorName(std::string_view name) {
  const size_t at = name.find('@');
  if (at == std::string_view::npos) return isValidName(name);
  return name.size() <= 64 && isValidName(name.substr(0, at)) && isValidName(name.substr(at + 1));
}

std::string operatorNameInTenant(std::string_view name, std::string_view tenant) {
  if (tenant == kDefaultTenant) return std::string(name);
  return std::string(name) + "@" + std::string(tenant);
}

bool isValidDnsName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    start = end + 1;
  }
  return true;
}

}  // namespace bulkhead
