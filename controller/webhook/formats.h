// Webhook payloads to signals: Alertmanager's webhook (version 4), Falcosidekick's webhook
// output, and a generic JSON format read through a field mapping (Kibana, Splunk, Sentinel).
// Pure: bytes in, signals or one error out; no I/O (the listener is listener.h).
//
// Every decoder is all-or-nothing: it returns every signal of the request, each already
// checked by validateSignal (controller/playbook/engine.h), or INVALID_ARGUMENT whose message
// is one line naming the offending field ("alerts[2].labels.alertname: required"); then no
// signal may be submitted.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/signals.pb.h"

namespace bulkhead::controller::webhook {

enum class Format { kAlertmanager, kFalco, kGeneric };

// "alertmanager", "falco" or "generic"; INVALID_ARGUMENT "format: ..." otherwise.
absl::StatusOr<Format> parseFormat(std::string_view text);
std::string_view formatName(Format format);

// Where a generic payload keeps each field: a JSON pointer ("/alert/rule") or a dotted path
// ("alert.rule", "results.0.src"). Empty: the field is not in the payload.
struct GenericMapping {
  // An array whose elements are the signals (other paths are then relative to each element);
  // empty: the whole body is one signal.
  std::string items;
  std::string rule;       // required
  std::string severity;   // a severity name or a number 1-5 (info..critical)
  std::string addresses;  // a string or an array of strings
  std::string host;
  std::string idempotency_key;  // a string or a number
  std::string resolved;         // true/false, or a string equal to `resolved_value`
  std::string resolved_value = "resolved";
  std::string ttl_seconds;                    // a number
  std::map<std::string, std::string> labels;  // label name -> path (strings, numbers, bools)
};

// An integration's options (Integration.config_json), by format:
//   alertmanager: {"host_labels": [...], "address_labels": [...]}
//   falco:        {"address_fields": [...]}
//   generic:      {"items": P, "rule": P, "severity": P, "addresses": P, "host": P,
//                  "idempotency_key": P, "resolved": P, "resolved_value": S,
//                  "ttl_seconds": P, "labels": {NAME: P}}   ("rule" required)
struct FormatConfig {
  Format format = Format::kAlertmanager;
  // Alertmanager: the first of these labels present names the affected host; "instance" is
  // read as HOST:PORT and gives its host part.
  std::vector<std::string> host_labels = {"host", "hostname", "instance"};
  // Alertmanager: the first of these labels present holds the offending address(es),
  // comma-separated.
  std::vector<std::string> address_labels = {"address", "src_ip", "source_ip", "ip"};
  // Falcosidekick: the first of these output fields present is the offending address (the
  // remote end of the connection, then its client end).
  std::vector<std::string> address_fields = {"fd.rip", "fd.cip"};
  GenericMapping mapping;
};

// Reads `config_json` (empty: the defaults) for `format`; INVALID_ARGUMENT naming the key
// for an unknown key, a wrong type or (generic) a missing "rule".
absl::StatusOr<FormatConfig> parseFormatConfig(Format format, std::string_view config_json);

// The most signals one request may carry.
inline constexpr size_t kMaxSignalsPerRequest = 1000;

// Decodes `body` (JSON) into its signals, each with `integration` set and payload_sha256 the
// SHA-256 of the whole body.
absl::StatusOr<std::vector<bulkhead::v1::Signal>> decode(const FormatConfig& config,
                                                         const std::string& integration,
                                                         std::string_view body);

}  // namespace bulkhead::controller::webhook
