// Private to verify.cpp, verify_stream.cpp and ted.cpp: the parts of verification that the DOM
// verifier and the streaming verifier share, so that both write the very same checks.
#pragma once
#include <openssl/evp.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/report.hpp"
#include "dte/verify.hpp"

namespace dte::detail {

// What verify_ted reads out of a TED and its Documento (by first-child paths, text as
// xmlNodeGetContent gives it, untrimmed).
struct TedParts {
  bool has_dd = false;
  bool has_frmt = false;
  bool has_caf = false;
  std::string caf_flat;  // flattened_element(DD/CAF), UTF-8
  std::string dd_flat;   // flattened_element(DD), UTF-8
  std::string frmt;      // FRMT text
  std::string dd[6];     // DD/RE, TD, F, FE, RR, MNT
  bool has_document = false;
  // Documento's Encabezado: Emisor/RUTEmisor, IdDoc/TipoDTE, IdDoc/Folio, IdDoc/FchEmis,
  // Receptor/RUTRecep, Totales/MntTotal (same order as dd).
  std::string doc[6];
  bool has_receiver = false;  // Encabezado/Receptor/RUTRecep exists
};

TedParts ted_parts(const xmlNode* ted, const xmlNode* documento);

// ted.frmt, ted.caf and ted.consistency, exactly as verify_ted reports them.
std::vector<Check> verify_ted_parts(const TedParts& parts, const SiiKeyring& keyring,
                                    std::string_view subject);

// What KeyInfo says about the signer: the KeyValue key and the X509Certificate.
struct SignerKeys {
  std::shared_ptr<EVP_PKEY> key_value;
  std::string key_value_error;
  bool has_certificate = false;
  std::optional<Certificate> certificate;
  std::string certificate_error;
};

// RSAKeyValue texts (memoised by text) and X509Certificate base64 (memoised by text).
std::shared_ptr<EVP_PKEY> key_from_texts(const std::string& modulus, const std::string& exponent,
                                         std::string* why);
std::optional<Certificate> certificate_from_base64(const std::string& text, std::string* why);

struct SignatureResult {
  bool valid = false;
  bool target_ok = false;
  bool has_target = false;
  std::string signature_reason;
  std::string target_reason;
  std::string signing_time;  // TmstFirma* of the signed element (or its Caratula)
  SignerKeys keys;
};

// <prefix>.signature, <prefix>.signature_target, cert.key_match and (check_validity)
// cert.validity for one signature.
void report_signature(VerifyReport& report, const SignatureResult& r, const std::string& prefix,
                      const std::string& subject, bool check_validity);

void add_check(VerifyReport& report, std::string name, std::string subject, CheckStatus status,
               std::string reason = {});

// A DTE field as a number the way the verifier reads it: 0 when empty or unreadable.
long long number_or_zero(const std::string& s);

// Base64 as xmlsec reads it: alphabet and whitespace only, padding only at the end; non-empty.
bool strict_base64(const std::string& text, std::string* out);

// "T33F12" (or the Documento ID, or "DTE"): how a DTE's checks are named.
std::string dte_subject(int doc_type, long long folio, const std::string& id);

// ted.frmt/ted.caf/ted.consistency from `checks`, or three skips when it throws DteError.
void report_ted(VerifyReport& report, const std::string& subject,
                const std::function<std::vector<Check>()>& checks);

// Appends the document, ok when none of the checks from `first_check` on failed.
void add_document(VerifyReport& report, VerifiedDocument vd, std::size_t first_check);

// The report of a document in SII's common shapes (a DTE, an EnvioDTE or EnvioBOLETA whose
// signatures all verify) from one streaming pass: no tree is built. False, with `report` left
// empty, for anything else (other shapes, any failing or unusual check, malformed XML, schemas
// asked for): the DOM verifier then decides and explains. When it answers, its report is the
// one the DOM verifier writes, check for check.
bool stream_verify(std::string_view bytes, const VerifyOptions& options, VerifyReport* report,
                   struct EnvelopeFacts* facts = nullptr);

// What reception reads from an EnvioDTE besides the checks, collected by the same pass when
// asked (`complete` false when the pass could not: the caller then parses the envelope).
struct EnvelopeFacts {
  bool complete = false;
  std::string set_id;
  std::string rut_emisor, rut_envia, rut_receptor, tmst_firma_env;  // Caratula
  std::string digest;  // the envelope Signature's DigestValue
  // Each SetDTE/DTE as xmlNodeDump writes it (UTF-8, no declaration): what serialize_node gives.
  std::vector<std::string> dte_xml;
};

}  // namespace dte::detail
