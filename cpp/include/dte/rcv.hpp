// Registro de Compras y Ventas (RCV): SII's CSV export parsed into typed rows, and the
// reconciliation of those rows against our own documents.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dte/books.hpp"

namespace dte::sii {
class Client;
}

namespace dte::rcv {

struct OtherTax {
  std::string code;       // "24", "271", ... as SII writes it
  long long amount = 0;
  double rate = 0;        // percent, 0 when SII gives none
};

struct Reference {
  int doc_type = 0;
  long long folio = 0;
};

struct Row {
  int line = 0;                    // physical line in the file (header = 1)
  long long nro = 0;               // SII's "Nro" column
  std::string register_kind;       // "venta" / "compra"
  std::string state;               // compras: REGISTRO, PENDIENTE, NO_INCLUIR, RECLAMADO; ventas: REGISTRO
  int doc_type = 0;
  std::string operation;           // Tipo Venta / Tipo Compra as written ("Del Giro")
  std::string issuer_rut;          // who issued the document: the proveedor (compras) or "" (ventas: us)
  std::string counterpart_rut;     // cliente (ventas) / proveedor (compras), SII form
  std::string counterpart_name;    // trimmed
  long long folio = 0;
  std::string issue_date;          // YYYY-MM-DD
  std::string received_at;         // YYYY-MM-DDTHH:MM:SS or ""
  std::string acknowledged_at;
  std::string claimed_at;
  long long exempt = 0;
  long long net = 0;
  long long vat = 0;               // ventas: Monto IVA; compras: Monto IVA Recuperable
  long long vat_non_recoverable = 0;
  int vat_non_recoverable_code = 0;
  long long total = 0;
  std::vector<OtherTax> other_taxes;      // main row plus SII's continuation rows
  std::vector<Reference> references;      // "Folio Docto. Referencia" may list several: "200-300-400"
  std::map<std::string, std::string> cells;  // every non-empty cell by header, unknown columns too
};

struct ParseResult {
  std::string register_kind;          // "venta" / "compra" (from the header)
  std::string state;                  // as given, or guessed from the compras columns
  std::vector<std::string> columns;   // header as written
  std::vector<Row> rows;
  std::vector<books::RowIssue> errors;  // malformed rows: those rows are not in `rows`
  std::vector<std::string> warnings;    // unknown columns, extra cells, ...
};

// Parses an RCV CSV export (UTF-8 or Latin-1 text; ';'). `state` names the compras register the
// file came from (REGISTRO, PENDIENTE, NO_INCLUIR, RECLAMADO); empty = guessed from the columns
// (Fecha Reclamo -> RECLAMADO, no Fecha Acuse -> PENDIENTE, else REGISTRO). Never throws for bad
// content: a header that is not an RCV header is reported as an error of row 1.
ParseResult parse_csv(std::string_view text, std::string_view state = {});

// One of our documents as the reconciliation sees it. Amounts < 0 mean "not known, do not compare".
struct LocalDocument {
  std::string issuer_rut;   // us for sales, the supplier for purchases
  int doc_type = 0;
  long long folio = 0;
  long long exempt = -1;
  long long net = -1;
  long long vat = -1;
  long long total = -1;
  std::string state;        // REGISTRO / PENDIENTE / NO_INCLUIR / RECLAMADO, "" = do not compare
  std::string reference;    // the caller's id for it (an Odoo move id...), echoed in findings
};

struct ReconcileOptions {
  std::string owner_rut;    // our RUT: the issuer of every RCV ventas row
  long long tolerance = 0;  // pesos of difference still accepted as equal
};

// kind: "missing_in_rcv" (ours only), "missing_locally" (SII only), "amount_mismatch" (exempt,
// net, total), "tax_mismatch" (IVA), "state_mismatch", "duplicate" (the same key twice on one side).
struct ReconcileFinding {
  std::string kind;
  std::string issuer_rut;
  int doc_type = 0;
  long long folio = 0;
  std::string field;        // "MntTotal", "MntIVA", "state", ...
  std::string ours;
  std::string sii;
  std::string reference;    // LocalDocument.reference
  int rcv_line = 0;         // Row.line, 0 when not in the RCV
  std::string message;
};

// Matches on (issuer RUT, document type, folio). Findings come sorted by key, then kind.
std::vector<ReconcileFinding> reconcile(const std::vector<Row>& rows,
                                        const std::vector<LocalDocument>& documents,
                                        const ReconcileOptions& options = {});

// --- download from SII (rcv_download.cpp) ----------------------------------------------------
//
// SII publishes no RCV web service; the portal's JSON facade is what every tool calls
// (PROTOCOL.md section 11, [COMMUNITY]): POST {base}/getResumen for the period's totals per
// document type, then POST {base}/getDetalleCompraExport or getDetalleVentaExport per type, whose
// `data` is the CSV export line by line (the same dialect parse_csv reads). Body:
//   {"metaData": {"namespace": "cl.sii.sdi.lob.diii.consdcv.data.api.interfaces.FacadeService/<op>",
//                 "conversationId": TOKEN, "transactionId": uuid, "page": null},
//    "data": {"rutEmisor", "dvEmisor", "ptributario": "YYYYMM", "operacion": "COMPRA"|"VENTA",
//             "estadoContab": REGISTRO|PENDIENTE|NO_INCLUIR|RECLAMADO, "codTipoDoc", ...}}
// with the SOAP-family token as `Cookie: TOKEN=`. Answers carry
// `respEstado {codRespuesta, msgeRespuesta}`: 0 is success; "token no es valido", HTTP 401/403 are
// expiry signals (renewed once); other codes are SiiRejected "sii.rcv.<code>".

struct DownloadRequest {
  std::string company_rut;  // whose register; the client's signer must be authorized for it
  std::string period;       // "YYYY-MM"
  std::string kind;         // "compras" or "ventas"
  std::string state;        // compras: REGISTRO (default), PENDIENTE, NO_INCLUIR, RECLAMADO
                            // (aliases registered, pending, not_included, claimed); ventas: ""
  std::vector<int> doc_types;  // empty: every type the period's summary lists
  std::string base_url;     // "" = the portal facade (www4.sii.cl), or the simulator's own
};

struct TypeSummary {  // one row of getResumen
  int doc_type = 0;
  long long documents = 0;
  long long exempt = 0, net = 0, vat = 0, total = 0;
};

struct Download {
  std::string period, kind, state;   // normalised: "2025-03", "compras", "PENDIENTE"
  std::vector<TypeSummary> summary;
  std::string csv;                   // one header, then every type's rows, as SII exports them
  ParseResult parsed;                // csv through parse_csv (row-level errors kept)
  int requests = 0;                  // facade calls made
};

// Throws DteError "rcv.bad_request" for a malformed request, and the SII client's errors
// (SiiTransportError, SiiAuthError, SiiRejected, SiiMalformedAnswer) for the transport.
Download download(sii::Client& client, const DownloadRequest& request);

// The facade base URL for a client: the simulator's when it is one, else SII's portal.
std::string default_facade_base(const sii::Client& client);

}  // namespace dte::rcv
