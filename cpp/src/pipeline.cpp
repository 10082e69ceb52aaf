#include "dte/pipeline.hpp"

#include <openssl/x509.h>

#include <cmath>
#include <cstdlib>
#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>

#include "dte/document.hpp"
#include "dte/errors.hpp"
#include "dte/pool.hpp"
#include "dte/rut.hpp"
#include "dte/signer.hpp"
#include "dte/ted.hpp"
#include "document_internal.hpp"
#include "dte/xml.hpp"
#include "sign_fast.hpp"

namespace dte {
namespace {

using Sev = Finding::Severity;

RuleContext rule_context(const Caf* caf, const SignOptions& options) {
  RuleContext ctx;
  ctx.today = options.today;
  if (caf) {
    const CafInfo& info = caf->info();
    ctx.caf_folio_from = info.folio_from;
    ctx.caf_folio_to = info.folio_to;
    ctx.caf_doc_type = info.doc_type;
    ctx.caf_issuer_rut = info.issuer_rut;
    ctx.caf_expires_on = info.expires_on;
  }
  return ctx;
}

std::string issuer_of(const json& normalized) {
  try {
    const json& v = normalized.at("Encabezado").at("Emisor").at("RUTEmisor");
    return v.is_string() ? v.get<std::string>() : std::string();
  } catch (const json::exception&) {
    return {};
  }
}

std::string describe(const std::vector<Finding>& errors) {
  std::string msg = std::to_string(errors.size()) +
                    (errors.size() == 1 ? " rule failed: " : " rules failed: ");
  for (std::size_t i = 0; i < errors.size(); ++i) {
    if (i) msg += "; ";
    msg += errors[i].code;
    if (!errors[i].field.empty()) msg += " at " + errors[i].field;
    msg += ": " + errors[i].message;
  }
  return msg;
}

Finding error_finding(const DteError& e, std::string field) {
  return Finding{Sev::kError, e.code(), std::move(field), e.what()};
}

bool has_code(const std::vector<Finding>& findings, const std::string& code) {
  return std::any_of(findings.begin(), findings.end(),
                     [&](const Finding& f) { return f.code == code; });
}

// The CAF's own integrity: key pair always, SII's signature when a keyring is given.
void verify_caf(const Caf& caf, const SignOptions& options) {
  if (!caf.info().has_private_key) {
    throw CafError("caf.no_private_key",
                   "the CAF has no RSASK private key: it can check stamps but not make them");
  }
  if (options.keyring) {
    caf.verify(*options.keyring);
    return;
  }
  SiiKeyring none;
  for (const Check& c : caf.check(none)) {
    if (c.status == CheckStatus::kFail && c.name != "caf.sii_signature")
      throw CafError("caf.key_pair", c.reason);
  }
}

xmlNode* document_element(xmlNode* root) {
  for (const char* name : {"Documento", "Liquidacion", "Exportaciones"})
    if (xmlNode* d = child(root, name)) return d;
  return nullptr;
}

// Certificate::check_valid_at(timestamp), remembered per thread for the last certificate and
// timestamp that passed: a batch signs its documents at one TmstFirma (or at most a few seconds
// apart), and reading the certificate's dates back out of ASN.1 every time is not free. The entry
// holds a reference to the X509, so a remembered address is never another certificate's.
void check_valid_at(const Certificate& cert, const std::string& timestamp) {
  thread_local X509Ptr last_cert;
  thread_local std::string last_timestamp;
  X509* x509 = cert.x509();
  if (x509 && x509 == last_cert.get() && timestamp == last_timestamp) return;
  cert.check_valid_at(timestamp);
  std::string copy = timestamp;  // before touching the pair: both change or neither
  if (x509 && X509_up_ref(x509) == 1) {
    last_cert.reset(x509);
    last_timestamp.swap(copy);
  }
}

// Empties a document from the leaves up. json's destructor first moves every nested value of a
// container onto a heap stack (to bound the recursion on any depth), which for a normalised
// document (as deep as the schema, a few levels) costs more than freeing it; emptied containers
// then go without that.
void release(json& doc) noexcept {
  if (doc.is_object()) {
    auto& members = doc.get_ref<json::object_t&>();
    for (auto& m : members)
      if (m.second.is_structured()) release(m.second);
    members.clear();
  } else if (doc.is_array()) {
    auto& items = doc.get_ref<json::array_t&>();
    for (json& item : items)
      if (item.is_structured()) release(item);
    items.clear();
  }
}

// What every signature needs checked first, whichever path then writes the document.
struct Prepared {
  std::vector<Finding> warnings;
  int type = 0;
  long long folio = 0;
  std::string timestamp;
};

// `normalized_here`: `normalized` is normalize()'s output, unchanged (the rules then skip a
// second normalisation). `caf_verified`, when given, is set once the CAF has passed
// verify_caf() and skips it while set: a batch checks each of its CAFs against the keyring once,
// not once per document (a CAF and the keys are immutable; a keyring only gains keys).
Prepared prepare(const json& normalized, const Caf& caf, const Certificate& cert,
                 const SignOptions& options, bool normalized_here,
                 std::atomic<bool>* caf_verified = nullptr) {
  const RuleContext context = rule_context(&caf, options);
  std::vector<Finding> findings = normalized_here
                                      ? detail::check_normalized_rules(normalized, context)
                                      : check_rules(normalized, context);
  std::vector<Finding> errors;
  Prepared p;
  for (auto& f : findings) (f.severity == Sev::kError ? errors : p.warnings).push_back(f);
  if (!errors.empty()) throw DocumentError("rules.failed", describe(errors));

  p.type = doc_type_of(normalized);
  p.folio = folio_of(normalized);
  caf.check_fits(issuer_of(normalized), p.type, p.folio, options.today);
  if (!caf_verified || !caf_verified->load(std::memory_order_relaxed)) {
    verify_caf(caf, options);
    if (caf_verified) caf_verified->store(true, std::memory_order_relaxed);
  }

  p.timestamp = options.timestamp.empty() ? now_timestamp() : options.timestamp;
  if (!cert.has_private_key()) {
    throw CertificateError("cert.no_private_key", "the certificate has no private key to sign with");
  }
  if (options.check_certificate_validity) check_valid_at(cert, p.timestamp);
  return p;
}

SignedDte build_via_dom(const json& normalized, const Caf& caf, const Certificate& cert,
                        Prepared prepared, const std::string& doc_id) {
  const std::string& timestamp = prepared.timestamp;
  XmlDocPtr built = build_document_xml(normalized, doc_id);
  xmlNode* documento = document_element(xmlDocGetRootElement(built.get()));
  if (!documento) throw DocumentError("document.no_documento", "the built DTE has no Documento");
  TedData ted_data = ted_data_from_document(documento, timestamp);
  std::string ted = stamp_ted(ted_data, caf);
  insert_ted(built.get(), ted, timestamp);

  // Sign the tree that the final bytes describe: serialise (formatted, Latin-1), parse back,
  // sign that, and write it without reformatting so no byte under the signature moves.
  const std::string unsigned_bytes = serialize(built.get(), "ISO-8859-1", /*format=*/true);
  built.reset();
  XmlDocPtr doc = parse_xml(unsigned_bytes);
  register_ids(doc.get());
  xmlNode* root = xmlDocGetRootElement(doc.get());
  documento = document_element(root);
  XmlCharPtr id(documento ? xmlGetNoNsProp(documento, BAD_CAST "ID") : nullptr);
  if (!id) throw DocumentError("document.no_id", "the built Documento has no ID attribute");

  SignedDte out;
  out.id = reinterpret_cast<const char*>(id.get());
  append_signature(doc.get(), root, out.id, cert);
  out.xml = serialize(doc.get(), "ISO-8859-1", /*format=*/false);
  out.doc_type = prepared.type;
  out.folio = prepared.folio;
  out.total = std::llround(std::strtod(ted_data.mnt.c_str(), nullptr));  // exports: rounded
  out.issuer_rut = ted_data.re;
  out.receiver_rut = ted_data.rr;
  out.issue_date = ted_data.fe;
  out.ted_xml = std::move(ted);
  out.warnings = std::move(prepared.warnings);
  return out;
}

// `normalized` comes straight from normalize(). `caf_verified`: see prepare().
SignedDte sign_normalized(const json& normalized, const Caf& caf, const Certificate& cert,
                          const SignOptions& options, const std::string& doc_id,
                          std::atomic<bool>* caf_verified = nullptr) {
  Prepared prepared =
      prepare(normalized, caf, cert, options, /*normalized_here=*/true, caf_verified);
  // The direct text path gives the DOM path's bytes; what it declines goes the DOM way.
  if (std::optional<SignedDte> fast =
          detail::sign_fast(normalized, caf, cert, prepared.timestamp, doc_id)) {
    fast->warnings = std::move(prepared.warnings);
    return std::move(*fast);
  }
  return build_via_dom(normalized, caf, cert, std::move(prepared), doc_id);
}

const Caf* pick_caf(const std::vector<const Caf*>& cafs, const json& normalized, int type,
                    long long folio) {
  const Caf* fallback = nullptr;
  auto issuer = Rut::try_parse(issuer_of(normalized));
  for (const Caf* caf : cafs) {
    if (!caf) continue;
    const CafInfo& info = caf->info();
    if (info.doc_type != type || folio < info.folio_from || folio > info.folio_to) continue;
    auto caf_rut = Rut::try_parse(info.issuer_rut);
    if (issuer && caf_rut && *issuer == *caf_rut) return caf;
    if (!fallback) fallback = caf;  // lets sign_document name the issuer mismatch
  }
  return fallback;
}

}  // namespace

SignedDte detail::sign_via_dom(const json& normalized, const Caf& caf, const Certificate& cert,
                               const SignOptions& options, const std::string& doc_id) {
  return build_via_dom(normalized, caf, cert,
                       prepare(normalized, caf, cert, options, /*normalized_here=*/false), doc_id);
}

std::vector<Finding> precheck(std::string_view input_json, const Caf* caf,
                              const Certificate* cert, const SignOptions& options) {
  std::vector<Finding> out;
  json normalized;
  try {
    normalized = detail::normalize(parse_input(input_json));
  } catch (const DteError& e) {
    out.push_back(error_finding(e, ""));
    return out;
  }
  try {
    out = detail::check_normalized_rules(normalized, rule_context(caf, options));
  } catch (const DteError& e) {
    out.push_back(error_finding(e, ""));
  }
  auto add = [&](Finding f) {
    if (!has_code(out, f.code)) out.push_back(std::move(f));
  };

  if (caf) {
    try {
      caf->check_fits(issuer_of(normalized), doc_type_of(normalized), folio_of(normalized),
                      options.today);
    } catch (const DteError& e) {
      add(error_finding(e, "CAF"));
    }
    if (!caf->info().has_private_key) {
      add(Finding{Sev::kError, "caf.no_private_key", "CAF",
                  "the CAF has no RSASK private key: it can check stamps but not make them"});
    }
    try {
      SiiKeyring none;
      for (const Check& c : caf->check(options.keyring ? *options.keyring : none)) {
        if (c.status == CheckStatus::kFail) {
          add(Finding{Sev::kError, c.name == "caf.sii_signature" ? "caf.sii_signature" : "caf.key_pair",
                      "CAF", c.reason});
        } else if (c.status == CheckStatus::kSkip && options.keyring &&
                   c.name == "caf.sii_signature") {
          add(Finding{Sev::kError, "caf.unknown_idk", "CAF", c.reason});
        }
      }
    } catch (const DteError& e) {
      add(error_finding(e, "CAF"));
    }
  }

  if (cert) {
    if (!cert->has_private_key()) {
      add(Finding{Sev::kError, "cert.no_private_key", "certificate",
                  "the certificate has no private key to sign with"});
    }
    if (options.check_certificate_validity) {
      try {
        cert->check_valid_at(options.timestamp.empty() ? now_timestamp() : options.timestamp);
      } catch (const DteError& e) {
        add(error_finding(e, "certificate"));
      }
    }
  }
  return out;
}

SignedDte sign_document(std::string_view input_json, const Caf& caf, const Certificate& cert,
                        const SignOptions& options) {
  json normalized = detail::normalize(parse_input(input_json));
  detail::check_caf_fit_first(normalized, caf, options);
  return sign_normalized(normalized, caf, cert, options, options.doc_id);
}

void detail::check_caf_fit_first(const json& normalized, const Caf& caf, const SignOptions& options) {
  // Values the input does not state cleanly are left to the rules, which name the field.
  std::optional<std::pair<int, long long>> type_folio;
  try {
    type_folio.emplace(doc_type_of(normalized), folio_of(normalized));
  } catch (const DocumentError&) {
    return;
  }
  const std::string issuer = issuer_of(normalized);
  if (Rut::try_parse(issuer))
    caf.check_fits(issuer, type_folio->first, type_folio->second, options.today);
}

std::vector<SignOutcome> sign_many(const std::vector<std::string>& inputs,
                                   const std::vector<const Caf*>& cafs, const Certificate& cert,
                                   const SignOptions& options, unsigned threads) {
  // Per entry of `cafs`: verified against the keyring in this batch already.
  std::unique_ptr<std::atomic<bool>[]> caf_verified(new std::atomic<bool>[cafs.size()]());
  return parallel_map(
      inputs.size(),
      [&](std::size_t i) {
        SignOutcome outcome;
        try {
          json normalized = detail::normalize(parse_input(inputs[i]));
          const int type = doc_type_of(normalized);
          const long long folio = folio_of(normalized);
          const Caf* caf = pick_caf(cafs, normalized, type, folio);
          if (!caf) {
            throw CafError("caf.not_found", "no CAF of type " + std::to_string(type) +
                                                " holds folio " + std::to_string(folio));
          }
          // One doc_id for a whole batch would repeat an ID: each document keeps its default.
          const auto index = static_cast<std::size_t>(
              std::find(cafs.begin(), cafs.end(), caf) - cafs.begin());
          outcome.dte = sign_normalized(normalized, *caf, cert, options,
                                        inputs.size() == 1 ? options.doc_id : std::string(),
                                        &caf_verified[index]);
          outcome.ok = true;
          release(normalized);
        } catch (const DteError& e) {
          outcome.error_code = e.code();
          outcome.error_message = e.what();
        } catch (const std::exception& e) {
          outcome.error_code = "internal";
          outcome.error_message = e.what();
        }
        return outcome;
      },
      threads);
}

}  // namespace dte
