// Verification of any signed SII document from its original bytes.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "dte/caf.hpp"
#include "dte/report.hpp"
#include "dte/schema.hpp"

namespace dte {

struct VerifiedDocument {
  std::string id;        // Documento ID
  int doc_type = 0;
  long long folio = 0;
  std::string issuer_rut;
  std::string receiver_rut;
  std::string issue_date;
  long long total = 0;
  std::string signed_at;  // TmstFirma
  bool ok = false;        // every check of this document passed (skips allowed)
};

struct VerifyReport {
  std::string kind;  // root element: "EnvioDTE", "EnvioBOLETA", "DTE", "RespuestaDTE", ...
  std::vector<Check> checks;
  std::vector<VerifiedDocument> documents;
  bool ok() const noexcept;  // no check failed
};

struct VerifyOptions {
  const SiiKeyring* keyring = nullptr;  // nullptr: CAF signature checks are skipped
  const SchemaSet* schemas = nullptr;   // nullptr: schema check skipped
  bool check_cert_validity = true;      // signer certificate valid at TmstFirma(Env)
  ParseLimits limits{};
  // The one-pass streaming verifier answers the common shapes (a DTE, an EnvioDTE/EnvioBOLETA,
  // every signature valid) without building a tree; anything else goes to the DOM verifier,
  // which writes the same report. false: always the DOM verifier (tests compare the two).
  bool streaming = true;
};

// Checks, each named in the report: "xml" (well-formed, secure), "schema", "envelope.signature",
// "envelope.subtotals" (Caratula SubTotDTE matches), then per document "dte.signature",
// "dte.signature_target" (the Reference points at this DTE's own Documento: no wrapping),
// "cert.key_match" (KeyValue is the certificate's key), "cert.validity", "ted.frmt", "ted.caf",
// "ted.consistency". Inner DTE signatures are checked in place and, when the namespace context
// of the envelope changes their canonical form, standalone as SII does. Never throws for bad
// content: unusable input (not XML) is reported as a failed "xml" check.
VerifyReport verify_document(std::string_view bytes, const VerifyOptions& options);

// Verifies one ds:Signature node in place; `reason` gets the failure. The key comes from
// KeyValue and must match X509Certificate's key when both are present.
bool verify_signature_node(xmlDoc* doc, xmlNode* signature, std::string* reason,
                           xmlNode** signed_element = nullptr);

}  // namespace dte
