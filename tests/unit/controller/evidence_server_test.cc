// Evidence through the real server: Capture -> Command.capture on the agent's stream ->
// progress -> UploadEvidence (chunks) -> receipt -> CommandResult -> done event with the stored
// record; verify, get (recorded in custody), list; a >64 MiB upload streamed and stored; bad
// uploads (sha mismatch, unknown or foreign capture, oversize) refused with nothing stored;
// bad capture requests; timeout with a late upload still stored.
#include <fstream>
#include <random>

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
    o.evidence.dir = dir_ / "evidence";
    o.evidence.ca_pem = controller_id_.ca_pem;
    o.evidence.max_bytes = 100 << 20;
  }

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
  Upload upload(const std::string& host, v1::EvidenceHeader header, const fs::path& file,
                size_t chunk = 1 << 20) {
    if (header.size() == 0) header.set_size(fs::file_size(file));
    if (header.sha256().empty()) header.set_sha256(*sha256OfFile(file));
    auto stub = v1::AgentChannel::NewStub(channel(pki_.identity(PeerKind::kAgent, host)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kLongWait);
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
    r->set_result_json(R"({"capture_id":")" + c.capture().capture_id() + R"("})");
    ASSERT_TRUE(a.write(m));
  }
  // The agent's side of a capture: progress, upload of `file`, result.
  Upload serveCapture(FakeAgent& a, const std::string& host, const fs::path* file = nullptr) {
    v1::Command c = nextCommand(a);
    EXPECT_TRUE(c.has_capture());
    v1::AgentMessage p;
    p.mutable_progress()->set_command_id(c.id());
    p.mutable_progress()->set_stage("collecting");
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
  EXPECT_EQ(c.reason(), "INC-42");
  EXPECT_EQ(c.requested_by(), "rita");
  EXPECT_EQ(c.capture().controller_time_unix_ms(), clock_.nowUnixMs());
  v1::AgentMessage p;
  p.mutable_progress()->set_command_id(c.id());
  p.mutable_progress()->set_stage("collecting");
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
  const AuditEntry* row = lastAudit("capture");
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
    uploading |= e.has_progress() && e.progress().stage() == "uploading";
  EXPECT_TRUE(uploading);
  ASSERT_TRUE(r.events.back().has_done());
  EXPECT_EQ(r.events.back().done().size(), size);
  // Not a bundle: stored all the same (evidence is never dropped), flagged unsigned.
  EXPECT_FALSE(r.events.back().done().signature_ok());
  const fs::path stored = dir_ / "evidence" / sha.substr(0, 2) / (sha + ".tar.gz");
  EXPECT_EQ(*sha256OfFile(stored), sha);
  // Neither side held the bundle whole (client and server share this process).
  EXPECT_LT(peakRssKiB() - peak_before, 40 << 10) << "peak RSS grew while streaming";
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
  EXPECT_EQ(lastAudit("capture")->outcome, "error: " + r.status.error_message());
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
    EXPECT_FALSE(resp.summary_json().empty());
    ASSERT_EQ(resp.record().custody_size(), 4);
    EXPECT_EQ(resp.record().custody(3).action(), "show");
  } else {   // no summary could be made: no access recorded, the error names the bundle
    EXPECT_NE(s.error_message().find(rec.evidence_id()), std::string::npos);
    EXPECT_EQ(store_->listCustody(rec.evidence_id())->size(), 3u);
  }
  EXPECT_EQ(lastAudit("evidence-show")->operator_name, "sam");
}

}  // namespace
}  // namespace bulkhead::controller
