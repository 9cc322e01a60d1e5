// Business-continuity exemption sets: the YAML files in policies/ (schema in
// policies/README.md), their parser, the directory loader, and resolution to IP-literal
// ExemptionRule protos for the agent.
//
// parsePolicy() and buildPolicyLibrary() are pure (strings in, values out). loadPolicyDir()
// is the only function here that reads files; GetaddrinfoResolver the only one that touches
// the network (DNS).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/containment.pb.h"
#include "common/parse.h"

namespace bulkhead {

// One rule as written in a policy file.
struct PolicyRule {
  bulkhead::v1::Direction direction = bulkhead::v1::DIRECTION_UNSPECIFIED;  // IN or OUT
  bulkhead::v1::Protocol protocol = bulkhead::v1::PROTOCOL_ANY;
  std::string remote;               // as written: a CIDR/address literal or a DNS name
  std::optional<Cidr> remote_cidr;  // set when `remote` is a literal; unset for a DNS name
  uint16_t port_first = 0;          // 0, 0 = any port
  uint16_t port_last = 0;
  int line = 0;  // 1-based line of the rule in its file
};

// One exemption set (one file).
struct ExemptionSet {
  std::string name;  // [a-z0-9-]{1,63}, unique across a directory
  std::string description;
  // Automatic attachment: a set whose selector matches a host's labels is kept whenever that
  // host is isolated (unless the operator says --no-default-exemptions). `all_hosts` is the
  // selector "*": every host.
  std::optional<Labels> selector;
  bool all_hosts = false;
  std::vector<PolicyRule> rules;  // never empty
  std::string file;               // file name the set came from, for messages
  int name_line = 1;              // 1-based line of the `name` field
};

// All sets of a policy directory, by name.
struct PolicyLibrary {
  std::map<std::string, ExemptionSet> sets;
  const ExemptionSet* find(const std::string& name) const;
};

// Parses one policy file. On failure the status (InvalidArgument) carries one line per
// problem, each "FILE:LINE: field: problem", with FILE = `file_name` and LINE 1-based.
absl::StatusOr<ExemptionSet> parsePolicy(std::string_view file_name, std::string_view yaml);

// Parses several files (name, content) into one library: every file's errors, plus one error
// per duplicate set name ("FILE:LINE: name: duplicate set \"x\", first defined in OTHER:LINE").
// Pure: loadPolicyDir() is this plus reading the directory.
absl::StatusOr<PolicyLibrary> buildPolicyLibrary(
    const std::vector<std::pair<std::string, std::string>>& files);

// Reads every *.yaml / *.yml regular file directly in `dir` (not recursive; names starting
// with '.' are skipped), in name order, and builds the library. Errors are collected, one per
// line, with file names relative to `dir`. An empty directory gives an empty library; a
// missing or unreadable directory is an error naming the path.
absl::StatusOr<PolicyLibrary> loadPolicyDir(const std::string& dir);

// Sets attached automatically to a host with `host_labels` (selector match or "*"), by name.
std::vector<const ExemptionSet*> defaultSetsFor(const PolicyLibrary& library,
                                                const Labels& host_labels);

// The sets to keep when isolating a host: the defaults for its labels (unless
// `include_defaults` is false) plus the `requested` names, deduplicated, by name. An unknown
// requested name is an error naming it ("exempt: unknown exemption set \"x\" (known: ...)").
absl::StatusOr<std::vector<const ExemptionSet*>> selectSets(
    const PolicyLibrary& library, const Labels& host_labels,
    const std::vector<std::string>& requested, bool include_defaults);

// Turns DNS names into IP literals. Implementations may block; the controller calls this only
// on its DNS thread (controller/service/name_cache.h), never on the containment thread.
class NameResolver {
 public:
  virtual ~NameResolver() = default;
  // All addresses (IPv4 and IPv6 literals, no prefix) for `name`; an error if none.
  virtual absl::StatusOr<std::vector<std::string>> resolve(const std::string& name) = 0;
};

// Resolves with resolveHost (common/resolve.h); addresses in ascending text order.
class GetaddrinfoResolver : public NameResolver {
 public:
  absl::StatusOr<std::vector<std::string>> resolve(const std::string& name) override;
};

// The IP-literal rules for `sets`, in set order then rule order, exact duplicates removed.
// A literal remote becomes one rule with its canonical CIDR; a name becomes one rule per
// resolved address (/32 or /128). Each rule carries its set's name. Errors (a name that does
// not resolve, or resolves to something that is not an IP literal) are collected, one per
// line, each naming the set and the name.
absl::StatusOr<std::vector<bulkhead::v1::ExemptionRule>> resolveExemptions(
    const std::vector<const ExemptionSet*>& sets, NameResolver& resolver);

}  // namespace bulkhead
