// Reception of suppliers' DTEs (PROTOCOL.md section 10): classify what arrives, verify an
// EnvioDTE addressed to us, and build the signed answers (RespuestaDTE, EnvioRecibos).
#pragma once
#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/mime.hpp"
#include "dte/report.hpp"
#include "dte/schema.hpp"
#include "dte/verify.hpp"
#include "dte/xml.hpp"

namespace dte::reception {

enum class XmlKind { kEnvioDTE, kRespuestaDTE, kEnvioRecibos, kResultadoEnvio, kOther };
const char* to_string(XmlKind k) noexcept;  // "EnvioDTE", "RespuestaDTE", "EnvioRecibos", "ResultadoEnvio", "other"

struct Classification {
  XmlKind kind = XmlKind::kOther;
  std::string root;    // local name of the root element, "" when unreadable
  bool readable = false;  // parsed under the secure limits (no DTD, no entities)
  std::string reason;  // why it is unreadable, or "" when readable
};

// Never throws. ResultadoEnvio covers SII's mails: RESULTADO_ENVIO (revision of an upload) and
// RECEPCIONDTE (upload receipt). EnvioBOLETA counts as EnvioDTE.
Classification classify_xml(std::string_view bytes, const ParseLimits& limits = {});

// Envelope states of RecepcionEnvio (EstadoRecepEnv) and document states (EstadoRecepDTE).
enum EnvioState { kEnvioOk = 0, kEnvioSchema = 1, kEnvioSignature = 2, kEnvioWrongReceiver = 3,
                  kEnvioRepeated = 90, kEnvioUnreadable = 91, kEnvioOther = 99 };
enum DteState { kDteOk = 0, kDteSignature = 1, kDteIssuer = 2, kDteReceiver = 3,
                kDteRepeated = 4, kDteOther = 99 };

struct ReceptionOptions {
  std::string company_rut;               // our RUT: Caratula RutReceptor and each RUTRecep
  const SiiKeyring* keyring = nullptr;   // SII's CAF keys; nullptr: CAF checks fail (untrusted)
  const SchemaSet* schemas = nullptr;    // nullptr: the schema check fails (not skipped)
  bool check_cert_validity = true;
  // Documents already received, as document_key() strings; a match is a duplicate.
  const std::set<std::string>* known = nullptr;
  ParseLimits limits{};
};

// "76543210-3|33|60": issuer, type, folio.
std::string document_key(std::string_view issuer_rut, int doc_type, long long folio);

struct ReceivedDocument {
  VerifiedDocument doc;       // facts from the DTE (id, type, folio, RUTs, date, total)
  std::string key;            // document_key()
  int state = kDteOk;         // EstadoRecepDTE
  std::string glosa;          // RecepDTEGlosa: the failures in words, "DTE Recibido OK" when none
  bool duplicate = false;
  std::vector<Check> checks;  // this document's checks (dte.*, cert.*, ted.*, receiver.rut, duplicate)
  std::string xml;            // the <DTE> element as UTF-8 text (for the bill and the archive)
  bool ok() const noexcept { return state == kDteOk; }
};

struct ReceivedEnvelope {
  std::string kind;           // "EnvioDTE" / "EnvioBOLETA" / what the root was
  std::string set_id;         // SetDTE ID (EnvioDTEID)
  std::string digest;         // the SetDTE signature's DigestValue (Digest)
  std::string rut_emisor, rut_envia, rut_receptor, tmst_firma_env;
  std::vector<Check> checks;  // every check: verify_document's, plus receiver.rut and duplicate
  std::vector<ReceivedDocument> documents;
  int state = kEnvioOk;       // EstadoRecepEnv
  std::string glosa;          // RecepEnvGlosa
  bool ok() const noexcept;   // envelope state 0 and every document state 0
};

// Full verification of a received EnvioDTE: schema, envelope signature, each DTE's signature,
// TED against CAF, CAF against SII's key (keyring), receiver RUT (Caratula RutReceptor and each
// RUTRecep) is company_rut, issuer consistency, duplicates against `known` and within the
// envelope. Never throws for bad content: unreadable input gives state 91 and a failed "xml".
ReceivedEnvelope verify_received(std::string_view bytes, const ReceptionOptions& options);

// --- a whole mail -------------------------------------------------------------------------

struct MessageItem {
  std::string filename;
  std::string part_path;
  Classification classification;
  std::string status;   // "verified", "failed", "unreadable", "refused", "answer", "ignored"
  std::string reason;   // plain words for anything but "verified"
  std::string xml;      // the attachment bytes (verified or not: the original is kept)
  bool has_envelope = false;
  ReceivedEnvelope envelope;  // for EnvioDTE attachments
  std::vector<Check> checks;  // for answers (RespuestaDTE, EnvioRecibos): their signature checks
};

struct MessageOutcome {
  mime::Message mime;        // headers and MIME problems (attachment bytes moved into items)
  std::vector<MessageItem> items;
  bool quarantined = false;  // anything unreadable, refused or failing, or no XML at all
  std::string reason;        // why, in one line
};

// Parses a raw mail and handles every XML attachment: EnvioDTEs are verified with
// verify_received, answers are signature-checked, everything else classified. Never throws for
// bad content; duplicates within the message count as known for the next attachment.
MessageOutcome process_message(std::string_view raw, const ReceptionOptions& options,
                               const mime::MimeLimits& mime_limits = {});

// --- answers ------------------------------------------------------------------------------

struct ResponseCaratula {
  std::string rut_responde;   // us
  std::string rut_recibe;     // the supplier
  long long id_respuesta = 1;
  std::string nmb_contacto, fono_contacto, mail_contacto;  // optional
  std::string tmst_firma;     // empty: now (Chile)
};

struct RecepcionDteItem {
  int tipo_dte = 0;
  long long folio = 0;
  std::string fch_emis, rut_emisor, rut_recep;
  long long mnt_total = 0;
  int estado = kDteOk;
  std::string glosa;
};

struct RecepcionEnvioItem {
  std::string nmb_envio;      // file name of the received envelope
  std::string fch_recep;      // empty: now
  long long cod_envio = 1;    // our number for the envelope
  std::string envio_dte_id, digest, rut_emisor, rut_receptor;
  int estado = kEnvioOk;
  std::string glosa;
  std::vector<RecepcionDteItem> documents;
};

// The RecepcionEnvio item for a verified envelope (its states, glosas and documents).
RecepcionEnvioItem recepcion_from(const ReceivedEnvelope& env, std::string_view nmb_envio,
                                  long long cod_envio, std::string_view fch_recep = {});

struct ResultadoDteItem {
  int tipo_dte = 0;
  long long folio = 0;
  std::string fch_emis, rut_emisor, rut_recep;
  long long mnt_total = 0;
  long long cod_envio = 1;
  int estado = 0;       // 0 accepted, 1 accepted with discrepancies, 2 rejected
  std::string glosa;    // required in words for a rejection (Ley 19.983)
  int cod_rch_dsc = 0;  // negative reason code, 0 = none
};

// RespuestaDTE (RespuestaEnvioDTE_v10.xsd) with RecepcionEnvio items, Resultado signed.
// Throws DocumentError "respuesta.invalid" naming the bad field, CertificateError, SignatureError.
std::string build_recepcion_envio(const ResponseCaratula& caratula,
                                  const std::vector<RecepcionEnvioItem>& items,
                                  const Certificate& cert);
// RespuestaDTE with ResultadoDTE items (commercial acceptance or rejection).
std::string build_resultado_dte(const ResponseCaratula& caratula,
                                const std::vector<ResultadoDteItem>& items,
                                const Certificate& cert);

// The Ley 19.983 declaration, byte-exact from Recibos_v10.xsd's fixed value (ASCII).
extern const char* const kDeclaracionRecibo;

struct ReciboItem {
  int tipo_doc = 0;
  long long folio = 0;
  std::string fch_emis, rut_emisor, rut_recep;
  long long mnt_total = 0;
  std::string recinto;     // where the goods or services were received
  std::string rut_firma;   // empty: the certificate's RUT
  std::string tmst_firma;  // empty: now
};

// EnvioRecibos: each Recibo's DocumentoRecibo signed, then SetRecibos. `caratula.id_respuesta`
// is not used. Throws like the builders above.
std::string build_envio_recibos(const ResponseCaratula& caratula, const std::vector<ReciboItem>& items,
                                const Certificate& cert);

}  // namespace dte::reception
