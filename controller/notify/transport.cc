#include "controller/notify/transport.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "common/format.h"
#include "common/text.h"

namespace bulkhead::controller::notify {

namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Curl = std::unique_ptr<CURL, CurlDeleter>;
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

void initOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Slist slistOf(const std::vector<std::string>& items) {
  curl_slist* list = nullptr;
  for (const std::string& item : items) {
    curl_slist* next = curl_slist_append(list, item.c_str());
    if (next == nullptr) break;
    list = next;
  }
  return Slist(list);
}

// The status of a transfer that did not complete: worth retrying (UNAVAILABLE) unless the
// cause is ours or the peer's for good (a bad certificate, a refused login, a bad address).
absl::Status curlFailure(CURLcode code, const char* error_buffer, std::string_view what) {
  const std::string text = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
  const std::string message = fmt::format("{}: {}", what, text);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT: return absl::DeadlineExceededError(message);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_LOGIN_DENIED:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SEND_FAIL_REWIND: return absl::FailedPreconditionError(message);
    default: return absl::UnavailableError(message);
  }
}

// Sets what every transfer shares; returns false when an option is refused.
bool common(CURL* c, const Channel& channel, const NetworkTransportOptions& options, char* error) {
  bool ok = curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error) == CURLE_OK;
  ok = ok && curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  ok = ok && curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                              static_cast<long>(options.connect_timeout.count())) == CURLE_OK;
  ok = ok && curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                              static_cast<long>(options.total_timeout.count())) == CURLE_OK;
  // Never follow a redirect (a webhook's body and signature go to the URL configured only),
  // never read the environment's proxy.
  ok = ok && curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
  ok = ok && curl_easy_setopt(c, CURLOPT_PROXY, "") == CURLE_OK;
  ok = ok && curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
  ok = ok && curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
  if (!channel.ca_file.empty()) {
    ok = ok && curl_easy_setopt(c, CURLOPT_CAINFO, channel.ca_file.c_str()) == CURLE_OK;
  }
  return ok;
}

size_t discard(char* /*data*/, size_t size, size_t count, void* /*user*/) { return size * count; }

struct Upload {
  const std::string* text;
  size_t at = 0;
};

size_t readUpload(char* buffer, size_t size, size_t count, void* user) {
  auto* up = static_cast<Upload*>(user);
  const size_t n = std::min(size * count, up->text->size() - up->at);
  std::copy_n(up->text->data() + up->at, n, buffer);
  up->at += n;
  return n;
}

}  // namespace

NetworkTransport::NetworkTransport(NetworkTransportOptions options) : options_(std::move(options)) {
  initOnce();
}

absl::Status NetworkTransport::send(const Channel& channel, const Event& event) {
  switch (channel.type) {
    case ChannelType::kSlack:
      return post(channel, slackBody(event), {"Content-Type: application/json"});
    case ChannelType::kWebhook: {
      auto secret = readSecret("secret_file", channel.secret_file);
      if (!secret.ok()) return absl::FailedPreconditionError(secret.status().message());
      const std::string body = eventJson(event);
      const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
      return post(channel, body,
                  {"Content-Type: application/json", "X-Bulkhead-Event: " + event.kind,
                   "X-Bulkhead-Delivery: " + event.id,
                   "X-Bulkhead-Signature: " + webhookSignature(*secret, now_s, body)});
    }
    case ChannelType::kEmail: return mail(channel, event);
  }
  return absl::InternalError("unknown channel type");
}

absl::Status NetworkTransport::post(const Channel& channel, const std::string& body,
                                    const std::vector<std::string>& headers) {
  Curl c(curl_easy_init());
  if (!c) return absl::ResourceExhaustedError("libcurl: cannot start a transfer");
  char error[CURL_ERROR_SIZE] = {};
  Slist list = slistOf(headers);
  const std::string agent = options_.user_agent;
  bool ok = common(c.get(), channel, options_, error);
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_URL, channel.url.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_PROTOCOLS_STR,
                              channel.allow_insecure ? "http,https" : "https") == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_POST, 1L) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, body.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE_LARGE,
                              static_cast<curl_off_t>(body.size())) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, list.get()) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_USERAGENT, agent.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &discard) == CURLE_OK;
  if (!ok) return absl::InternalError("libcurl refused an option");
  const CURLcode rc = curl_easy_perform(c.get());
  if (rc != CURLE_OK) return curlFailure(rc, error, "POST " + channel.name);
  long code = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &code);
  if (code >= 200 && code < 300) return absl::OkStatus();
  const std::string message =
      fmt::format("POST {}: the receiver answered HTTP {}", channel.name, code);
  if (code == 408 || code == 429 || code >= 500) return absl::UnavailableError(message);
  return absl::FailedPreconditionError(message);
}

absl::Status NetworkTransport::mail(const Channel& channel, const Event& event) {
  std::string password;
  if (!channel.username.empty()) {
    auto secret = readSecret("password_file", channel.password_file);
    if (!secret.ok()) return absl::FailedPreconditionError(secret.status().message());
    password = *std::move(secret);
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const std::string message =
      emailMessage(event, channel.from, channel.to, options_.mail_host, now_ms);
  Curl c(curl_easy_init());
  if (!c) return absl::ResourceExhaustedError("libcurl: cannot start a transfer");
  char error[CURL_ERROR_SIZE] = {};
  std::vector<std::string> rcpt;
  for (const std::string& to : channel.to) rcpt.push_back("<" + to + ">");
  Slist recipients = slistOf(rcpt);
  const std::string from = "<" + channel.from + ">";
  Upload upload{.text = &message};
  bool ok = common(c.get(), channel, options_, error);
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_URL, channel.smtp.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_PROTOCOLS_STR, "smtp,smtps") == CURLE_OK;
  // smtp://: STARTTLS, required unless the channel allows clear text (then used if offered).
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_USE_SSL,
                              channel.allow_insecure ? CURLUSESSL_TRY : CURLUSESSL_ALL) == CURLE_OK;
  if (!channel.username.empty()) {
    ok = ok && curl_easy_setopt(c.get(), CURLOPT_USERNAME, channel.username.c_str()) == CURLE_OK;
    ok = ok && curl_easy_setopt(c.get(), CURLOPT_PASSWORD, password.c_str()) == CURLE_OK;
  }
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_MAIL_FROM, from.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_MAIL_RCPT, recipients.get()) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_UPLOAD, 1L) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_READFUNCTION, &readUpload) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_READDATA, &upload) == CURLE_OK;
  ok = ok && curl_easy_setopt(c.get(), CURLOPT_INFILESIZE_LARGE,
                              static_cast<curl_off_t>(message.size())) == CURLE_OK;
  if (!ok) return absl::InternalError("libcurl refused an option");
  const CURLcode rc = curl_easy_perform(c.get());
  if (rc == CURLE_OK) return absl::OkStatus();
  long code = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &code);
  // An SMTP 5xx answer is for good (no such mailbox, relaying denied); 4xx is for later.
  if (code >= 500 && code < 600) {
    return absl::FailedPreconditionError(
        fmt::format("SMTP {}: the server answered {}: {}", channel.name, code,
                    error[0] != '\0' ? error : curl_easy_strerror(rc)));
  }
  return curlFailure(rc, error, "SMTP " + channel.name);
}

}  // namespace bulkhead::controller::notify
