#include "dte/verify.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <xmlsec/crypto.h>
#include <xmlsec/xmldsig.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include "dsig_internal.hpp"
#include "dte/cert.hpp"
#include "dte/errors.hpp"
#include "dte/signer.hpp"
#include "dte/ted.hpp"
#include "dte/xml.hpp"
#include "verify_internal.hpp"

namespace dte {
namespace {

using OsslParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, CDeleter<OSSL_PARAM_BLD_free>>;
using OsslParamPtr = std::unique_ptr<OSSL_PARAM, CDeleter<OSSL_PARAM_free>>;

bool is_element(const xmlNode* n, std::string_view local, const char* ns = nullptr) {
  if (!n || n->type != XML_ELEMENT_NODE) return false;
  if (std::string_view(reinterpret_cast<const char*>(n->name)) != local) return false;
  if (!ns) return true;
  return n->ns && n->ns->href && xmlStrEqual(n->ns->href, BAD_CAST ns);
}

bool is_signature(const xmlNode* n) { return is_element(n, "Signature", kDsigNs); }

std::string local_name(const xmlNode* n) { return reinterpret_cast<const char*>(n->name); }

std::string attr(const xmlNode* n, const char* name) {
  XmlCharPtr v(xmlGetNoNsProp(n, BAD_CAST name));
  return v ? std::string(reinterpret_cast<char*>(v.get())) : std::string();
}

xmlNode* dsig_child(const xmlNode* parent, std::string_view local) {
  for (xmlNode* c = parent ? parent->children : nullptr; c; c = c->next)
    if (is_element(c, local, kDsigNs)) return c;
  return nullptr;
}

std::vector<xmlNode*> signature_children(const xmlNode* parent) {
  std::vector<xmlNode*> out;
  for (xmlNode* c = parent->children; c; c = c->next)
    if (is_signature(c)) out.push_back(c);
  return out;
}

// RSAKeyValue (Modulus, Exponent) as a public key; nullptr when absent or unusable.
EvpPkeyPtr parse_key_value(const std::string& modulus_b64, const std::string& exponent_b64,
                           std::string* why) {
  std::string n, e;
  try {
    n = base64_decode(modulus_b64);
    e = base64_decode(exponent_b64);
  } catch (const DteError& err) {
    if (why) *why = std::string("RSAKeyValue is not base64: ") + err.what();
    return nullptr;
  }
  if (n.empty() || e.empty()) {
    if (why) *why = "RSAKeyValue lacks Modulus or Exponent";
    return nullptr;
  }
  BignumPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                           static_cast<int>(n.size()), nullptr));
  BignumPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                           static_cast<int>(e.size()), nullptr));
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get())) {
    if (why) *why = "cannot build the RSAKeyValue key";
    return nullptr;
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    ERR_clear_error();
    if (why) *why = "RSAKeyValue is not a usable RSA key";
    return nullptr;
  }
  return EvpPkeyPtr(raw);
}

// A bounded, process-wide memo of what was parsed out of KeyInfo, keyed by the exact text: a batch
// from one signer carries the same certificate and key in every document, and OpenSSL 3's
// decoders are the dearest part of verifying one. Only successes are kept (failures explain
// themselves anew each time); values are immutable and shared.
template <typename V>
class TextMemo {
 public:
  std::optional<V> find(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  void put(const std::string& key, V value) {
    std::lock_guard lock(mu_);
    if (map_.size() >= 256) map_.clear();
    map_.emplace(key, std::move(value));
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, V> map_;
};


using detail::SignerKeys;
// The shared result plus the signed element itself, which the DOM checks go on to read.
struct SignatureResult : detail::SignatureResult {
  xmlNode* target = nullptr;
};
using detail::certificate_from_base64;
using detail::strict_base64;
using detail::number_or_zero;

SignerKeys read_keys(const xmlNode* sig) {
  SignerKeys k;
  if (xmlNode* rsa = dsig_child(dsig_child(dsig_child(sig, "KeyInfo"), "KeyValue"), "RSAKeyValue"))
    k.key_value = detail::key_from_texts(node_text(dsig_child(rsa, "Modulus")),
                                         node_text(dsig_child(rsa, "Exponent")), &k.key_value_error);
  xmlNode* x509 = dsig_child(dsig_child(dsig_child(sig, "KeyInfo"), "X509Data"),
                             "X509Certificate");
  if (x509) {
    k.has_certificate = true;
    k.certificate = certificate_from_base64(node_text(x509), &k.certificate_error);
  }
  return k;
}

EVP_PKEY* verification_key(const SignerKeys& k) {
  if (k.key_value) return k.key_value.get();
  if (k.certificate) return X509_get0_pubkey(k.certificate->x509());
  return nullptr;
}

// The element the single Reference of `sig` points at, or nullptr with the reason.
xmlNode* reference_target(xmlDoc* doc, const xmlNode* sig, std::string* why) {
  xmlNode* signed_info = dsig_child(sig, "SignedInfo");
  if (!signed_info) {
    *why = "Signature has no SignedInfo";
    return nullptr;
  }
  std::vector<xmlNode*> refs;
  for (xmlNode* c = signed_info->children; c; c = c->next)
    if (is_element(c, "Reference", kDsigNs)) refs.push_back(c);
  if (refs.size() != 1) {
    *why = "SignedInfo must hold exactly one Reference (found " + std::to_string(refs.size()) + ")";
    return nullptr;
  }
  if (!xmlHasProp(refs[0], BAD_CAST "URI")) {
    *why = "Reference has no URI";
    return nullptr;
  }
  std::string uri = attr(refs[0], "URI");
  if (uri.empty()) return xmlDocGetRootElement(doc);
  if (uri[0] != '#' || uri.size() < 2 || uri.find_first_of("()/ ") != std::string::npos) {
    *why = "unsupported Reference URI '" + uri + "' (expected \"#ID\" or \"\")";
    return nullptr;
  }
  xmlAttr* id = xmlGetID(doc, BAD_CAST uri.c_str() + 1);
  if (!id || !id->parent) {
    *why = "Reference URI '" + uri + "' points at no element";
    return nullptr;
  }
  return id->parent;
}

// The signed element must be the one this signature is placed to cover: a sibling of the
// Signature (DTE: its Documento; EnvioDTE: SetDTE; AEC: DocumentoAEC...), or the whole
// document for an enveloped URI="" signature of the root. Anything else is wrapping.
bool target_is_expected(const xmlNode* sig, const xmlNode* target, std::string* why) {
  const xmlNode* parent = sig->parent;
  if (target == parent && parent == xmlDocGetRootElement(sig->doc)) return true;
  if (target->parent != parent || target == sig) {
    *why = "the Reference points at <" + local_name(target) +
           "> elsewhere in the document, not at a sibling of the Signature (signature wrapping)";
    return false;
  }
  if (is_element(parent, "DTE")) {
    std::string name = local_name(target);
    if (name != "Documento" && name != "Exportaciones" && name != "Liquidacion") {
      *why = "a DTE's Signature must cover its Documento/Exportaciones/Liquidacion, not <" +
             name + ">";
      return false;
    }
  }
  return true;
}

enum class SigOutcome { kValid, kDigest, kRsa, kError };

SigOutcome xmlsec_verify_full(xmlNode* sig, EVP_PKEY* key, std::string* why) {
  init_xmlsec();
  detail::take_xmlsec_errors();
  detail::XmlSecDSigCtxPtr ctx(xmlSecDSigCtxCreate(nullptr));
  if (!ctx) {
    *why = "cannot create an xmlsec context";
    return SigOutcome::kError;
  }
  // Only what SII's profile can need: same-document references and C14N/digest/RSA.
  ctx->enabledReferenceUris = xmlSecTransformUriTypeEmpty | xmlSecTransformUriTypeSameDocument;
  for (xmlSecTransformId id :
       {xmlSecTransformInclC14NId, xmlSecTransformInclC14NWithCommentsId,
        xmlSecTransformExclC14NId, xmlSecTransformExclC14NWithCommentsId,
        xmlSecTransformEnvelopedId, xmlSecTransformSha1Id, xmlSecTransformSha256Id}) {
    xmlSecDSigCtxEnableReferenceTransform(ctx.get(), id);
  }
  for (xmlSecTransformId id :
       {xmlSecTransformInclC14NId, xmlSecTransformInclC14NWithCommentsId,
        xmlSecTransformExclC14NId, xmlSecTransformExclC14NWithCommentsId,
        xmlSecTransformRsaSha1Id, xmlSecTransformRsaSha256Id}) {
    xmlSecDSigCtxEnableSignatureTransform(ctx.get(), id);
  }
  try {
    ctx->signKey = detail::xmlsec_key(key, nullptr).release();
  } catch (const DteError& e) {
    *why = e.what();
    return SigOutcome::kError;
  }
  if (xmlSecDSigCtxVerify(ctx.get(), sig) < 0) {
    *why = "xmlsec cannot process the Signature: " + detail::take_xmlsec_errors();
    return SigOutcome::kError;
  }
  detail::take_xmlsec_errors();
  if (ctx->status == xmlSecDSigStatusSucceeded) return SigOutcome::kValid;
  xmlSecSize n = xmlSecPtrListGetSize(&ctx->signedInfoReferences);
  for (xmlSecSize i = 0; i < n; ++i) {
    auto* ref = static_cast<xmlSecDSigReferenceCtxPtr>(
        xmlSecPtrListGetItem(&ctx->signedInfoReferences, i));
    if (ref && ref->status != xmlSecDSigStatusSucceeded) {
      *why = "digest mismatch: the signed element changed after signing";
      return SigOutcome::kDigest;
    }
  }
  *why = "the RSA signature over SignedInfo does not verify with the signer's key";
  return SigOutcome::kRsa;
}

// ------------------------------------------------------------------------------ fast path
// SII's profile (one same-document "#ID" Reference, no transforms, inclusive C14N 1.0, SHA-1,
// RSA-SHA1) checked directly: canonical forms from the direct C14N writer (or, when it declines
// or disagrees, from the libxml2 C14N engine xmlsec drives, with an O(depth) subtree test instead
// of xmlsec's node-set lookups), and no per-call xmlsec context or key set-up. It only ever answers "valid" for a signature that xmlsec accepts: anything outside
// the profile, anything xmlsec would reject by structure, and every failure go to xmlsec,
// which then gives the verdict and the reason exactly as before.

constexpr const char* kC14N10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
constexpr const char* kRsaSha1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
constexpr const char* kSha1 = "http://www.w3.org/2000/09/xmldsig#sha1";

xmlNode* next_element(xmlNode* n) {
  while (n && n->type != XML_ELEMENT_NODE) n = n->next;
  return n;
}

bool has_element_child(const xmlNode* n) { return next_element(n->children) != nullptr; }

// Exactly the algorithm, with no parameters (child elements) that xmlsec would read.
bool is_algorithm(const xmlNode* n, std::string_view local, const char* uri) {
  return is_element(n, local, kDsigNs) && !has_element_child(n) && attr(n, "Algorithm") == uri;
}

bool fast_verify(xmlNode* sig, EVP_PKEY* key) {
  if (!sig || !sig->doc || !key || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA ||
      EVP_PKEY_get_bits(key) < 1024)
    return false;
  // Signature: SignedInfo, SignatureValue, optional KeyInfo (ignored: the key is given), and
  // nothing else (an Object could carry a Manifest xmlsec would process).
  xmlNode* signed_info = next_element(sig->children);
  if (!is_element(signed_info, "SignedInfo", kDsigNs)) return false;
  xmlNode* signature_value = next_element(signed_info->next);
  if (!is_element(signature_value, "SignatureValue", kDsigNs) || has_element_child(signature_value))
    return false;
  xmlNode* rest = next_element(signature_value->next);
  if (rest && is_element(rest, "KeyInfo", kDsigNs)) rest = next_element(rest->next);
  if (rest) return false;
  // SignedInfo: C14N 1.0, RSA-SHA1, exactly one Reference.
  xmlNode* c14n = next_element(signed_info->children);
  if (!is_algorithm(c14n, "CanonicalizationMethod", kC14N10)) return false;
  xmlNode* method = next_element(c14n->next);
  if (!is_algorithm(method, "SignatureMethod", kRsaSha1)) return false;
  xmlNode* ref = next_element(method->next);
  if (!is_element(ref, "Reference", kDsigNs) || next_element(ref->next)) return false;
  // Reference: URI="#ID" (plain ID characters), DigestMethod SHA-1, DigestValue; no Transforms.
  std::string uri = attr(ref, "URI");
  if (uri.size() < 2 || uri[0] != '#') return false;
  for (std::size_t i = 1; i < uri.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(uri[i]);
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.')) return false;
  }
  xmlNode* digest_method = next_element(ref->children);
  if (!is_algorithm(digest_method, "DigestMethod", kSha1)) return false;
  xmlNode* digest_value = next_element(digest_method->next);
  if (!is_element(digest_value, "DigestValue", kDsigNs) || has_element_child(digest_value) ||
      next_element(digest_value->next))
    return false;
  xmlAttr* id = xmlGetID(sig->doc, BAD_CAST uri.c_str() + 1);
  if (!id || id->type != XML_ATTRIBUTE_NODE || !id->parent) return false;
  xmlNode* target = id->parent;

  std::string expected_digest, signature;
  if (!strict_base64(node_text(digest_value), &expected_digest) ||
      !strict_base64(node_text(signature_value), &signature))
    return false;

  if (!detail::c14n_document_ok(sig->doc)) return false;

  // Canonical forms by the direct writer first; whenever it declines or its result does not
  // check out, libxml2's C14N (the engine xmlsec uses) decides.
  auto digest_matches = [&](const std::string& c14n) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    bool ok = EVP_Digest(c14n.data(), c14n.size(), digest, &digest_len, detail::sha1_md(),
                         nullptr) == 1 &&
              expected_digest.size() == digest_len &&
              CRYPTO_memcmp(expected_digest.data(), digest, digest_len) == 0;
    ERR_clear_error();
    return ok;
  };
  auto signature_verifies = [&](const std::string& c14n) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    bool ok = ctx &&
              EVP_DigestVerifyInit(ctx.get(), nullptr, detail::sha1_md(), nullptr, key) == 1 &&
              EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                               signature.size(),
                               reinterpret_cast<const unsigned char*>(c14n.data()),
                               c14n.size()) == 1;
    ERR_clear_error();
    return ok;
  };
  std::string canon;
  if (!(detail::fast_c14n_subtree(target, &canon) && digest_matches(canon))) {
    canon.clear();
    if (!detail::c14n_subtree(sig->doc, target, &canon) || !digest_matches(canon)) return false;
  }
  canon.clear();
  if (detail::fast_c14n_subtree(signed_info, &canon) && signature_verifies(canon)) return true;
  canon.clear();
  return detail::c14n_subtree(sig->doc, signed_info, &canon) && signature_verifies(canon);
}

SigOutcome xmlsec_verify(xmlNode* sig, EVP_PKEY* key, std::string* why) {
  if (fast_verify(sig, key)) return SigOutcome::kValid;
  return xmlsec_verify_full(sig, key, why);
}

// The signature's parent copied into a fresh document, as SII re-checks an embedded DTE: with
// only xmlns="http://www.sii.cl/SiiDte" (sii_ns) or without any namespace. Returns the copy's
// Signature at the same position.
XmlDocPtr standalone_copy(xmlNode* sig, bool sii_ns, xmlNode** sig_copy) {
  xmlNode* parent = sig->parent;
  XmlDocPtr doc(xmlNewDoc(BAD_CAST "1.0"));
  xmlNode* root = xmlDocCopyNode(parent, doc.get(), 1);
  if (!root) return nullptr;
  xmlDocSetRootElement(doc.get(), root);
  // Built detached and attached last: xmlNewNs refuses a second default declaration on the
  // root, which the copy already has when its namespace came from an ancestor.
  xmlNs* target_ns = sii_ns ? xmlNewNs(nullptr, BAD_CAST kSiiNs, nullptr) : nullptr;
  std::unique_ptr<xmlNs, CDeleter<xmlFreeNs>> target_holder(target_ns);
  // Re-home every SII element (skipping the dsig subtrees, which keep their own namespace),
  // then drop the now unused default SII declarations.
  std::vector<xmlNode*> stack{root};
  while (!stack.empty()) {
    xmlNode* n = stack.back();
    stack.pop_back();
    if (n->type != XML_ELEMENT_NODE || is_signature(n)) continue;
    if (!n->ns || (n->ns->href && xmlStrEqual(n->ns->href, BAD_CAST kSiiNs))) n->ns = target_ns;
    for (xmlNode* c = n->children; c; c = c->next) stack.push_back(c);
  }
  // Second walk: nothing points at the old declarations any more, so they can go.
  stack.assign({root});
  while (!stack.empty()) {
    xmlNode* n = stack.back();
    stack.pop_back();
    if (n->type != XML_ELEMENT_NODE || is_signature(n)) continue;
    xmlNs** link = &n->nsDef;
    while (*link) {
      xmlNs* ns = *link;
      if (!ns->prefix && ns->href && xmlStrEqual(ns->href, BAD_CAST kSiiNs)) {
        *link = ns->next;
        ns->next = nullptr;
        xmlFreeNs(ns);
      } else {
        link = &ns->next;
      }
    }
    for (xmlNode* c = n->children; c; c = c->next) stack.push_back(c);
  }
  if (target_ns) {
    target_ns->next = root->nsDef;
    root->nsDef = target_holder.release();
  }
  register_ids(doc.get());
  // The Signature of the copy sits at the same child position as the original.
  std::size_t index = 0;
  for (xmlNode* c = parent->children; c && c != sig; c = c->next) ++index;
  xmlNode* c = root->children;
  for (std::size_t i = 0; c && i < index; ++i) c = c->next;
  *sig_copy = c;
  return doc;
}


void add(VerifyReport& report, std::string name, std::string subject, CheckStatus status,
         std::string reason = {}) {
  detail::add_check(report, std::move(name), std::move(subject), status, std::move(reason));
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// The signing time the certificate must be valid at: TmstFirma* in the signed element or its
// Caratula (TmstFirma, TmstFirmaEnv, TmstFirmaEnvio, TmstFirmaResp...), TmstCesion for a cession.
std::string signing_time(const xmlNode* target) {
  for (const xmlNode* scope : {target, static_cast<const xmlNode*>(child(target, "Caratula"))}) {
    if (!scope) continue;
    for (xmlNode* c = scope->children; c; c = c->next) {
      if (c->type != XML_ELEMENT_NODE) continue;
      std::string name = local_name(c);
      if (starts_with(name, "TmstFirma") || name == "TmstCesion") return node_text(c);
    }
  }
  return {};
}

// Verifies one Signature with the KeyValue key (the key match is a separate check); inner
// signatures that fail in place are retried standalone as SII does.
SignatureResult check_signature(xmlDoc* doc, xmlNode* sig, bool allow_standalone) {
  SignatureResult r;
  r.keys = read_keys(sig);
  std::string why;
  r.target = reference_target(doc, sig, &why);
  if (!r.target) {
    r.target_reason = why;
    r.signature_reason = why;
    return r;
  }
  r.has_target = true;
  r.signing_time = signing_time(r.target);
  r.target_ok = target_is_expected(sig, r.target, &r.target_reason);
  EVP_PKEY* key = verification_key(r.keys);
  if (!key) {
    r.signature_reason = "KeyInfo holds no usable key" +
                         (r.keys.key_value_error.empty() ? "" : " (" + r.keys.key_value_error + ")");
    return r;
  }
  // Inner signatures are tried standalone with the SII namespace first: that is how SII checks
  // an embedded DTE, and it is also cheap (xmlsec's in-place check walks the whole envelope for
  // every reference, which makes a large envelope quadratic).
  auto verified_standalone = [&](bool sii_ns) {
    xmlNode* sig_copy = nullptr;
    XmlDocPtr copy;
    try {
      copy = standalone_copy(sig, sii_ns, &sig_copy);
    } catch (const DteError&) {
      return false;
    }
    if (!copy || !is_signature(sig_copy)) return false;
    std::string copy_why;
    xmlNode* copy_target = reference_target(copy.get(), sig_copy, &copy_why);
    if (!copy_target || !target_is_expected(sig_copy, copy_target, &copy_why)) return false;
    if (xmlsec_verify(sig_copy, key, &copy_why) != SigOutcome::kValid) return false;
    r.valid = true;
    r.signature_reason =
        sii_ns ? "verified standalone (<" + local_name(sig->parent) +
                     "> copied out with only xmlns=\"http://www.sii.cl/SiiDte\", as SII checks it)"
               : "verified standalone without any namespace (<" + local_name(sig->parent) +
                     "> was signed before being embedded)";
    return true;
  };
  const bool standalone_allowed = allow_standalone && r.target_ok;
  if (standalone_allowed && verified_standalone(true)) return r;
  SigOutcome in_place = xmlsec_verify(sig, key, &why);
  if (in_place == SigOutcome::kValid) {
    r.valid = true;
    r.signature_reason = "verified in place";
    return r;
  }
  r.signature_reason = why;
  if (!standalone_allowed) return r;
  if (verified_standalone(false)) return r;
  r.signature_reason += "; also fails standalone, with and without the SII namespace";
  return r;
}

xmlNode* dte_documento(const xmlNode* dte) {
  for (xmlNode* c = dte->children; c; c = c->next)
    if (is_element(c, "Documento") || is_element(c, "Exportaciones") ||
        is_element(c, "Liquidacion"))
      return c;
  return nullptr;
}

void check_dte(VerifyReport& report, xmlDoc* doc, xmlNode* dte, const VerifyOptions& options,
               const SiiKeyring& keyring) {
  VerifiedDocument vd;
  xmlNode* documento = dte_documento(dte);
  std::string subject;
  if (documento) {
    vd.id = attr(documento, "ID");
    vd.doc_type = static_cast<int>(number_or_zero(text_at(documento, "Encabezado/IdDoc/TipoDTE")));
    vd.folio = number_or_zero(text_at(documento, "Encabezado/IdDoc/Folio"));
    vd.issuer_rut = text_at(documento, "Encabezado/Emisor/RUTEmisor");
    vd.receiver_rut = text_at(documento, "Encabezado/Receptor/RUTRecep");
    vd.issue_date = text_at(documento, "Encabezado/IdDoc/FchEmis");
    vd.total = number_or_zero(text_at(documento, "Encabezado/Totales/MntTotal"));
    vd.signed_at = text_at(documento, "TmstFirma");
  }
  subject = detail::dte_subject(vd.doc_type, vd.folio, vd.id);
  const std::size_t first_check = report.checks.size();
  if (!documento) {
    add(report, "dte.signature", subject, CheckStatus::kFail, "DTE has no Documento");
  } else {
    std::vector<xmlNode*> sigs = signature_children(dte);
    if (sigs.empty()) {
      add(report, "dte.signature", subject, CheckStatus::kFail, "DTE is not signed");
    }
    bool embedded = dte != xmlDocGetRootElement(doc);
    for (xmlNode* sig : sigs) {
      report_signature(report, check_signature(doc, sig, embedded), "dte", subject,
                       options.check_cert_validity);
    }
    xmlNode* ted = child(documento, "TED");
    if (!ted) {
      add(report, "ted.frmt", subject, CheckStatus::kFail, "Documento has no TED");
    } else {
      detail::report_ted(report, subject, [&] { return verify_ted(ted, documento, keyring, subject); });
    }
  }
  detail::add_document(report, std::move(vd), first_check);
}

void check_subtotals(VerifyReport& report, xmlNode* root) {
  xmlNode* set = child(root, "SetDTE");
  xmlNode* caratula = set ? child(set, "Caratula") : nullptr;
  if (!caratula) return;
  std::map<int, long long> declared, found;
  for (xmlNode* st : children(caratula, "SubTotDTE"))
    declared[static_cast<int>(number_or_zero(text_at(st, "TpoDTE")))] += number_or_zero(text_at(st, "NroDTE"));
  for (xmlNode* dte : children(set, "DTE")) {
    xmlNode* d = dte_documento(dte);
    if (d) ++found[static_cast<int>(number_or_zero(text_at(d, "Encabezado/IdDoc/TipoDTE")))];
  }
  std::string subject = attr(set, "ID").empty() ? "SetDTE" : attr(set, "ID");
  if (declared == found) {
    add(report, "envelope.subtotals", subject, CheckStatus::kPass);
    return;
  }
  std::string why = "Caratula SubTotDTE does not match the DTEs in the set:";
  std::set<int> types;
  for (auto& [t, n] : declared) types.insert(t);
  for (auto& [t, n] : found) types.insert(t);
  for (int t : types) {
    long long d = declared.count(t) ? declared[t] : 0;
    long long f = found.count(t) ? found[t] : 0;
    if (d != f)
      why += " type " + std::to_string(t) + " declares " + std::to_string(d) + ", holds " +
             std::to_string(f) + ";";
  }
  why.pop_back();
  add(report, "envelope.subtotals", subject, CheckStatus::kFail, why);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void verify_parsed(VerifyReport& report, xmlDoc* doc, const VerifyOptions& options) {
  xmlNode* root = xmlDocGetRootElement(doc);
  report.kind = local_name(root);
  try {
    register_ids(doc);
  } catch (const DteError& e) {
    add(report, "dte.signature_target", report.kind, CheckStatus::kFail,
        std::string("signature wrapping: ") + e.what());
    return;
  }
  if (options.schemas) {
    try {
      ValidationResult v = options.schemas->validate(doc);
      std::string why;
      for (std::size_t i = 0; i < v.errors.size() && i < 5; ++i) {
        if (!why.empty()) why += "; ";
        why += "line " + std::to_string(v.errors[i].line) + ": " + v.errors[i].message;
      }
      add(report, "schema", v.schema, v.valid ? CheckStatus::kPass : CheckStatus::kFail, why);
    } catch (const DteError& e) {
      add(report, "schema", report.kind, CheckStatus::kSkip, e.what());
    }
  } else {
    add(report, "schema", report.kind, CheckStatus::kSkip, "no schemas given");
  }

  SiiKeyring empty_keyring;
  const SiiKeyring& keyring = options.keyring ? *options.keyring : empty_keyring;
  std::set<xmlNode*> handled;

  if (!is_element(root, "DTE")) {
    std::vector<xmlNode*> sigs = signature_children(root);
    if (sigs.empty()) {
      add(report, "envelope.signature", report.kind, CheckStatus::kFail,
          "the document is not signed");
    }
    for (xmlNode* sig : sigs) {
      handled.insert(sig);
      SignatureResult r = check_signature(doc, sig, false);
      std::string subject = r.target ? attr(r.target, "ID") : std::string();
      report_signature(report, r, "envelope", subject.empty() ? report.kind : subject,
                       options.check_cert_validity);
    }
    if (is_element(root, "EnvioDTE") || is_element(root, "EnvioBOLETA")) {
      check_subtotals(report, root);
    }
  }
  for (xmlNode* dte : descendants(root, "DTE")) {
    for (xmlNode* sig : signature_children(dte)) handled.insert(sig);
    check_dte(report, doc, dte, options, keyring);
  }
  // Any other signature (AEC's DTECedido and Cesion, a Recibo...): checked the same way.
  std::vector<xmlNode*> stack{root};
  std::vector<xmlNode*> others;
  while (!stack.empty()) {
    xmlNode* n = stack.back();
    stack.pop_back();
    if (n->type != XML_ELEMENT_NODE) continue;
    if (is_signature(n)) {
      if (!handled.count(n)) others.push_back(n);
      continue;
    }
    for (xmlNode* c = n->last; c; c = c->prev) stack.push_back(c);
  }
  for (xmlNode* sig : others) {
    SignatureResult r = check_signature(doc, sig, true);
    std::string id = r.target ? attr(r.target, "ID") : std::string();
    std::string subject = local_name(sig->parent) + (id.empty() ? "" : ":" + id);
    report_signature(report, r, lower(local_name(sig->parent)), subject,
                     options.check_cert_validity);
  }
}

}  // namespace

bool VerifyReport::ok() const noexcept {
  return std::none_of(checks.begin(), checks.end(),
                      [](const Check& c) { return c.status == CheckStatus::kFail; });
}

VerifyReport verify_document(std::string_view bytes, const VerifyOptions& options) {
  VerifyReport report;
  if (options.streaming && detail::stream_verify(bytes, options, &report)) return report;
  report = VerifyReport{};
  XmlDocPtr doc;
  try {
    doc = parse_xml(bytes, options.limits);
  } catch (const DteError& e) {
    add(report, "xml", "document", CheckStatus::kFail, e.what());
    return report;
  }
  add(report, "xml", "document", CheckStatus::kPass);
  try {
    verify_parsed(report, doc.get(), options);
  } catch (const std::exception& e) {
    add(report, "internal", report.kind, CheckStatus::kFail,
        std::string("verification stopped: ") + e.what());
  }
  return report;
}

bool verify_signature_node(xmlDoc* doc, xmlNode* signature, std::string* reason,
                           xmlNode** signed_element) {
  std::string why;
  auto done = [&](bool ok) {
    if (reason) *reason = why;
    return ok;
  };
  if (signed_element) *signed_element = nullptr;
  if (!doc || !is_signature(signature)) {
    why = "not a ds:Signature element";
    return done(false);
  }
  xmlNode* target = reference_target(doc, signature, &why);
  if (!target) return done(false);
  if (signed_element) *signed_element = target;
  SignerKeys keys = read_keys(signature);
  if (keys.key_value && keys.certificate &&
      EVP_PKEY_eq(keys.key_value.get(), X509_get0_pubkey(keys.certificate->x509())) != 1) {
    ERR_clear_error();
    why = "RSAKeyValue is not the key of X509Certificate";
    return done(false);
  }
  if (keys.key_value && keys.has_certificate && !keys.certificate) {
    why = keys.certificate_error;
    return done(false);
  }
  EVP_PKEY* key = verification_key(keys);
  if (!key) {
    why = "KeyInfo holds no usable key";
    return done(false);
  }
  return done(xmlsec_verify(signature, key, &why) == SigOutcome::kValid);
}

namespace detail {

void add_check(VerifyReport& report, std::string name, std::string subject, CheckStatus status,
               std::string reason) {
  report.checks.push_back(Check{std::move(name), std::move(subject), status, std::move(reason)});
}

long long number_or_zero(const std::string& s) {
  try {
    return s.empty() ? 0 : std::stoll(s);
  } catch (...) {
    return 0;
  }
}

// Base64 as xmlsec reads it: alphabet and whitespace only, padding only at the end.
bool strict_base64(const std::string& text, std::string* out) {
  bool padding = false;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      padding = true;
      continue;
    }
    if (padding || !(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/'))
      return false;
  }
  try {
    *out = base64_decode(text);
  } catch (const DteError&) {
    return false;
  }
  return !out->empty();
}

std::string dte_subject(int doc_type, long long folio, const std::string& id) {
  if (doc_type || folio) return "T" + std::to_string(doc_type) + "F" + std::to_string(folio);
  return id.empty() ? std::string("DTE") : id;
}

void report_ted(VerifyReport& report, const std::string& subject,
                const std::function<std::vector<Check>()>& checks) {
  try {
    for (Check& c : checks()) report.checks.push_back(std::move(c));
  } catch (const DteError& e) {
    for (const char* name : {"ted.frmt", "ted.caf", "ted.consistency"})
      add_check(report, name, subject, CheckStatus::kSkip,
                std::string("TED check unavailable: ") + e.what());
  }
}

void add_document(VerifyReport& report, VerifiedDocument vd, std::size_t first_check) {
  vd.ok = std::none_of(report.checks.begin() + static_cast<std::ptrdiff_t>(first_check),
                       report.checks.end(),
                       [](const Check& c) { return c.status == CheckStatus::kFail; });
  report.documents.push_back(std::move(vd));
}

std::shared_ptr<EVP_PKEY> key_from_texts(const std::string& modulus, const std::string& exponent,
                                         std::string* why) {
  static auto* memo = new TextMemo<std::shared_ptr<EVP_PKEY>>;  // leaked: outlives pool threads
  std::string key = modulus;
  key.push_back('\0');
  key += exponent;
  if (auto hit = memo->find(key)) return *hit;
  EvpPkeyPtr parsed = parse_key_value(modulus, exponent, why);
  if (!parsed) return nullptr;
  std::shared_ptr<EVP_PKEY> shared(parsed.release(), CDeleter<EVP_PKEY_free>());
  memo->put(key, shared);
  return shared;
}

std::optional<Certificate> certificate_from_base64(const std::string& text, std::string* why) {
  static auto* memo = new TextMemo<Certificate>;
  if (auto hit = memo->find(text)) return hit;
  try {
    Certificate c = Certificate::public_only(base64_decode(text));
    memo->put(text, c);
    return c;
  } catch (const DteError& e) {
    *why = std::string("X509Certificate is unreadable: ") + e.what();
    return std::nullopt;
  }
}

void report_signature(VerifyReport& report, const SignatureResult& r, const std::string& prefix,
                      const std::string& subject, bool check_validity) {
  add_check(report, prefix + ".signature", subject, r.valid ? CheckStatus::kPass : CheckStatus::kFail,
      r.signature_reason);
  if (r.has_target) {
    add_check(report, prefix + ".signature_target", subject,
        r.target_ok ? CheckStatus::kPass : CheckStatus::kFail, r.target_reason);
  } else {
    add_check(report, prefix + ".signature_target", subject, CheckStatus::kFail, r.target_reason);
  }
  const SignerKeys& k = r.keys;
  if (!k.has_certificate) {
    add_check(report, "cert.key_match", subject, CheckStatus::kSkip, "no X509Certificate in KeyInfo");
  } else if (!k.certificate) {
    add_check(report, "cert.key_match", subject, CheckStatus::kFail, k.certificate_error);
  } else if (!k.key_value) {
    add_check(report, "cert.key_match", subject, CheckStatus::kSkip,
        "no RSAKeyValue in KeyInfo; the certificate's key was used");
  } else if (EVP_PKEY_eq(k.key_value.get(), X509_get0_pubkey(k.certificate->x509())) == 1) {
    add_check(report, "cert.key_match", subject, CheckStatus::kPass);
  } else {
    add_check(report, "cert.key_match", subject, CheckStatus::kFail,
        "RSAKeyValue is not the key of X509Certificate");
  }
  ERR_clear_error();
  if (!check_validity) return;
  if (!k.certificate) {
    add_check(report, "cert.validity", subject, CheckStatus::kSkip, "no readable certificate");
    return;
  }
  const std::string& when = r.signing_time;
  if (when.empty()) {
    add_check(report, "cert.validity", subject, CheckStatus::kSkip, "no signing timestamp to check at");
    return;
  }
  try {
    k.certificate->check_valid_at(when);
    add_check(report, "cert.validity", subject, CheckStatus::kPass,
        "valid at " + when + " (" + k.certificate->info().not_before + " .. " +
            k.certificate->info().not_after + ")");
  } catch (const DteError& e) {
    add_check(report, "cert.validity", subject, CheckStatus::kFail, e.what());
  }
}

}  // namespace detail

}  // namespace dte
