// The emission pipeline: input JSON -> normalise -> rules -> XML -> TED -> XMLDSig, and its
// batch form on the core's thread pool.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/report.hpp"

namespace dte {

struct SignOptions {
  std::string timestamp;      // TSTED and TmstFirma; empty = now (Chile)
  std::string today;          // for date rules; empty = today (Chile)
  std::string doc_id;         // Documento ID; empty = "T{type}F{folio}"
  const SiiKeyring* keyring = nullptr;  // when set, the CAF's SII signature must verify
  bool check_certificate_validity = true;
};

struct SignedDte {
  std::string xml;        // ISO-8859-1 bytes with declaration: what goes into the envelope
  std::string id;
  int doc_type = 0;
  long long folio = 0;
  long long total = 0;
  std::string issuer_rut;
  std::string receiver_rut;
  std::string issue_date;
  std::string ted_xml;    // flattened TED, UTF-8, for the barcode
  std::vector<Finding> warnings;
};

// Checks everything that can be known before a folio is spent: the input's rules, the CAF
// (fits issuer/type/folio, not expired, SII signature when a keyring is given, key pair), the
// certificate (private key, validity). Returns every finding; never throws for content.
// A null `caf` or `cert` skips those checks (rules only). Finding codes are the rule engine's
// plus the CafError/CertificateError codes ("caf.folio_out_of_range", "cert.expired", ...).
std::vector<Finding> precheck(std::string_view input_json, const Caf* caf,
                              const Certificate* cert, const SignOptions& options);

// Builds, stamps and signs one DTE. Throws DocumentError "rules.failed" listing the error
// findings (the folio is not consumed: nothing is produced), CafError, CertificateError,
// SignatureError. A CAF that does not fit the document (issuer, type, folio range, expiry) is
// a CafError before the rules run, when the input states those values cleanly: it is the CAF
// given that is wrong, not the document.
SignedDte sign_document(std::string_view input_json, const Caf& caf, const Certificate& cert,
                        const SignOptions& options = {});

// One item of a batch: the document or the error that stopped it.
struct SignOutcome {
  bool ok = false;
  SignedDte dte;
  std::string error_code;
  std::string error_message;
};

// Signs many documents on the core's pool (each with the CAF whose type and range hold its
// folio, preferring one of the document's issuer; none: error_code "caf.not_found").
// `options.doc_id` applies only to a batch of one: every other document gets its default ID.
std::vector<SignOutcome> sign_many(const std::vector<std::string>& inputs,
                                   const std::vector<const Caf*>& cafs, const Certificate& cert,
                                   const SignOptions& options, unsigned threads = 0);

}  // namespace dte
