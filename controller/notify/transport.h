// The Transport that reaches the real channels, with libcurl: Slack-compatible and generic
// webhooks by HTTPS POST, email by SMTP with STARTTLS (or TLS from the start) and
// authentication. Each send is bounded (connect and total time limits) and verifies the
// server's certificate (ca_file, or the system's CAs).
#pragma once

#include <chrono>
#include <string>

#include "controller/notify/notifier.h"

namespace bulkhead::controller::notify {

struct NetworkTransportOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds total_timeout{15000};
  std::string user_agent = "bulkhead-controller";
  std::string mail_host = "bulkhead";  // the right side of a Message-ID
};

class NetworkTransport final : public Transport {
 public:
  explicit NetworkTransport(NetworkTransportOptions options);
  // Webhook: POST of eventJson with headers Content-Type: application/json,
  // X-Bulkhead-Event (the kind), X-Bulkhead-Delivery (the event id) and X-Bulkhead-Signature
  // (webhookSignature under the channel's secret). Slack: POST of slackBody. Email: one
  // message (emailMessage) to every `to`.
  absl::Status send(const Channel& channel, const Event& event) override;

 private:
  absl::Status post(const Channel& channel, const std::string& body,
                    const std::vector<std::string>& headers);
  absl::Status mail(const Channel& channel, const Event& event);
  NetworkTransportOptions options_;
};

}  // namespace bulkhead::controller::notify
