#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "controller/report/pdf.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, for posix_spawnp

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;

// Removes the directory on every path out.
struct TempDir {
  fs::path path;
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

absl::StatusOr<std::string> readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("{}: cannot read", p.string()));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string tailOf(const fs::path& log) {
  auto text = readFile(log);
  if (!text.ok()) return "";
  std::string t = *text;
  if (t.size() > 400) t = t.substr(t.size() - 400);
  for (char& c : t) {
    if (c == '\n') c = ' ';
  }
  return t;
}

}  // namespace

absl::StatusOr<std::string> ChromiumPdf::render(std::string_view html) const {
  std::string tmpl = (fs::temp_directory_path() / "bulkhead-report-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(
        fmt::format("pdf: cannot make a temporary directory: {}", std::strerror(errno)));
  }
  TempDir dir{tmpl};
  const fs::path page = dir.path / "report.html";
  const fs::path pdf = dir.path / "report.pdf";
  const fs::path log = dir.path / "chromium.log";
  {
    std::ofstream out(page, std::ios::binary);
    out.write(html.data(), static_cast<std::streamsize>(html.size()));
    if (!out) return absl::InternalError("pdf: cannot write the HTML to print");
  }
  std::vector<std::string> args = {
      program_,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--disable-background-networking",
      "--proxy-server=127.0.0.1:9",
      "--no-pdf-header-footer",
      fmt::format("--user-data-dir={}", (dir.path / "profile").string()),
      fmt::format("--print-to-pdf={}", pdf.string()),
      fmt::format("file://{}", page.string())};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, program_.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    if (rc == ENOENT) {
      return absl::FailedPreconditionError(fmt::format(
          "pdf: \"{}\" is not installed on the controller's machine (apt-get install chromium); "
          "html, md and json need nothing",
          program_));
    }
    return absl::InternalError(
        fmt::format("pdf: cannot start {}: {}", program_, std::strerror(rc)));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      return absl::InternalError(
          fmt::format("pdf: waiting for {}: {}", program_, std::strerror(errno)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(
          fmt::format("pdf: {} did not finish within {} s", program_, timeout_.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        fmt::format("pdf: {} failed (status {}): {}", program_, status, tailOf(log)));
  }
  auto bytes = readFile(pdf);
  if (!bytes.ok() || !bytes->starts_with("%PDF-")) {
    return absl::InternalError(fmt::format("pdf: {} wrote no PDF: {}", program_, tailOf(log)));
  }
  return bytes;
}

}  // namespace bulkhead::controller
