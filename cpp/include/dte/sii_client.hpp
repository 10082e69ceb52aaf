// SII transport: authentication (seed -> signed seed -> token), DTEUpload and boleta REST envío,
// status queries, RegistroReclamoDTE, with timeouts, retries with jittered backoff, a circuit
// breaker per endpoint and a process-wide token cache. PROTOCOL.md §1-5, §13, §14.
//
// Errors (all derive from DteError, each with a stable code()):
//   SiiTransportError  network failure, timeout, HTTP 5xx, HTML page / "Error 500" / truncated or
//                      otherwise unparsable answer, open circuit. Retryable. maybe_delivered() says
//                      whether the request may have reached SII (false only when the connection was
//                      never established or the circuit was open).
//   SiiAuthError       token could not be obtained (getToken ESTADO != 00), or the service kept
//                      signalling an expired token after one renewal.
//   SiiRejected        SII answered and said no: sii_code() holds its code (upload STATUS, ESTADO,
//                      boleta estado) and the message its glosa/details.
//   SiiMalformedAnswer well-formed answer missing what the protocol promises, or an unknown code.
//
// ---------------------------------------------------------------------------------------------
// Code tables (what each SII code becomes)
//
// DTEUpload RECEPCIONDTE/STATUS:
//   0  upload ok, TRACKID                        -> UploadResult
//   99 file already received                     -> UploadResult{duplicate=true} (success)
//   5  not authenticated                         -> token renewed, request repeated once
//   1  sender not authorized for company         -> SiiRejected "sii.upload.sender_not_authorized"
//   2  file size error                           -> SiiRejected "sii.upload.size"
//   3  file truncated                            -> SiiTransportError "sii.upload.truncated" (retry)
//   6  company not authorized                    -> SiiRejected "sii.upload.company_not_authorized"
//   7  schema error (DETAIL/ERROR)               -> SiiRejected "sii.upload.schema"
//   8  signature error                           -> SiiRejected "sii.upload.signature"
//   9  system blocked                            -> SiiTransportError "sii.upload.blocked" (retry)
//   other                                        -> SiiTransportError "sii.upload.internal" (retry)
//   HTML page / "Error 500" / empty body         -> SiiTransportError "sii.html_answer" (outcome
//                                                   unclear: see "Upload strategy")
//
// QueryEstUp ESTADO -> EnvelopeState:
//   REC SOK CRT FOK PDR PRD, and 004 005 007 106 107 -8     -> in_progress
//   -11 with ERR_CODE 2 (not processed yet) or SRV_CODE 2   -> in_progress
//   EPR: RECHAZADOS > 0 -> rejected; REPAROS > 0 -> accepted_with_objections;
//        ACEPTADOS == INFORMADOS -> accepted  (EPR alone is not acceptance)
//        EPR without counts: books/RVD (EnvelopeKind::kBook) and kAuto -> accepted (final);
//        an EnvioDTE (kDocuments) -> SiiMalformedAnswer "sii.no_counts"
//   RPR RLV (counts read when present)                      -> accepted_with_objections
//   RCH RCT RFR RSC RCS RCO VOF                             -> rejected
//   Books: LOK (book consistent)                            -> accepted
//          LRH (book rejected), LNC LRF LRS [UNCERTAIN]     -> rejected
//   Every row, with its meaning and source: state_table().
//   RPT (repeated envelope)                                 -> rejected (duplicate = true)
//   001 002 003                                             -> token renewed, query repeated once
//   -11 ERR_CODE 1 / other negative codes                   -> SiiRejected "sii.status.<code>"
//   anything else                                           -> SiiMalformedAnswer "sii.unknown_state"
// Boleta REST envelope estado: same letters; estadistica gives the counts, detalle_rep_rech the
// documents with objections/rejections (null while processing = in_progress); 404 -> SiiRejected
// "sii.status.unknown_trackid".
//
// QueryEstDte / QueryEstDteAv / boleta document ESTADO -> DocumentState:
//   DOK received (data match)             DNK received, data do not match
//   FAU not received                      FNA folio not authorized      FAN folio annulled
//   EMP company not authorized            TMD TMC MMD MMC modified by a note
//   AND ANC annulled by a note            001/002/003 token (renew, repeat once)
//   -1 .. -14 query errors                -> SiiRejected "sii.docstatus.<code>"
//   other                                 -> SiiMalformedAnswer "sii.unknown_state"
//
// RegistroReclamoDTE codResp is a value (ClaimResult): 0 done, 7 already registered (idempotent
// success), 8 more than 8 days (terminal), others per PROTOCOL §5; -1 -> SiiTransportError (retry).
// SOAP Fault "TOKEN invalido" -> token renewed, request repeated once.
//
// ---------------------------------------------------------------------------------------------
// Upload strategy (an upload is never repeated blindly)
//   * The file is sent byte for byte as given; a retry resends the SAME bytes (never rebuilt or
//     re-signed), so SII's duplicate detection answers STATUS 99 if it already has the file.
//   * Failures before the connection is established (connect refused, DNS, circuit open) are
//     retried with backoff: nothing reached SII.
//   * After an unclear outcome (timeout after sending, dropped connection, 5xx, HTML, truncated
//     answer) the client first asks SII whether it has the documents (QueryEstDte of every DTE in
//     the envelope; boleta: the document status endpoint). If any is known to SII the upload is
//     reported as received (UploadResult{duplicate=true, verified=true}) without resending.
//     Otherwise it resends the identical bytes (STATUS 99 then means "it had arrived after all").
//   * The SHA-256 of every file whose last outcome was unclear is remembered by the client, so a
//     later call for the same bytes (e.g. the application's next retry) probes first as well.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dte/cert.hpp"
#include "dte/errors.hpp"

namespace dte {

// ---------------------------------------------------------------------------------- errors

class SiiError : public DteError {
 public:
  using DteError::DteError;
};

class SiiTransportError : public SiiError {
 public:
  SiiTransportError(std::string code, const std::string& message, bool maybe_delivered = true)
      : SiiError(std::move(code), message), maybe_delivered_(maybe_delivered) {}
  bool maybe_delivered() const noexcept { return maybe_delivered_; }

 private:
  bool maybe_delivered_;
};

class SiiAuthError : public SiiError {
 public:
  using SiiError::SiiError;
};

class SiiRejected : public SiiError {
 public:
  SiiRejected(std::string code, const std::string& message, std::string sii_code,
              std::vector<std::string> details = {})
      : SiiError(std::move(code), message), sii_code_(std::move(sii_code)),
        details_(std::move(details)) {}
  const std::string& sii_code() const noexcept { return sii_code_; }
  const std::vector<std::string>& details() const noexcept { return details_; }

 private:
  std::string sii_code_;
  std::vector<std::string> details_;
};

class SiiMalformedAnswer : public SiiError {
 public:
  using SiiError::SiiError;
};

namespace sii {

// ---------------------------------------------------------------------------- environments

enum class Environment { kCertification, kProduction, kSimulator };
std::string to_string(Environment e);
Environment environment_from_string(std::string_view s);  // throws DteError "sii.bad_environment"

// Base URLs (no trailing slash). Service paths are appended (PROTOCOL §1).
struct Endpoints {
  std::string soap_base;          // CrSeed, GetTokenFromSeed, QueryEst*   (maullin/palena)
  std::string upload_base;        // /cgi_dte/UPL/DTEUpload                (maullin/palena)
  std::string claims_url;         // full RegistroReclamoDTE service URL   (ws2/ws1)
  std::string boleta_api_base;    // /recursos/v1/... semilla/token/status (apicert/api)
  std::string boleta_envio_base;  // /recursos/v1/boleta.electronica.envio (pangal/rahue)
  std::string soap_namespace_host = "maullin";  // host in the SOAP body namespaces
};

// Default endpoints; for kSimulator `simulator_base` ("http://127.0.0.1:PORT") is required and the
// boleta hosts become base + "/apicert" and base + "/pangal" (simulator README).
Endpoints default_endpoints(Environment e, std::string_view simulator_base = {});

// ------------------------------------------------------------------------------ resilience

struct RetryPolicy {
  int max_attempts = 4;        // total tries of one request (>= 1)
  double base_delay_s = 0.5;   // delay before the 2nd try
  double max_delay_s = 8.0;    // cap of one delay
  double jitter = 0.5;         // share of the delay that is randomised, in [0, 1]
};

// Delay before attempt `attempt` (2 = first retry): min(max, base * 2^(attempt-2)) scaled by
// (1 - jitter * u), u in [0, 1). Pure, so it can be tested exactly.
double backoff_delay(const RetryPolicy& p, int attempt, double u);

struct BreakerPolicy {
  int failure_threshold = 5;   // consecutive failures that open the circuit
  double open_seconds = 30.0;  // time open before one trial request is let through (half-open)
  int half_open_successes = 1; // successes in half-open that close it again
};

enum class BreakerState { kClosed, kOpen, kHalfOpen };
std::string to_string(BreakerState s);

// A circuit breaker for one endpoint. Times are seconds on any monotonic clock, passed in so the
// logic can be tested without sleeping. Thread-safe.
class CircuitBreaker {
 public:
  explicit CircuitBreaker(BreakerPolicy p = {}) : policy_(p) {}
  // Whether a request may go now; in half-open only one trial at a time is let through.
  bool allow(double now);
  void record_success(double now);
  void record_failure(double now);
  BreakerState state(double now);

 private:
  BreakerPolicy policy_;
  std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;
  int failures_ = 0;
  int successes_ = 0;
  double opened_at_ = 0;
  bool trial_in_flight_ = false;
};

// --------------------------------------------------------------------------- shared state

// State shared by every client of every process and machine (the Redis implementation is in
// dte/redis.hpp). Without one (ClientConfig::shared == nullptr, the embedded default) tokens and
// breakers live in this process only. Implementations are thread-safe and never throw: when the
// store is unreachable they answer as if it were empty (fetch a token, let requests through), so
// an outage of the store degrades to per-process behaviour instead of stopping SII traffic.
class SharedState {
 public:
  virtual ~SharedState() = default;
  // Token cache: the token stored under `key`, nullopt when none (or expired).
  virtual std::optional<std::string> token_get(const std::string& key) = 0;
  virtual void token_put(const std::string& key, const std::string& token, double ttl_s) = 0;
  // Removes the token under `key` only if it is still `stale` ("" = whatever it is).
  virtual void token_drop(const std::string& key, const std::string& stale) = 0;
  // Renewal lock, so that one caller among all processes renews a token at a time. `owner` is
  // unique per attempt; the lock lapses after `lease_s` if its holder dies.
  virtual bool token_try_lock(const std::string& key, const std::string& owner, double lease_s) = 0;
  virtual void token_unlock(const std::string& key, const std::string& owner) = 0;
  // Circuit breaker per endpoint (same policy semantics as CircuitBreaker, on the store's clock).
  virtual bool breaker_allow(const std::string& endpoint, const BreakerPolicy& p) = 0;
  virtual void breaker_record(const std::string& endpoint, bool success, const BreakerPolicy& p) = 0;
  virtual BreakerState breaker_state(const std::string& endpoint, const BreakerPolicy& p) = 0;
  // Token bucket `bucket` refilled at `rate_per_s` up to `burst`: 0 when a token was taken,
  // otherwise the seconds to wait before asking again.
  virtual double rate_acquire(const std::string& bucket, double rate_per_s, double burst) = 0;
};

// ----------------------------------------------------------------------------- configuration

struct ClientConfig {
  Environment environment = Environment::kCertification;
  Endpoints endpoints;  // filled from default_endpoints() when soap_base is empty
  std::string upload_user_agent = "Mozilla/4.0 (compatible; PROG 1.0; Windows NT 5.0; YComp 5.0.2.4)";
  std::string boleta_user_agent = "Mozilla/4.0 ( compatible; PROG 1.0; Windows NT)";
  double connect_timeout_s = 10.0;
  double timeout_s = 60.0;        // whole request (send + answer)
  double token_ttl_s = 1800.0;    // renew before this age even without an expiry signal
  RetryPolicy retry;
  BreakerPolicy breaker;
  bool verify_tls = true;
  std::string ca_file;            // extra CA bundle, "" = system
  unsigned batch_threads = 0;     // 0 = pool size
  std::uint64_t random_seed = 0;  // jitter RNG seed, 0 = random
  std::shared_ptr<SharedState> shared;  // tokens, breakers and rate shared across processes
  double rate_per_s = 0;          // requests per second to SII over all sharers (0 = no limit;
  double rate_burst = 0;          // needs `shared`); burst 0 = max(1, rate_per_s)
};

// -------------------------------------------------------------------------------- answers

// SII:RESPUESTA: header and body fields in document order.
struct Respuesta {
  std::vector<std::pair<std::string, std::string>> header;
  std::vector<std::pair<std::string, std::string>> body;
  std::string hdr(std::string_view name) const;   // "" when absent
  std::string first(std::string_view name) const; // body field, "" when absent
};

enum class EnvelopeState { kInProgress, kAccepted, kAcceptedWithObjections, kRejected };
std::string to_string(EnvelopeState s);

// What an upload holds, for reading its QueryEstUp answer. Books (LibroCV, LibroGuia) and the
// boleta summary (ConsumoFolios/RVD) have no per-type counts: their EPR (or LOK) is final as it
// stands. An EnvioDTE's EPR without counts is a malformed answer ("EPR is not acceptance").
// kAuto (callers that do not know, e.g. `dte status`) takes an EPR without counts as accepted.
enum class EnvelopeKind { kAuto, kDocuments, kBook };
std::string to_string(EnvelopeKind k);
EnvelopeKind envelope_kind_from_string(std::string_view s);  // auto|documents|book, else DteError
// The kind of an envelope from its root element: EnvioDTE/EnvioBOLETA -> kDocuments,
// LibroCompraVenta (LibroCV)/LibroGuia/LibroBoleta/ConsumoFolios -> kBook, anything else kAuto.
EnvelopeKind envelope_kind_of_root(std::string_view root_local_name);

// One row of the documented code tables (state_table()): every code the client understands, per
// service, with its meaning, whether it is final, and the verdict it leads to ("in_progress",
// "accepted", "accepted_with_objections", "rejected", "not_received", "token", "error", "ok").
struct StateInfo {
  std::string service;  // upload | estup | estup_book | estdte | boleta_envelope | boleta_document | correo
  std::string code;
  std::string meaning;
  bool final = false;
  std::string verdict;
  std::string source;   // OFFICIAL | IMPL | COMMUNITY | UNCERTAIN (PROTOCOL.md tags)
};
const std::vector<StateInfo>& state_table();

enum class DocumentState {
  kReceived, kDataMismatch, kNotReceived, kFolioNotAuthorized, kFolioAnnulled,
  kCompanyNotAuthorized, kModifiedByNote, kAnnulledByNote
};
std::string to_string(DocumentState s);

struct UploadAnswer {  // parsed RECEPCIONDTE
  int status = -1;
  std::string track_id, timestamp, file, rut_sender, rut_company;
  std::vector<std::string> errors;
};

struct UploadResult {
  std::string track_id;    // "" when duplicate (SII does not repeat it)
  bool duplicate = false;  // STATUS 99 / estado RPT, or found at SII after an unclear outcome
  bool verified = false;   // presence confirmed by a status query after an unclear outcome
  int status = 0;          // STATUS (boleta: 0 for REC, 99 for RPT)
  std::string timestamp;
  std::string family;      // "dte" or "boleta"
  int attempts = 1;
};

struct TypeCounts {
  int doc_type = 0, informed = 0, accepted = 0, rejected = 0, objections = 0;
};

struct DocumentOutcome {  // boleta detalle_rep_rech entry
  int doc_type = 0;
  long long folio = 0;
  std::string state;  // DOK / RPR / RLV / RCH
  std::string description;
  std::vector<std::string> errors;  // "codigo: descripcion"
};

struct EnvelopeStatus {
  std::string track_id;
  EnvelopeState state = EnvelopeState::kInProgress;
  std::string sii_state;  // ESTADO as given
  std::string glosa;
  bool final = false;
  bool duplicate = false;
  std::vector<TypeCounts> counts;
  std::vector<DocumentOutcome> details;
  std::string num_atencion;
};

struct DocumentQuery {
  std::string issuer_rut;    // RUTEmisor
  std::string receiver_rut;  // RUTRecep
  int doc_type = 0;
  long long folio = 0;
  std::string date;          // FchEmis "YYYY-MM-DD"
  long long amount = 0;      // MntTotal
  std::string signature_value;  // QueryEstDteAv only
};

struct DocumentStatus {
  DocumentState state = DocumentState::kNotReceived;
  std::string sii_state;
  std::string err_code;
  std::string glosa;
  std::string description;
  // Classification (state_table(), service "estdte"): DOK and the note states are accepted and
  // final; DNK accepted_with_objections (SII has it, the data asked about differ); FNA FAN EMP
  // rejected and final (SII will never take that folio); FAU not_received and not final.
  bool final = false;
  std::string verdict;
};

// wsDTECorreo.reenvioCorreo: SII e-mails the result of an upload (with the per-document error
// codes QueryEstUp does not give) again to the company's registered address.
//   0 request received                    -> MailResendResult{code 0}
//   104, 001/002/003 token                -> token renewed, request repeated once
//   101 RUT check digit, 102 missing data, 105 unknown track id, 106 user without rights on the
//   company, 114 upload not validated yet (no e-mail exists)     -> SiiRejected "sii.mail.<code>"
//   103 107 108 110 111 112 113 internal  -> SiiTransportError "sii.mail.internal" (retry)
//   other                                 -> SiiMalformedAnswer "sii.unknown_state"
struct MailResendResult {
  int code = -1;
  std::string glosa;
  std::string description;
  bool ok() const noexcept { return code == 0; }
};

struct ClaimResult {
  int code = -1;
  std::string description;
  bool ok() const noexcept { return code == 0 || code == 7; }
};

struct ClaimEvent {
  std::string code, description, responsible_rut, date;
};

struct EventsResult {
  int code = -1;
  std::string description;
  std::vector<ClaimEvent> events;
};

// Pure parsers (offline-testable). Inputs are raw bytes as received.
// Lenient decoding: bytes that are not valid UTF-8 are taken as Latin-1.
std::string lenient_utf8(std::string_view bytes);
// Text of the first *Return element of an RPC SOAP answer; SOAP Fault -> SiiTransportError
// ("sii.soap_fault", with the faultstring), unparsable -> SiiTransportError "sii.garbled_answer".
std::string soap_return_text(std::string_view soap);
// The faultstring of a SOAP Fault, or nullopt when the body is not a Fault.
std::optional<std::string> soap_fault_string(std::string_view soap);
Respuesta parse_respuesta(std::string_view xml);
UploadAnswer parse_upload_answer(std::string_view body);
// Throws per the table above for non-success STATUS values (5 included: "sii.token_expired").
void check_upload_status(const UploadAnswer& a);
std::string upload_status_meaning(int status);
// Maps a QueryEstUp answer; token codes throw SiiAuthError "sii.token_expired".
EnvelopeStatus interpret_est_up(const Respuesta& r);
EnvelopeStatus interpret_est_up(const Respuesta& r, EnvelopeKind kind);
MailResendResult interpret_mail_resend(const Respuesta& r);
EnvelopeStatus interpret_boleta_status(std::string_view json);
DocumentStatus interpret_doc_state(std::string_view estado, std::string_view err_code,
                                   std::string_view glosa);
ClaimResult parse_claim_answer(std::string_view soap);
EventsResult parse_events_answer(std::string_view soap);
std::string parse_reception_date_answer(std::string_view soap);
// Extracts the DocumentQuery of every DTE in an EnvioDTE/EnvioBOLETA.
std::vector<DocumentQuery> documents_of_envelope(std::string_view envelope_xml);

// ----------------------------------------------------------------------------------- client

struct UploadRequest {
  std::string envelope;     // exact bytes to send
  std::string company_rut;  // "" = RutEmisor of the carátula
  std::string filename = "envio.xml";
};

template <typename T>
struct BatchItem {
  std::optional<T> value;
  std::string error_kind;  // "" | "transport" | "auth" | "rejected" | "malformed" | "error"
  std::string error_code;
  std::string error_message;
  std::string sii_code;
};

class Client {
 public:
  Client(ClientConfig config, std::shared_ptr<const Certificate> cert);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientConfig& config() const noexcept;
  std::string signer_rut() const;

  // Tokens ("soap" or "boleta"), from the shared cache or freshly obtained.
  std::string token(std::string_view family = "soap", bool force_new = false);
  void invalidate_token(std::string_view family = "soap");

  // Upload: EnvioBOLETA goes to the boleta REST envío unless `force_dte_upload` (certification
  // sets of boletas go through DTEUpload). The family is read from the root element.
  UploadResult upload(const UploadRequest& req, bool force_dte_upload = false);
  EnvelopeStatus envelope_status(std::string_view track_id, std::string_view company_rut,
                                 bool boleta = false);
  EnvelopeStatus envelope_status(std::string_view track_id, std::string_view company_rut,
                                 bool boleta, EnvelopeKind kind);
  // wsDTECorreo.reenvioCorreo (table above MailResendResult).
  MailResendResult resend_mail(std::string_view track_id, std::string_view company_rut);
  DocumentStatus document_status(const DocumentQuery& q, bool advanced = false);
  DocumentStatus boleta_document_status(const DocumentQuery& q);

  ClaimResult claim(std::string_view issuer_rut, int doc_type, long long folio,
                    std::string_view action);  // ACD RCD ERM RFP RFT
  EventsResult claim_events(std::string_view issuer_rut, int doc_type, long long folio);
  ClaimResult transferable(std::string_view issuer_rut, int doc_type, long long folio);
  std::string reception_date(std::string_view issuer_rut, int doc_type, long long folio);

  // Batches on the core's pool; errors are captured per item.
  std::vector<BatchItem<UploadResult>> upload_many(const std::vector<UploadRequest>& reqs);
  std::vector<BatchItem<EnvelopeStatus>> status_many(
      const std::vector<std::pair<std::string, std::string>>& track_and_company, bool boleta = false);

  // Breaker state of each endpoint used so far ("upload" -> "closed", ...).
  std::map<std::string, std::string> breaker_states();

  // A POST to an SII service that takes the SOAP-family token as `Cookie: TOKEN=` (the RCV
  // portal facade: rcv::download in rcv_download.cpp), under the endpoint's breaker, retries and
  // renew-once. `body_for(token)` builds the body; `judge(status, body)` throws SiiAuthError
  // "sii.token_expired" on an expiry signal (token renewed, call repeated once),
  // SiiTransportError to retry, anything else to fail. Returns the body `judge` accepted.
  std::string post_with_token(const std::string& endpoint, const std::string& url,
                              const std::string& content_type,
                              const std::function<std::string(const std::string& token)>& body_for,
                              const std::function<void(long status, std::string_view body)>& judge);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sii
}  // namespace dte
