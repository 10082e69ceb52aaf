#include "dte/signer.hpp"

#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/evp.h>
#include <xmlsec/openssl/x509.h>
#include <xmlsec/templates.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#include <mutex>

#include "dsig_internal.hpp"
#include "dte/errors.hpp"
#include "dte/xml.hpp"

namespace dte {
namespace detail {
namespace {

thread_local std::string xmlsec_errors;

// xmlsec reports through one global callback; keeping the text per thread lets concurrent
// signers each explain their own failure. It must never throw into C.
void capture_xmlsec_error(const char* /*file*/, int /*line*/, const char* func,
                          const char* error_object, const char* error_subject, int reason,
                          const char* msg) noexcept {
  try {
    if (xmlsec_errors.size() > 4096) return;
    if (!xmlsec_errors.empty()) xmlsec_errors += "; ";
    if (func) xmlsec_errors += func;
    if (error_subject) xmlsec_errors += std::string(" [") + error_subject + "]";
    if (error_object) xmlsec_errors += std::string(" (") + error_object + ")";
    if (msg) xmlsec_errors += std::string(": ") + msg;
    xmlsec_errors += " (reason " + std::to_string(reason) + ")";
  } catch (...) {
  }
}

}  // namespace

std::string take_xmlsec_errors() {
  std::string out;
  out.swap(xmlsec_errors);
  return out;
}

XmlSecKeyPtr xmlsec_key(EVP_PKEY* pkey, X509* cert) {
  EvpPkeyPtr ref(pkey);
  EVP_PKEY_up_ref(pkey);
  xmlSecKeyDataPtr value = xmlSecOpenSSLEvpKeyAdopt(ref.get());
  if (!value) throw SignatureError("sign.failed", "xmlsec cannot adopt the key: " + take_xmlsec_errors());
  ref.release();  // now owned by `value`
  XmlSecKeyPtr key(xmlSecKeyCreate());
  if (!key || xmlSecKeySetValue(key.get(), value) < 0) {
    xmlSecKeyDataDestroy(value);
    throw SignatureError("sign.failed", "xmlsec cannot create a key: " + take_xmlsec_errors());
  }
  if (cert) {
    xmlSecKeyDataPtr x509 = xmlSecKeyEnsureData(key.get(), xmlSecOpenSSLKeyDataX509Id);
    if (!x509) throw SignatureError("sign.failed", "xmlsec X509 data: " + take_xmlsec_errors());
    X509_up_ref(cert);
    X509Ptr cref(cert);
    if (xmlSecOpenSSLKeyDataX509AdoptCert(x509, cref.get()) < 0) {
      throw SignatureError("sign.failed", "xmlsec cannot attach the certificate: " +
                                              take_xmlsec_errors());
    }
    cref.release();
  }
  return key;
}

}  // namespace detail

void init_xmlsec() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    init_xml();
    ensure_openssl_providers();
    xmlSecErrorsSetCallback(detail::capture_xmlsec_error);
    if (xmlSecInit() < 0) {
      failure = "xmlSecInit failed";
    } else if (xmlSecCheckVersion() != 1) {
      failure = "the loaded xmlsec library is not compatible with the headers we were built with";
    } else if (xmlSecCryptoAppInit(nullptr) < 0) {
      failure = "xmlsec OpenSSL app initialisation failed";
    } else if (xmlSecCryptoInit() < 0) {
      failure = "xmlsec OpenSSL initialisation failed";
    }
    if (!failure.empty()) failure += ": " + detail::take_xmlsec_errors();
  });
  init_xml();  // libxml2's error silencing is per thread
  if (!failure.empty()) throw SignatureError("xmlsec.init", failure);
}

void append_signature(xmlDoc* doc, xmlNode* parent, std::string_view reference_id,
                      const Certificate& cert) {
  init_xmlsec();
  if (!cert.private_key()) {
    throw SignatureError("sign.no_private_key", "the certificate has no private key to sign with");
  }
  detail::take_xmlsec_errors();
  xmlNode* sig = xmlSecTmplSignatureCreate(doc, xmlSecTransformInclC14NId,
                                           xmlSecTransformRsaSha1Id, nullptr);
  if (!sig) throw SignatureError("sign.failed", "cannot create the Signature template");
  if (!xmlAddChild(parent, sig)) {
    xmlFreeNode(sig);
    throw SignatureError("sign.failed", "cannot append the Signature element");
  }
  // From here `sig` belongs to the document; on failure it is unlinked and freed again so
  // that the caller's document is left as it was.
  auto fail = [&](const std::string& what) {
    xmlUnlinkNode(sig);
    xmlFreeNode(sig);
    throw SignatureError("sign.failed", what + ": " + detail::take_xmlsec_errors());
  };
  std::string uri = reference_id.empty() ? std::string() : "#" + std::string(reference_id);
  xmlNode* ref = xmlSecTmplSignatureAddReference(sig, xmlSecTransformSha1Id, nullptr,
                                                 BAD_CAST uri.c_str(), nullptr);
  if (!ref) fail("cannot add the Reference");
  if (reference_id.empty() && !xmlSecTmplReferenceAddTransform(ref, xmlSecTransformEnvelopedId)) {
    fail("cannot add the enveloped-signature transform");
  }
  xmlNode* key_info = xmlSecTmplSignatureEnsureKeyInfo(sig, nullptr);
  if (!key_info || !xmlSecTmplKeyInfoAddKeyValue(key_info)) fail("cannot add KeyValue");
  xmlNode* x509 = xmlSecTmplKeyInfoAddX509Data(key_info);
  if (!x509 || !xmlSecTmplX509DataAddCertificate(x509)) fail("cannot add X509Data");

  detail::XmlSecDSigCtxPtr ctx(xmlSecDSigCtxCreate(nullptr));
  if (!ctx) fail("cannot create the signature context");
  try {
    ctx->signKey = detail::xmlsec_key(cert.private_key(), cert.x509()).release();
  } catch (const SignatureError& e) {
    fail(e.what());
  }
  if (xmlSecDSigCtxSign(ctx.get(), sig) < 0) {
    if (!reference_id.empty() && !xmlGetID(doc, BAD_CAST std::string(reference_id).c_str())) {
      fail("no element has ID '" + std::string(reference_id) + "' (IDs not registered?)");
    }
    fail("xmlsec could not sign");
  }
}

std::string sign_seed(std::string_view seed, const Certificate& cert) {
  std::string xml = "<getToken><item><Semilla>" + escape_text(seed) +
                    "</Semilla></item></getToken>";
  XmlDocPtr doc = parse_xml(xml);
  append_signature(doc.get(), xmlDocGetRootElement(doc.get()), {}, cert);
  return serialize(doc.get(), "UTF-8");
}

}  // namespace dte
