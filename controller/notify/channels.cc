#include "controller/notify/channels.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/format.h"
#include "common/identity.h"
#include "common/text.h"
#include "common/yaml_doc.h"
#include "controller/store/store.h"

namespace bulkhead::controller::notify {

namespace {

constexpr char kExpected[] =
    "a mapping with name, type (slack, webhook or email) and the type's fields";

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::vector<std::string> scalarList(const YAML::Node& value, int line, std::string_view field,
                                    std::string_view what, YamlErrors& errors) {
  std::vector<std::string> out;
  if (value.IsScalar()) {
    out.push_back(value.Scalar());
    return out;
  }
  if (!value.IsSequence()) {
    errors.add(line, field, fmt::format("expected a list of {}, found {}", what, kindOf(value)));
    return out;
  }
  for (const YAML::Node& item : value) {
    if (auto text = scalarOf(item, lineOf(item, line), field, what, errors)) out.push_back(*text);
  }
  return out;
}

// The checks that need every field: what each type requires, and the URLs' schemes.
void checkWhole(const Channel& c, const std::set<std::string>& given, YamlErrors& errors) {
  auto require = [&](const char* field) {
    if (!given.count(field)) {
      errors.add(1, field, fmt::format("missing (required for type {})", channelTypeName(c.type)));
      return false;
    }
    return true;
  };
  auto forbid = [&](std::initializer_list<const char*> fields) {
    for (const char* f : fields) {
      if (given.count(f)) {
        errors.add(1, f, fmt::format("not a field of type {}", channelTypeName(c.type)));
      }
    }
  };
  if (!given.count("name")) errors.add(1, "name", "missing (required)");
  if (!given.count("type")) {
    errors.add(1, "type", "missing (required: slack, webhook or email)");
    return;
  }
  const std::string insecure_hint = " (allow_insecure: true permits it, for a lab)";
  if (c.type == ChannelType::kSlack || c.type == ChannelType::kWebhook) {
    if (require("url")) {
      if (startsWith(c.url, "http://")) {
        if (!c.allow_insecure) {
          errors.add(1, "url",
                     "http:// sends the events in clear text: use https://" + insecure_hint);
        }
      } else if (!startsWith(c.url, "https://")) {
        errors.add(1, "url",
                   fmt::format("\"{}\" is not an https:// URL", escapeNonPrintable(c.url)));
      }
    }
    if (c.type == ChannelType::kWebhook) {
      require("secret_file");
    } else {
      forbid({"secret_file"});
    }
    forbid({"smtp", "username", "password_file", "from", "to"});
    return;
  }
  forbid({"url", "secret_file"});
  if (require("smtp")) {
    if (startsWith(c.smtp, "smtp://")) {
      // STARTTLS is required unless allow_insecure (then used when the server offers it).
    } else if (!startsWith(c.smtp, "smtps://")) {
      errors.add(1, "smtp",
                 fmt::format("\"{}\" is not smtp://HOST[:PORT] (STARTTLS) or smtps://HOST[:PORT]",
                             escapeNonPrintable(c.smtp)));
    }
  }
  require("from");
  if (require("to") && c.to.empty()) errors.add(1, "to", "names no address");
  if (given.count("username") != given.count("password_file")) {
    errors.add(1, given.count("username") ? "password_file" : "username",
               "username and password_file go together");
  }
}

}  // namespace

std::string_view channelTypeName(ChannelType type) {
  switch (type) {
    case ChannelType::kSlack: return "slack";
    case ChannelType::kWebhook: return "webhook";
    case ChannelType::kEmail: return "email";
  }
  return "webhook";
}

bool wants(const Channel& channel, const Event& event) {
  if (event.kind == "test") return false;  // a test names its channel (the notifier's call)
  if (channel.tenant != kEveryTenant && channel.tenant != event.tenant) return false;
  if (!channel.kinds.empty() && !channel.kinds.count(event.kind)) return false;
  return event.severity >= channel.min_severity;
}

absl::StatusOr<Channel> parseChannel(std::string_view file_name, std::string_view yaml) {
  YamlErrors errors(file_name);
  Channel c;
  c.file = std::string(file_name);
  auto doc = loadOneMapping(yaml, "channel", kExpected, errors);
  if (!doc) return errors.status();
  std::set<std::string> given;
  bool bad_type = false;  // then the type's own checks would only add noise
  forEachEntry(*doc, 1, errors, [&](const std::string& key, const YAML::Node& value, int line) {
    given.insert(key);
    if (key == "kinds") {
      for (const std::string& k : scalarList(value, line, key, "event kinds", errors)) {
        const auto& known = eventKinds();
        if (std::find(known.begin(), known.end(), k) == known.end() || k == "test") {
          std::string names;
          for (const auto& n : known) {
            if (n != "test") names += (names.empty() ? "" : ", ") + n;
          }
          errors.add(
              line, key,
              fmt::format("unknown event kind \"{}\" (kinds: {})", escapeNonPrintable(k), names));
          continue;
        }
        c.kinds.insert(k);
      }
      return;
    }
    if (key == "to") {
      c.to = scalarList(value, line, key, "addresses", errors);
      for (const std::string& a : c.to) {
        if (a.find('@') == std::string::npos || a.find_first_of("\r\n<>,") != std::string::npos) {
          errors.add(line, key, fmt::format("\"{}\" is not an address", escapeNonPrintable(a)));
        }
      }
      return;
    }
    auto text = scalarOf(value, line, key, "text", errors);
    if (!text) return;
    if (key == "name") {
      if (!isValidName(*text)) {
        errors.add(line, key,
                   fmt::format("\"{}\" is not a name (1-63 of [A-Za-z0-9._-])",
                               escapeNonPrintable(*text)));
      }
      c.name = *text;
    } else if (key == "tenant") {
      if (*text != kEveryTenant && !isValidName(*text)) {
        errors.add(
            line, key,
            fmt::format("\"{}\" is not a tenant's name or \"*\"", escapeNonPrintable(*text)));
      }
      c.tenant = *text;
    } else if (key == "type") {
      if (*text == "slack") {
        c.type = ChannelType::kSlack;
      } else if (*text == "webhook") {
        c.type = ChannelType::kWebhook;
      } else if (*text == "email") {
        c.type = ChannelType::kEmail;
      } else {
        errors.add(line, key,
                   fmt::format("\"{}\" is not slack, webhook or email", escapeNonPrintable(*text)));
        bad_type = true;
      }
    } else if (key == "min_severity") {
      auto s = parseSeverity(key, *text);
      if (!s.ok()) {
        errors.add(line, s.status());
      } else {
        c.min_severity = *s;
      }
    } else if (key == "allow_insecure") {
      if (*text != "true" && *text != "false") {
        errors.add(line, key, "expected true or false");
      }
      c.allow_insecure = *text == "true";
    } else if (key == "url") {
      c.url = *text;
    } else if (key == "secret_file") {
      c.secret_file = *text;
    } else if (key == "ca_file") {
      c.ca_file = *text;
    } else if (key == "smtp") {
      c.smtp = *text;
    } else if (key == "username") {
      c.username = *text;
    } else if (key == "password_file") {
      c.password_file = *text;
    } else if (key == "from") {
      if (text->find('@') == std::string::npos ||
          text->find_first_of("\r\n<>,") != std::string::npos) {
        errors.add(line, key, fmt::format("\"{}\" is not an address", escapeNonPrintable(*text)));
      }
      c.from = *text;
    } else {
      errors.add(line, key,
                 "unknown field (expected name, tenant, type, url, secret_file, ca_file, kinds, "
                 "min_severity, smtp, username, password_file, from, to, allow_insecure)");
    }
  });
  if (!bad_type) checkWhole(c, given, errors);
  if (!errors.empty()) return errors.status();
  return c;
}

absl::StatusOr<std::vector<Channel>> loadChannelDir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return std::vector<Channel>{};
  auto files = readYamlDir(dir, "notifications");
  if (!files.ok()) return files.status();
  std::vector<std::string> errors = files->errors;
  std::vector<Channel> out;
  std::map<std::string, std::string> seen;  // name -> file
  for (const auto& [name, text] : files->files) {
    auto channel = parseChannel(name, text);
    if (!channel.ok()) {
      errors.emplace_back(channel.status().message());
      continue;
    }
    if (auto [it, fresh] = seen.emplace(channel->name, name); !fresh) {
      errors.push_back(fmt::format("{}:1: name: \"{}\" is also the channel of {}", name,
                                   channel->name, it->second));
      continue;
    }
    out.push_back(*std::move(channel));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  return out;
}

absl::StatusOr<std::string> readSecret(std::string_view field, const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(fmt::format("{}: {}: {}", field, path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(fmt::format("{}: {}: not a regular file", field, path));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return absl::PermissionDeniedError(
        fmt::format("{}: {} is open to other users (mode {:o}): it is a credential; chmod 600 it",
                    field, path, st.st_mode & 07777));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) {
    return absl::NotFoundError(fmt::format("{}: {}: cannot read", field, path));
  }
  std::string secret = text.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty())
    return absl::InvalidArgumentError(fmt::format("{}: {} is empty", field, path));
  return secret;
}

}  // namespace bulkhead::controller::notify
