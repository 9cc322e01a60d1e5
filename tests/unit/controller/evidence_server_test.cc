// Evidence through the real server: Capture -> Command.capture on the agent's stream ->
// progress -> UploadEvidence (chunks) -> receipt -> CommandResult -> done event with the stored
// record; verify, get (recorded in custody), list; a >64 MiB upload streamed and stored; bad
// uploads (sha mismatch, unknown or foreign capture, oversize) refused with nothing stored;
// bad capture requests; timeout with a late upload still stored.
#include <fstream>
#include <iostream>
#include <random>
#include <set>

#include "cli/cli.h"
#include "common/tls/tls.h"
#include "controller/rpc/audit.h"
#include "controller/store/evidence_files.h"
#include "evidence/bundle.h"
#include "evidence/signing.h"
#include "tests/unit/controller/server_harness.h"

namespace bulkhead::controller {
namespace {

using namespace bulkhead::controller::testing;
namespace v1 = bulkhead::v1;

constexpr auto kLongWait = std::chrono::seconds(90);  // the large upload on a loaded machine

class EvidenceServerTest : public ServerTest {
 protected:
  void configure(ServerOptions& o) override {
    o.evidence = limits_;
    o.evidence.dir = dir_ / "evidence";
    o.evidence.ca_pem = controller_id_.ca_pem;
    o.evidence.max_bytes = 100 << 20;
  }
  // Limits for the next startServer().
  EvidenceOptions limits_;

  struct CaptureCall {
    grpc::Status status;
    std::vector<v1::CaptureEvent> events;
  };
  std::future<CaptureCall> captureAsync(v1::CaptureRequest req, Role role = Role::kResponder) {
    return std::async(std::launch::async, [this, req, role] {
      auto stub = op(role, "rita");
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kLongWait);
      CaptureCall c;
      auto reader = stub->Capture(&ctx, req);
      v1::CaptureEvent e;
      while (reader->Read(&e)) c.events.push_back(e);
      c.status = reader->Finish();
      return c;
    });
  }
  static CaptureCall get(std::future<CaptureCall>& f) {
    EXPECT_EQ(f.wait_for(kLongWait), std::future_status::ready);
    return f.get();
  }
  static v1::CaptureRequest captureReq(const std::string& host,
                                       const std::string& reason = "INC-42") {
    v1::CaptureRequest r;
    r.set_host(host);
    r.set_reason(reason);
    r.set_wait_ms(60000);
    return r;
  }

  struct Upload {
    grpc::Status status;
    v1::EvidenceReceipt receipt;
  };
  // Uploads `file` as host `host` with `header` (size and sha256 filled in from the file unless
  // set), in chunks of `chunk` bytes read one at a time.
  Upload upload(
      const std::string& host, v1::EvidenceHeader header, const fs::path& file,
      size_t chunk = 1 << 20,
      std::chrono::seconds wait = std::chrono::duration_cast<std::chrono::seconds>(kLongWait)) {
    if (header.size() == 0) header.set_size(fs::file_size(file));
    if (header.sha256().empty()) header.set_sha256(*sha256OfFile(file));
    auto stub = v1::AgentChannel::NewStub(channel(pki_.identity(PeerKind::kAgent, host)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + wait);
    Upload u;
    auto writer = stub->UploadEvidence(&ctx, &u.receipt);
    v1::EvidenceUpload m;
    *m.mutable_header() = header;
    bool ok = writer->Write(m);
    std::ifstream in(file, std::ios::binary);
    std::string buf(chunk, '\0');
    while (ok && in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      if (in.gcount() == 0) break;
      m.set_data(buf.data(), static_cast<size_t>(in.gcount()));
      ok = writer->Write(m);
    }
    writer->WritesDone();
    u.status = writer->Finish();
    return u;
  }
  // A signed bundle of capture `capture_id` from `host`, as the agent writes it.
  fs::path bundle(const std::string& host, const std::string& capture_id) {
    fs::path out = dir_ / (capture_id + ".tar.gz");
    nlohmann::json fields = {{"capture_id", capture_id},
                             {"host_id", host},
                             {"requested_by", "rita"},
                             {"reason", "INC-42"},
                             {"started_at_unix_ms", 1700000000100},
                             {"finished_at_unix_ms", 1700000000900},
                             {"clock_offset_ms", 12}};
    auto w = evidence::BundleWriter::create(out, capture_id, fields);
    EXPECT_TRUE(w.ok()) << w.status();
    if (!w.ok()) return out;
    EXPECT_TRUE((*w)->addBytes("metadata.json", R"({"host_id":"h1"})").ok());
    EXPECT_TRUE((*w)->addBytes("artifacts/processes.jsonl", R"({"pid":1,"comm":"init"})"
                                                            "\n")
                    .ok());
    EXPECT_TRUE((*w)->addBytes("collection-log.jsonl", R"({"collector":"processes","status":"ok"})"
                                                       "\n")
                    .ok());
    auto id = pki_.identity(PeerKind::kAgent, host);
    auto signer = evidence::Signer::fromPem(id.key_pem, id.cert_pem);
    EXPECT_TRUE(signer.ok()) << signer.status();
    auto r = (*w)->finish(*signer);
    EXPECT_TRUE(r.ok()) << r.status();
    return out;
  }
  // `size` random bytes, written in 1 MiB pieces.
  fs::path randomFile(const std::string& name, size_t size) {
    fs::path out = dir_ / name;
    std::ofstream f(out, std::ios::binary);
    std::mt19937_64 rng(42);
    std::string buf(1 << 20, '\0');
    for (size_t done = 0; done < size;) {
      for (size_t i = 0; i + 8 <= buf.size(); i += 8) {
        uint64_t v = rng();
        std::memcpy(buf.data() + i, &v, 8);
      }
      size_t n = std::min(buf.size(), size - done);
      f.write(buf.data(), static_cast<std::streamsize>(n));
      done += n;
    }
    return out;
  }
  static void answer(FakeAgent& a, const v1::Command& c, bool ok, const std::string& error = "") {
    v1::AgentMessage m;
    auto* r = m.mutable_command_result();
    r->set_command_id(c.id());
    r->set_ok(ok);
    r->set_error(error);
    r->mutable_capture()->set_capture_id(c.capture().capture_id());
    ASSERT_TRUE(a.write(m));
  }
  // The agent's side of a capture: progress, upload of `file`, result.
  Upload serveCapture(FakeAgent& a, const std::string& host, const fs::path* file = nullptr) {
    v1::Command c = nextCommand(a);
    EXPECT_TRUE(c.has_capture());
    v1::AgentMessage p;
    p.mutable_progress()->set_command_id(c.id());
    p.mutable_progress()->set_capture_stage(v1::CAPTURE_STAGE_COLLECTING);
    p.mutable_progress()->set_done(1);
    p.mutable_progress()->set_total(20);
    EXPECT_TRUE(a.write(p));
    fs::path f = file != nullptr ? *file : bundle(host, c.capture().capture_id());
    v1::EvidenceHeader h;
    h.set_capture_id(c.capture().capture_id());
    h.set_command_id(c.id());
    h.set_file_name(c.capture().capture_id() + ".tar.gz");
    Upload u = upload(host, h, f, 64 << 10);
    EXPECT_TRUE(u.status.ok()) << u.status.error_message();
    answer(a, c, u.status.ok());
    return u;
  }
  // A finished capture of `host`: its done record.
  v1::EvidenceRecord captureOnce(FakeAgent& a, const std::string& host) {
    auto f = captureAsync(captureReq(host));
    serveCapture(a, host);
    CaptureCall r = get(f);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    if (r.events.empty() || !r.events.back().has_done()) return {};
    return r.events.back().done();
  }
  v1::VerifyEvidenceResponse verify(const std::string& id, grpc::Status* status = nullptr) {
    auto stub = op(Role::kViewer, "vera");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kLongWait);
    v1::VerifyEvidenceRequest req;
    req.set_id(id);
    v1::VerifyEvidenceResponse resp;
    grpc::Status s = stub->VerifyEvidence(&ctx, req, &resp);
    if (status != nullptr)
      *status = s;
    else
      EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  struct Download {
    grpc::Status status;
    v1::EvidenceRecord record;
    std::string data;
    size_t largest_chunk = 0;
  };
  Download download(const std::string& id, Role role = Role::kResponder) {
    auto stub = op(role, "gina");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kLongWait);
    v1::GetEvidenceRequest req;
    req.set_id(id);
    Download d;
    auto reader = stub->GetEvidence(&ctx, req);
    v1::EvidenceDownload m;
    while (reader->Read(&m)) {
      if (m.has_record()) d.record = m.record();
      d.data += m.data();
      d.largest_chunk = std::max(d.largest_chunk, m.data().size());
    }
    d.status = reader->Finish();
    return d;
  }
  v1::ListEvidenceResponse list() {
    auto stub = op(Role::kViewer, "vera");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ListEvidenceResponse resp;
    EXPECT_TRUE(stub->ListEvidence(&ctx, {}, &resp).ok());
    return resp;
  }
  const AuditEntry* lastAudit(const std::string& action) {
    rows_ = auditRows();
    for (auto it = rows_.rbegin(); it != rows_.rend(); ++it) {
      if (it->action == action) return &*it;
    }
    return nullptr;
  }
  // Files under the evidence directory outside incoming/.
  size_t storedFiles() {
    size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_ / "evidence")) {
      if (e.is_regular_file()) ++n;
    }
    return n;
  }
  static std::string readAll(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // VmHWM of this process.
  static int64_t peakRssKiB() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.starts_with("VmHWM:")) return std::stoll(line.substr(6));
    }
    return 0;
  }
  std::vector<AuditEntry> rows_;
};

TEST_F(EvidenceServerTest, CaptureStoresASignedBundleWithItsCustodyAndVerifies) {
  auto a = online("h1");
  auto f = captureAsync(captureReq("h1"));
  v1::Command c = nextCommand(*a);
  ASSERT_TRUE(c.has_capture());
  const std::string cap = c.capture().capture_id();
  EXPECT_TRUE(cap.starts_with("cap-20231114T221320Z-h1-")) << cap;  // the fake clock's time
  EXPECT_EQ(cap.size(), std::string("cap-20231114T221320Z-h1-0000").size());
  // Audited as accepted before the agent got the command; the result row comes with the answer.
  const AuditEntry* accepted = lastAudit("capture");
  ASSERT_NE(accepted, nullptr);
  EXPECT_EQ(accepted->outcome, "accepted");
  EXPECT_EQ(accepted->detail, "capture " + cap);
  EXPECT_EQ(lastAudit("capture.result"), nullptr);
  EXPECT_EQ(c.reason(), "INC-42");
  EXPECT_EQ(c.requested_by(), "rita");
  EXPECT_EQ(c.capture().controller_time_unix_ms(), clock_.nowUnixMs());
  v1::AgentMessage p;
  p.mutable_progress()->set_command_id(c.id());
  p.mutable_progress()->set_capture_stage(v1::CAPTURE_STAGE_COLLECTING);
  ASSERT_TRUE(a->write(p));
  fs::path file = bundle("h1", cap);
  v1::EvidenceHeader h;
  h.set_capture_id(cap);
  h.set_command_id(c.id());
  Upload u = upload("h1", h, file, 100);
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  const std::string id = *sha256OfFile(file);
  EXPECT_EQ(u.receipt.evidence_id(), id);
  EXPECT_FALSE(u.receipt.already_stored());
  answer(*a, c, true);
  CaptureCall r = get(f);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_GE(r.events.size(), 2u);
  EXPECT_TRUE(r.events.front().has_progress());
  ASSERT_TRUE(r.events.back().has_done());
  const auto& rec = r.events.back().done();
  EXPECT_EQ(rec.evidence_id(), id);
  EXPECT_EQ(rec.capture_id(), cap);
  EXPECT_EQ(rec.host_id(), "h1");
  EXPECT_EQ(rec.requested_by(), "rita");
  EXPECT_EQ(rec.reason(), "INC-42");
  EXPECT_TRUE(rec.signature_ok());
  EXPECT_EQ(rec.collected_at_unix_ms(), 1700000000900);
  EXPECT_EQ(rec.clock_offset_ms(), 12);
  EXPECT_EQ(rec.files(), 3u);
  EXPECT_EQ(rec.size(), fs::file_size(file));
  ASSERT_EQ(rec.custody_size(), 3);
  EXPECT_EQ(rec.custody(0).action(), "requested");
  EXPECT_EQ(rec.custody(0).actor(), "rita");
  EXPECT_EQ(rec.custody(0).prev_hash(), id);
  EXPECT_EQ(rec.custody(1).action(), "collected");
  EXPECT_EQ(rec.custody(2).action(), "received");
  EXPECT_EQ(rec.custody(2).actor(), "agent:h1");
  const fs::path stored = dir_ / "evidence" / id.substr(0, 2) / (id + ".tar.gz");
  EXPECT_EQ(readAll(stored), readAll(file));
  const AuditEntry* row = lastAudit("capture.result");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->operator_name, "rita");
  EXPECT_EQ(row->outcome, "ok");
  EXPECT_NE(row->detail.find(id), std::string::npos);
  row = lastAudit("evidence-received");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->operator_name, "agent:h1");
  EXPECT_NE(row->detail.find("signature ok"), std::string::npos) << row->detail;

  // Verify passes on the fresh bundle (by prefix) and is recorded in custody.
  auto v = verify(id.substr(0, 12));
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.problems_size(), 0) << v.problems(0).file() << ": " << v.problems(0).problem();
  EXPECT_EQ(v.files_checked(), 3u);
  ASSERT_EQ(v.record().custody_size(), 4);
  EXPECT_EQ(v.record().custody(3).action(), "verify");
  EXPECT_EQ(v.record().custody(3).actor(), "vera");
  ASSERT_EQ(list().evidence_size(), 1);
  EXPECT_EQ(list().evidence(0).custody_size(), 0);

  // One byte changed in the stored file: verify fails, naming what is wrong.
  {
    std::fstream s(stored, std::ios::in | std::ios::out | std::ios::binary);
    s.seekg(static_cast<std::streamoff>(fs::file_size(stored) / 2));
    char ch = 0;
    s.read(&ch, 1);
    s.seekp(static_cast<std::streamoff>(fs::file_size(stored) / 2));
    ch = static_cast<char>(ch ^ 0x01);
    s.write(&ch, 1);
  }
  v = verify(id);
  EXPECT_FALSE(v.ok());
  ASSERT_GT(v.problems_size(), 0);
  EXPECT_FALSE(v.problems(0).file().empty());
  // The custody chain check is part of verify: tamper with an event.
  ASSERT_TRUE(
      store_->execForTest("UPDATE custody SET actor = 'mallory' WHERE action = 'requested'").ok());
  v = verify(id);
  bool custody_named = false;
  for (const auto& pr : v.problems()) custody_named |= pr.file() == "custody";
  EXPECT_TRUE(custody_named);
}

TEST_F(EvidenceServerTest, ProgressIsTakenOnlyFromTheHostTheCommandWentTo) {
  auto a = online("h1");
  auto b = online("h2");
  auto f = captureAsync(captureReq("h1"));
  v1::Command c = nextCommand(*a);
  ASSERT_TRUE(c.has_capture());
  // h2 names h1's capture command: its progress must not reach h1's capture call.
  clock_.advance(milliseconds(500));
  const int64_t at = clock_.nowUnixMs();
  v1::AgentMessage forged;
  forged.mutable_progress()->set_command_id(c.id());
  forged.mutable_progress()->set_detail("forged by h2");
  ASSERT_TRUE(b->write(forged));
  ASSERT_TRUE(eventually([&] {
    const auto list = hosts();
    for (const auto& h : list.hosts()) {
      if (h.host_id() == "h2") return h.last_seen_unix_ms() == at;
    }
    return false;
  }));
  v1::AgentMessage own;
  own.mutable_progress()->set_command_id(c.id());
  own.mutable_progress()->set_capture_stage(v1::CAPTURE_STAGE_COLLECTING);
  ASSERT_TRUE(a->write(own));
  fs::path file = bundle("h1", c.capture().capture_id());
  v1::EvidenceHeader h;
  h.set_capture_id(c.capture().capture_id());
  h.set_command_id(c.id());
  ASSERT_TRUE(upload("h1", h, file).status.ok());
  answer(*a, c, true);
  CaptureCall r = get(f);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  bool own_seen = false;
  for (const auto& e : r.events) {
    if (!e.has_progress()) continue;
    EXPECT_NE(e.progress().detail(), "forged by h2");
    own_seen |= e.progress().capture_stage() == v1::CAPTURE_STAGE_COLLECTING;
  }
  EXPECT_TRUE(own_seen);
}

TEST_F(EvidenceServerTest, GetStreamsTheBundleAndIsRecordedInCustodyFirst) {
  auto a = online("h1");
  auto rec = captureOnce(*a, "h1");
  ASSERT_FALSE(rec.evidence_id().empty());
  Download d = download(rec.evidence_id().substr(0, 8));
  ASSERT_TRUE(d.status.ok()) << d.status.error_message();
  EXPECT_EQ(d.record.evidence_id(), rec.evidence_id());
  ASSERT_EQ(d.record.custody_size(), 4);  // this access already in it
  EXPECT_EQ(d.record.custody(3).action(), "get");
  EXPECT_EQ(d.record.custody(3).actor(), "gina");
  EXPECT_EQ(evidence::sha256Hex(d.data), rec.evidence_id());
  const AuditEntry* row = lastAudit("evidence-get");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->operator_name, "gina");
  EXPECT_EQ(row->target, rec.evidence_id());
  // A second get is a second custody event; viewers may not download; unknown ids are named.
  ASSERT_TRUE(download(rec.evidence_id()).status.ok());
  Download denied = download(rec.evidence_id(), Role::kViewer);
  EXPECT_EQ(denied.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  Download unknown = download("0123456789abcdef");
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown.status.error_message(), "no evidence with id 0123456789abcdef");
  auto custody = store_->listCustody(rec.evidence_id());
  ASSERT_EQ(custody->size(), 5u);
  EXPECT_EQ((*custody)[4].action, "get");
  EXPECT_TRUE(store_->verifyCustody(rec.evidence_id())->ok);
  EXPECT_EQ(lastAudit("evidence-get")->outcome, "error: no evidence with id 0123456789abcdef");
}

TEST_F(EvidenceServerTest, CaptureLargerThan64MiBStreamsThrough) {
  const size_t size = (70u << 20) + 12345;
  fs::path file = randomFile("big.bin", size);
  const std::string sha = *sha256OfFile(file);
  auto a = online("h1");
  const int64_t peak_before = peakRssKiB();
  auto f = captureAsync(captureReq("h1"));
  Upload u = serveCapture(*a, "h1", &file);
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  EXPECT_EQ(u.receipt.evidence_id(), sha);
  CaptureCall r = get(f);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  bool uploading = false;
  for (const auto& e : r.events)
    uploading |= e.has_progress() && e.progress().capture_stage() == v1::CAPTURE_STAGE_UPLOADING;
  EXPECT_TRUE(uploading);
  ASSERT_TRUE(r.events.back().has_done());
  EXPECT_EQ(r.events.back().done().size(), size);
  // Not a bundle: stored all the same (evidence is never dropped), flagged unsigned.
  EXPECT_FALSE(r.events.back().done().signature_ok());
  const fs::path stored = dir_ / "evidence" / sha.substr(0, 2) / (sha + ".tar.gz");
  EXPECT_EQ(*sha256OfFile(stored), sha);
  // Neither side held the bundle whole (client and server share this process): holding it
  // would grow the peak by its size at least. Under load the peak grows by a share of the
  // stream (33-98 MiB seen for 160 MiB on 2 busy cores: buffers in flight), so the bound is the
  // bundle's size, not a fixed figure below it.
  const int64_t grown_kib = peakRssKiB() - peak_before;
  EXPECT_LT(grown_kib, static_cast<int64_t>(size >> 10)) << "peak RSS grew while streaming";
  std::cerr << "peak RSS grew by " << grown_kib / 1024 << " MiB for a "
            << (size >> 20) << " MiB bundle\n";
  Download d = download(sha);
  ASSERT_TRUE(d.status.ok()) << d.status.error_message();
  EXPECT_EQ(d.data.size(), size);
  EXPECT_LE(d.largest_chunk, size_t{1} << 20);
  EXPECT_EQ(evidence::sha256Hex(d.data), sha);
}

TEST_F(EvidenceServerTest, BadUploadsAreRefusedAndStoreNothing) {
  ASSERT_TRUE(store_
                  ->addCapture({.capture_id = "cap-h1",
                                .host_id = "h1",
                                .requested_by = "rita",
                                .reason = "INC-42",
                                .command_id = "capture-cap-h1"})
                  .ok());
  fs::path file = randomFile("small.bin", 300000);
  v1::EvidenceHeader h;
  h.set_capture_id("cap-h1");
  // SHA-256 mismatch.
  v1::EvidenceHeader wrong = h;
  wrong.set_sha256(std::string(64, '0'));
  Upload u = upload("h1", wrong, file);
  EXPECT_EQ(u.status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_NE(u.status.error_message().find("sha256 mismatch"), std::string::npos);
  // Fewer and more bytes than announced.
  v1::EvidenceHeader longer = h;
  longer.set_size(300001);
  EXPECT_EQ(upload("h1", longer, file).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::EvidenceHeader shorter = h;
  shorter.set_size(299999);
  u = upload("h1", shorter, file);
  EXPECT_EQ(u.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(u.status.error_message().find("more bytes"), std::string::npos);
  // Unknown capture, another host's capture.
  v1::EvidenceHeader unknown = h;
  unknown.set_capture_id("cap-nope");
  u = upload("h1", unknown, file);
  EXPECT_EQ(u.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(u.status.error_message().find("cap-nope"), std::string::npos);
  u = upload("h2", h, file);
  EXPECT_EQ(u.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Over --max-evidence-bytes: refused from the header.
  v1::EvidenceHeader huge = h;
  huge.set_size(200 << 20);
  huge.set_sha256(std::string(64, 'a'));
  u = upload("h1", huge, file);
  EXPECT_EQ(u.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(storedFiles(), 0u);
  EXPECT_EQ(list().evidence_size(), 0);
  const AuditEntry* row = lastAudit("evidence-received");
  ASSERT_NE(row, nullptr);
  EXPECT_NE(row->outcome, "ok");
  // The same upload done right is stored; again, it is already stored (one file).
  u = upload("h1", h, file);
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  u = upload("h1", h, file);
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  EXPECT_TRUE(u.receipt.already_stored());
  EXPECT_EQ(storedFiles(), 1u);
  EXPECT_EQ(list().evidence_size(), 1);
  EXPECT_EQ(store_->listCustody(u.receipt.evidence_id())->size(), 4u);
}

TEST_F(EvidenceServerTest, BadCaptureRequestsChangeNothing) {
  {
    auto a = online("h1");
    ASSERT_TRUE(a->finish().ok());
  }
  ASSERT_TRUE(eventually([&] { return !listedOnline("h1"); }));
  auto f = captureAsync(captureReq("h1"));
  CaptureCall r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(r.status.error_message(), "host h1 is offline");
  f = captureAsync(captureReq("nope"));
  r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(r.status.error_message().find("nope"), std::string::npos);
  f = captureAsync(captureReq("h1", " "));
  r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.status.error_message(), "--reason is required");
  f = captureAsync(captureReq("h1"), Role::kViewer);
  EXPECT_EQ(get(f).status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(list().evidence_size(), 0);
  int captures = 0;
  for (const auto& row : auditRows()) captures += row.action == "capture";
  EXPECT_EQ(captures, 4);
  grpc::Status s;
  verify("zz", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  verify("abcdef0123", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(EvidenceServerTest, TimeoutAndAgentFailureAndALateUploadIsStillStored) {
  auto a = online("h1");
  auto req = captureReq("h1");
  req.set_wait_ms(300);
  auto f = captureAsync(req);
  v1::Command c = nextCommand(*a);
  CaptureCall r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(r.status.error_message(),
            "no answer within 1 s; the bundle will be stored when it arrives");
  EXPECT_EQ(store_->getCapture(c.capture().capture_id())->state, "timeout");
  // The agent uploads later, after a controller restart (a retry after reconnecting): stored
  // and listed.
  a.reset();
  server_.reset();
  startServer();
  fs::path file = bundle("h1", c.capture().capture_id());
  v1::EvidenceHeader h;
  h.set_capture_id(c.capture().capture_id());
  Upload u = upload("h1", h, file);
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  EXPECT_EQ(list().evidence_size(), 1);
  EXPECT_EQ(store_->getCapture(c.capture().capture_id())->state, "received");

  a = online("h1");
  f = captureAsync(captureReq("h1"));
  c = nextCommand(*a);
  answer(*a, c, false, "collector processes: permission denied");
  r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_NE(r.status.error_message().find("permission denied"), std::string::npos);
  EXPECT_EQ(lastAudit("capture.result")->outcome, "error: " + r.status.error_message());
}

TEST_F(EvidenceServerTest, ShowIsForRespondersAndRecordedInCustody) {
  auto a = online("h1");
  auto rec = captureOnce(*a, "h1");
  ASSERT_FALSE(rec.evidence_id().empty());
  auto show = [&](Role role, v1::ShowEvidenceResponse* resp) {
    auto stub = op(role, "sam");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ShowEvidenceRequest req;
    req.set_id(rec.evidence_id());
    return stub->ShowEvidence(&ctx, req, resp);
  };
  v1::ShowEvidenceResponse resp;
  EXPECT_EQ(show(Role::kViewer, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(store_->listCustody(rec.evidence_id())->size(), 3u);
  grpc::Status s = show(Role::kResponder, &resp);
  if (s.ok()) {
    ASSERT_TRUE(resp.has_summary());
    EXPECT_EQ(resp.summary().host_id(), "h1");
    ASSERT_EQ(resp.record().custody_size(), 4);
    EXPECT_EQ(resp.record().custody(3).action(), "show");
  } else {   // no summary could be made: no access recorded, the error names the bundle
    EXPECT_NE(s.error_message().find(rec.evidence_id()), std::string::npos);
    EXPECT_EQ(store_->listCustody(rec.evidence_id())->size(), 3u);
  }
  EXPECT_EQ(lastAudit("evidence-show")->operator_name, "sam");
}

// --- hostile uploads, limits, paths (a host's agent identity in an attacker's hands) ---

class EvidenceLimitsTest : public EvidenceServerTest {
 protected:
  void addCapture(const std::string& id, const std::string& host) {
    ASSERT_TRUE(store_
                    ->addCapture({.capture_id = id,
                                  .host_id = host,
                                  .requested_by = "rita",
                                  .reason = "INC-42",
                                  .command_id = "capture-" + id})
                    .ok());
  }
  static v1::EvidenceHeader header(const std::string& capture_id) {
    v1::EvidenceHeader h;
    h.set_capture_id(capture_id);
    return h;
  }
  void restart() {
    server_.reset();
    startServer();
  }
  // A tar.gz shaped like a bundle of capture `capture_id` by host h1: a manifest listing no
  // file, no signature, and `junk` empty members with 200-character names.
  fs::path craftedBundle(const std::string& capture_id, int junk) {
    const fs::path root = dir_ / ("crafted-" + capture_id);
    fs::create_directories(root / capture_id / "junk");
    std::ofstream(root / capture_id / "manifest.json")
        << R"({"format":"bulkhead-evidence/1","host_id":"h1","files":[]})";
    for (int i = 0; i < junk; ++i) {
      std::ofstream(root / capture_id / "junk" / fmt::format("{:0>200}", i));
    }
    const fs::path out = dir_ / (capture_id + ".crafted.tar.gz");
    const std::string cmd =
        fmt::format("tar czf {} -C {} {}", out.string(), root.string(), capture_id);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    fs::remove_all(root);
    return out;
  }
  // ListAudit as a viewer with a default client (4 MiB receive limit).
  grpc::Status listAudit(uint32_t limit, int64_t before_id, v1::ListAuditResponse* resp) {
    auto stub = op(Role::kViewer, "vera");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ListAuditRequest req;
    req.set_limit(limit);
    req.set_before_id(before_id);
    return stub->ListAudit(&ctx, req, resp);
  }
  grpc::Status show(const std::string& id, v1::ShowEvidenceResponse* resp) {
    auto stub = op(Role::kResponder, "sam");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ShowEvidenceRequest req;
    req.set_id(id);
    return stub->ShowEvidence(&ctx, req, resp);
  }
  // An upload left open after `sent` of its bytes.
  struct OpenUpload {
    std::unique_ptr<v1::AgentChannel::Stub> stub;
    grpc::ClientContext ctx;
    v1::EvidenceReceipt receipt;
    std::unique_ptr<grpc::ClientWriter<v1::EvidenceUpload>> writer;
    std::string rest;
  };
  std::unique_ptr<OpenUpload> openUpload(const std::string& host, const std::string& capture_id,
                                         const fs::path& file) {
    auto u = std::make_unique<OpenUpload>();
    u->stub = v1::AgentChannel::NewStub(channel(pki_.identity(PeerKind::kAgent, host)));
    u->ctx.set_deadline(std::chrono::system_clock::now() + kLongWait);
    u->writer = u->stub->UploadEvidence(&u->ctx, &u->receipt);
    const std::string bytes = readAll(file);
    v1::EvidenceUpload m;
    m.mutable_header()->set_capture_id(capture_id);
    m.mutable_header()->set_size(bytes.size());
    m.mutable_header()->set_sha256(evidence::sha256Hex(bytes));
    EXPECT_TRUE(u->writer->Write(m));
    m.set_data(bytes.substr(0, bytes.size() / 2));
    EXPECT_TRUE(u->writer->Write(m));
    u->rest = bytes.substr(bytes.size() / 2);
    return u;
  }
  static grpc::Status finishUpload(OpenUpload& u) {
    v1::EvidenceUpload m;
    m.set_data(u.rest);
    u.writer->Write(m);
    u.writer->WritesDone();
    return u.writer->Finish();
  }
  // True once an upload of `capture_id` is receiving into its part file.
  bool receiving(const std::string& capture_id) {
    return eventually([&] {
      for (const auto& e : fs::directory_iterator(dir_ / "evidence" / "incoming")) {
        if (e.path().filename().string().starts_with(capture_id + ".")) return true;
      }
      return false;
    });
  }
  // A copy of `file` with `tag` appended (other bytes, another content address).
  fs::path variant(const fs::path& file, const std::string& tag) {
    fs::path out = dir_ / (file.filename().string() + "." + tag);
    fs::copy_file(file, out, fs::copy_options::overwrite_existing);
    std::ofstream(out, std::ios::app) << tag;
    return out;
  }
  size_t auditCount(const std::string& action, const std::string& outcome_has) {
    size_t n = 0;
    for (const auto& r : auditRows()) {
      n += r.action == action && r.outcome.find(outcome_has) != std::string::npos;
    }
    return n;
  }
};

// `bulkhead evidence get ID` (the CLI, in process) against this server, run in `cwd`.
int cliGet(const fs::path& cwd, const std::vector<std::string>& args, int port,
           const fs::path& identity, std::string* err) {
  std::vector<std::string> argv = {"--controller",      fmt::format("127.0.0.1:{}", port),
                                   "--identity",        identity.string(),
                                   "--controller-name", "controller",
                                   "evidence",          "get"};
  argv.insert(argv.end(), args.begin(), args.end());
  const fs::path before = fs::current_path();
  fs::current_path(cwd);
  std::ostringstream out, errs;
  cli::Io io{out, errs};
  int code = cli::runCli(argv, io);
  fs::current_path(before);
  *err = errs.str();
  return code;
}

TEST_F(EvidenceLimitsTest, CliGetSavesAsIdDotTarGzAndNeverOverwritesOrFollowsALink) {
  addCapture("cap-cli", "h1");
  v1::EvidenceHeader h = header("cap-cli");
  h.set_file_name(".bash_aliases");  // the agent's choice: never used as the output name
  Upload u = upload("h1", h, bundle("h1", "cap-cli"));
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  const std::string id = u.receipt.evidence_id();
  const fs::path identity = dir_ / "gina";
  auto op_id = pki_.identity(PeerKind::kOperator, "gina", Role::kResponder);
  ASSERT_TRUE(writeIdentity(identity, op_id.ca_pem, op_id.cert_pem, op_id.key_pem, false).ok());
  const fs::path cwd = dir_ / "cwd";
  fs::create_directories(cwd);
  std::string err;
  ASSERT_EQ(cliGet(cwd, {id.substr(0, 12)}, server_->port(), identity, &err), 0) << err;
  const fs::path saved = cwd / (id + ".tar.gz");
  ASSERT_TRUE(fs::exists(saved));
  EXPECT_EQ(*sha256OfFile(saved), id);
  EXPECT_FALSE(fs::exists(cwd / ".bash_aliases"));
  EXPECT_EQ(std::distance(fs::directory_iterator(cwd), fs::directory_iterator()), 1);
  // Again: refused, the file kept as it was.
  { std::ofstream(saved, std::ios::trunc) << "an analyst's edits"; }
  EXPECT_EQ(cliGet(cwd, {id}, server_->port(), identity, &err), cli::kUsage);
  EXPECT_NE(err.find("exists"), std::string::npos) << err;
  EXPECT_EQ(readAll(saved), "an analyst's edits");
  EXPECT_EQ(cliGet(cwd, {id.substr(0, 12)}, server_->port(), identity, &err), cli::kUsage);
  EXPECT_EQ(readAll(saved), "an analyst's edits");
  // A symbolic link in its place is not followed, even a dangling one.
  fs::remove(saved);
  const fs::path target = dir_ / "elsewhere";
  fs::create_symlink(target, saved);
  EXPECT_EQ(cliGet(cwd, {id.substr(0, 12)}, server_->port(), identity, &err), cli::kUsage);
  EXPECT_NE(err.find("symbolic link"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(target));
  EXPECT_TRUE(fs::is_symlink(saved));
  EXPECT_FALSE(fs::exists(cwd / (id + ".tar.gz.part")));
}

TEST_F(EvidenceLimitsTest, CraftedBundleIsStoredWithBoundedRowsAndTheAuditStillLists) {
  addCapture("cap-crafted", "h1");
  // 20,000 bogus members: one problem each, about 5 MB of problem text before any bound.
  const fs::path file = craftedBundle("cap-crafted", 20000);
  Upload u = upload("h1", header("cap-crafted"), file);
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  const std::string id = u.receipt.evidence_id();
  // Stored (evidence is never dropped), flagged unsigned; its rows are bounded.
  const AuditEntry* row = lastAudit("evidence-received");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->outcome, "ok");
  EXPECT_LT(row->detail.size(), 10000u);
  EXPECT_NE(row->detail.find("signature NOT OK"), std::string::npos) << row->detail.substr(0, 300);
  auto custody = store_->listCustody(id);
  ASSERT_TRUE(custody.ok());
  for (const auto& e : *custody) EXPECT_LT(e.detail.size(), 10000u) << e.action;
  // Every listing and the summary still answer a default client.
  v1::ListAuditResponse audit;
  grpc::Status st = listAudit(1000, 0, &audit);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_GT(audit.records_size(), 0);
  v1::ShowEvidenceResponse shown;
  st = show(id, &shown);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_LT(shown.ByteSizeLong(), size_t{4} << 20);
  auto v = verify(id);
  EXPECT_FALSE(v.ok());
  EXPECT_LE(v.problems_size(), static_cast<int>(evidence::kMaxProblems) + 1);
  EXPECT_NE(v.problems(v.problems_size() - 1).problem().find("more problems not listed"),
            std::string::npos);
  ASSERT_EQ(list().evidence_size(), 1);
  EXPECT_FALSE(list().evidence(0).signature_ok());
}

TEST_F(EvidenceLimitsTest, OneBundlePerCaptureAndTheSameBytesAgainGetAReceipt) {
  addCapture("cap-once", "h1");
  const fs::path first = bundle("h1", "cap-once");
  Upload u = upload("h1", header("cap-once"), first);
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  EXPECT_FALSE(u.receipt.already_stored());
  const std::string id = u.receipt.evidence_id();
  // The receipt was lost; the agent uploads the same bytes again: a receipt, nothing new.
  Upload retry = upload("h1", header("cap-once"), first);
  ASSERT_TRUE(retry.status.ok()) << retry.status.error_message();
  EXPECT_TRUE(retry.receipt.already_stored());
  EXPECT_EQ(retry.receipt.evidence_id(), id);
  // A different bundle for the capture already received: refused, audited, nothing stored.
  const fs::path other = randomFile("other.bin", 50000);
  Upload second = upload("h1", header("cap-once"), other);
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(second.status.error_message().find(id), std::string::npos)
      << second.status.error_message();
  EXPECT_EQ(lastAudit("evidence-received")->outcome, "error: " + second.status.error_message());
  EXPECT_EQ(storedFiles(), 1u);
  ASSERT_EQ(list().evidence_size(), 1);
  EXPECT_EQ(list().evidence(0).evidence_id(), id);
  EXPECT_EQ(store_->getCapture("cap-once")->state, "received");
}

// The disk fails while the receipt is committed (the bundle's row written, its custody events
// refused): no receipt, nothing listed, the capture still open; the agent's retry is stored.
TEST_F(EvidenceLimitsTest, AReceiptWhoseCommitFailsMidwayIsNotGivenAndTheRetryIsStored) {
  addCapture("cap-fail", "h1");
  const fs::path file = bundle("h1", "cap-fail");
  failInserts("custody");
  Upload failed = upload("h1", header("cap-fail"), file);
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(failed.status.error_message().find("disk I/O error"), std::string::npos)
      << failed.status.error_message();
  EXPECT_TRUE(failed.receipt.evidence_id().empty());
  EXPECT_EQ(list().evidence_size(), 0);
  EXPECT_EQ(store_->getCapture("cap-fail")->state, "requested");
  EXPECT_EQ(auditCount("evidence-received", "error: "), 1u);
  EXPECT_TRUE(store_->verifyAudit()->ok);

  stopFailingInserts("custody");
  Upload retry = upload("h1", header("cap-fail"), file);
  ASSERT_TRUE(retry.status.ok()) << retry.status.error_message();
  EXPECT_FALSE(retry.receipt.already_stored());
  ASSERT_EQ(list().evidence_size(), 1);
  EXPECT_EQ(list().evidence(0).evidence_id(), retry.receipt.evidence_id());
  EXPECT_TRUE(store_->verifyCustody(retry.receipt.evidence_id())->ok);
}

// A bug that throws on the evidence thread ends the upload with INTERNAL and an audit row,
// never a call left hanging without a receipt; the next upload is stored.
TEST_F(EvidenceLimitsTest, AnExceptionOnTheEvidenceThreadEndsTheUploadWithInternalAndAnAuditRow) {
  addCapture("cap-throw", "h1");
  const fs::path file = bundle("h1", "cap-throw");
  faults_->throwNext("addEvidence");
  Upload failed = upload("h1", header("cap-throw"), file);
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(failed.status.error_message().find("internal error"), std::string::npos)
      << failed.status.error_message();
  EXPECT_FALSE(faults_->armed("addEvidence"));
  EXPECT_EQ(auditCount("evidence-received", "internal error"), 1u);
  EXPECT_EQ(list().evidence_size(), 0);

  Upload retry = upload("h1", header("cap-throw"), file);
  ASSERT_TRUE(retry.status.ok()) << retry.status.error_message();
  ASSERT_EQ(list().evidence_size(), 1);
}

TEST_F(EvidenceLimitsTest, HostQuotaAndFreeSpaceReserveRefuseWithResourceExhausted) {
  limits_.host_quota_bytes = 400000;
  restart();
  for (const char* cap : {"cap-q1", "cap-q2"}) addCapture(cap, "h1");
  addCapture("cap-q3", "h2");
  const fs::path a = randomFile("a.bin", 300000);
  ASSERT_TRUE(upload("h1", header("cap-q1"), a).status.ok());
  const fs::path b = dir_ / "b.bin";
  fs::copy_file(a, b);
  { std::ofstream(b, std::ios::app) << "different"; }
  Upload over = upload("h1", header("cap-q2"), b);
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(over.status.error_message().find("--evidence-host-quota"), std::string::npos)
      << over.status.error_message();
  EXPECT_EQ(lastAudit("evidence-received")->outcome, "error: " + over.status.error_message());
  // The quota is per host.
  ASSERT_TRUE(upload("h2", header("cap-q3"), b).status.ok());
  EXPECT_EQ(storedFiles(), 2u);

  limits_.host_quota_bytes = uint64_t{1} << 40;
  limits_.reserve_bytes = uint64_t{1} << 60;  // more than any disk has
  restart();
  Upload full = upload("h1", header("cap-q2"), b);
  EXPECT_EQ(full.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.status.error_message().find("--evidence-reserve"), std::string::npos)
      << full.status.error_message();
  EXPECT_EQ(lastAudit("evidence-received")->outcome, "error: " + full.status.error_message());
  EXPECT_EQ(auditCount("evidence-received", "--evidence-"), 2u);
  EXPECT_EQ(storedFiles(), 2u);
  EXPECT_EQ(store_->getCapture("cap-q2")->state, "requested");
}

TEST_F(EvidenceLimitsTest, UploadsInProgressAreCappedPerHostAndInAll) {
  limits_.max_uploads = 2;
  limits_.max_uploads_per_host = 1;
  restart();
  addCapture("cap-c1", "h1");
  addCapture("cap-c2", "h1");
  addCapture("cap-c3", "h2");
  addCapture("cap-c4", "h3");
  const fs::path file = randomFile("c.bin", 200000);
  auto first = openUpload("h1", "cap-c1", variant(file, "1"));
  ASSERT_TRUE(receiving("cap-c1"));
  Upload same_host = upload("h1", header("cap-c2"), file);
  EXPECT_EQ(same_host.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(same_host.status.error_message().find("--max-evidence-uploads-per-host"),
            std::string::npos)
      << same_host.status.error_message();
  auto second = openUpload("h2", "cap-c3", variant(file, "3"));
  ASSERT_TRUE(receiving("cap-c3"));
  Upload third = upload("h3", header("cap-c4"), file);
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.status.error_message().find("(--max-evidence-uploads)"), std::string::npos)
      << third.status.error_message();
  EXPECT_EQ(auditCount("evidence-received", "retry later"), 2u);
  // A finished upload frees its place.
  grpc::Status done = finishUpload(*first);
  ASSERT_TRUE(done.ok()) << done.error_message();
  Upload again = upload("h3", header("cap-c4"), file);
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  done = finishUpload(*second);
  ASSERT_TRUE(done.ok()) << done.error_message();
  EXPECT_EQ(storedFiles(), 3u);
}

// An agent that stops sending in the middle of an upload loses its place after the idle
// timeout: the call is cancelled and audited, nothing is stored, and the next upload proceeds.
TEST_F(EvidenceLimitsTest, AStalledUploadIsCancelledAndFreesItsPlace) {
  limits_.max_uploads = 1;
  limits_.idle_timeout = milliseconds(300);
  restart();
  addCapture("cap-s1", "h1");
  addCapture("cap-s2", "h2");
  const fs::path file = randomFile("s.bin", 200000);
  auto stalled = openUpload("h1", "cap-s1", file);  // half sent, then nothing
  ASSERT_TRUE(receiving("cap-s1"));
  ASSERT_TRUE(eventually([&] { return auditCount("evidence-received", "stalled") == 1; }));
  EXPECT_EQ(auditCount("evidence-received", "--evidence-idle-timeout"), 1u);
  Upload next = upload("h2", header("cap-s2"), file);
  ASSERT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_EQ(storedFiles(), 1u);
  EXPECT_EQ(store_->getCapture("cap-s1")->state, "requested");  // the agent may try again
  grpc::Status late = finishUpload(*stalled);
  EXPECT_FALSE(late.ok());
}

TEST_F(EvidenceLimitsTest, GetServesTheContentAddressedFileNotTheRowsPath) {
  auto a = online("h1");
  auto rec = captureOnce(*a, "h1");
  ASSERT_FALSE(rec.evidence_id().empty());
  const fs::path secret = dir_ / "secret.txt";
  { std::ofstream(secret) << "the controller's private notes"; }
  ASSERT_TRUE(
      store_->execForTest(fmt::format("UPDATE evidence SET path = '{}'", secret.string())).ok());
  Download d = download(rec.evidence_id());
  ASSERT_TRUE(d.status.ok()) << d.status.error_message();
  EXPECT_EQ(evidence::sha256Hex(d.data), rec.evidence_id());
  EXPECT_EQ(d.data.find("private notes"), std::string::npos);
  auto v = verify(rec.evidence_id());
  EXPECT_TRUE(v.ok()) << (v.problems_size() > 0 ? v.problems(0).problem() : "");
}

TEST_F(EvidenceLimitsTest, WrongTypesInABundlesJsonAreProblemsNotAHang) {
  addCapture("cap-types", "h1");
  const fs::path out = dir_ / "types.tar.gz";
  nlohmann::json fields = {{"capture_id", "cap-types"},
                           {"host_id", 42},
                           {"finished_at_unix_ms", "late"},
                           {"clock_offset_ms", {{"a", 1}}}};
  auto w = evidence::BundleWriter::create(out, "cap-types", fields);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->addBytes("collection-log.jsonl",
                             R"({"collector":5,"status":["x"],"error":null})"
                             "\n")
                  .ok());
  auto id = pki_.identity(PeerKind::kAgent, "h1");
  auto r = (*w)->finish(*evidence::Signer::fromPem(id.key_pem, id.cert_pem));
  ASSERT_TRUE(r.ok()) << r.status();
  Upload u = upload("h1", header("cap-types"), out, 1 << 20, std::chrono::seconds(20));
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  const AuditEntry* row = lastAudit("evidence-received");
  ASSERT_NE(row, nullptr);
  EXPECT_NE(row->detail.find("host_id"), std::string::npos) << row->detail;
  ASSERT_EQ(list().evidence_size(), 1);
  EXPECT_EQ(list().evidence(0).collected_at_unix_ms(), 0);
  EXPECT_FALSE(list().evidence(0).signature_ok());
}

TEST_F(EvidenceLimitsTest, AuditListingPagesAndClipsOversizedRows) {
  // Rows as an earlier version wrote them: a few of several MB, and many of 12 KB.
  for (int i = 0; i < 3; ++i) {
    AuditEntry e{.at_unix_ms = 1,
                 .operator_name = "agent:h1",
                 .action = "evidence-received",
                 .target = "x",
                 .outcome = "ok",
                 .detail = std::string(3 << 20, 'p')};
    ASSERT_TRUE(store_->appendAudit(e).ok());
  }
  for (int i = 0; i < 300; ++i) {
    AuditEntry e{.at_unix_ms = 2,
                 .operator_name = "alice",
                 .action = "status",
                 .target = fmt::format("row-{}", i),
                 .outcome = "ok",
                 .detail = std::string(12000, 'd')};
    ASSERT_TRUE(store_->appendAudit(e).ok());
  }
  std::set<int64_t> want;
  for (const auto& r : auditRows()) want.insert(r.id);
  std::set<int64_t> got;
  int64_t before = 0;
  int pages = 0;
  for (; pages < 50; ++pages) {
    v1::ListAuditResponse resp;
    grpc::Status st = listAudit(10000, before, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_LE(resp.ByteSizeLong(), kMaxResponseBytes + (64 << 10));
    for (int i = 1; i < resp.records_size(); ++i) {
      EXPECT_LT(resp.records(i - 1).id(), resp.records(i).id());  // oldest first
    }
    for (const auto& r : resp.records()) {
      EXPECT_LE(r.detail().size(), 16384u + 64u);
      EXPECT_TRUE(got.insert(r.id()).second) << "row " << r.id() << " listed twice";
    }
    if (resp.next_before_id() == 0) break;
    before = resp.next_before_id();
  }
  EXPECT_GT(pages, 0);  // more than one page
  for (int64_t id : want) EXPECT_TRUE(got.count(id)) << "row " << id << " never listed";
  v1::ListAuditResponse bad;
  EXPECT_EQ(listAudit(10, -1, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace bulkhead::controller
