#include "dte/signer.hpp"

#include <libxml/c14n.h>
#include <libxml/uri.h>
#include <libxml/xmlIO.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <xmlsec/base64.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/evp.h>
#include <xmlsec/openssl/x509.h>
#include <xmlsec/templates.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dsig_internal.hpp"
#include "dte/errors.hpp"
#include "dte/xml.hpp"
#include "sign_fast.hpp"

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

const EVP_MD* sha1_md() {
  static const EVP_MD* md = [] {
    ensure_openssl_providers();
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA1", nullptr);
    ERR_clear_error();
    return fetched ? static_cast<const EVP_MD*>(fetched) : EVP_sha1();
  }();
  return md;
}

namespace {

// What a thread keeps per key (OpenSSL contexts set up once): 8 keys, each held by a reference
// of our own, so a remembered address is never another key's.
template <class T>
class PerKeyMemo {
 public:
  T* find(EVP_PKEY* key) {
    for (auto& e : entries_)
      if (e.first.get() == key) return &e.second;
    return nullptr;
  }
  T* put(EVP_PKEY* key, T value) {
    if (EVP_PKEY_up_ref(key) != 1) return nullptr;
    if (entries_.size() >= 8) entries_.erase(entries_.begin());
    entries_.emplace_back(EvpPkeyPtr(key), std::move(value));
    return &entries_.back().second;
  }

 private:
  std::vector<std::pair<EvpPkeyPtr, T>> entries_;
};

}  // namespace

EvpMdCtxPtr rsa_sha1_verify_context(EVP_PKEY* key) {
  thread_local PerKeyMemo<EvpMdCtxPtr> memo;
  if (!key) return nullptr;
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return nullptr;
  if (const EvpMdCtxPtr* kept = memo.find(key)) {
    if (EVP_MD_CTX_copy_ex(ctx.get(), kept->get()) == 1) return ctx;
    ERR_clear_error();
  }
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, sha1_md(), nullptr, key) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  EvpMdCtxPtr keep(EVP_MD_CTX_new());
  if (keep && EVP_MD_CTX_copy_ex(keep.get(), ctx.get()) == 1) memo.put(key, std::move(keep));
  ERR_clear_error();
  return ctx;
}

std::string rsa_sha1_sign(EVP_PKEY* key, std::string_view data) {
  thread_local PerKeyMemo<EvpPkeyCtxPtr> memo;
  if (!key) return {};
  const EvpPkeyCtxPtr* kept = memo.find(key);
  if (!kept) {
    EvpPkeyCtxPtr fresh(EVP_PKEY_CTX_new(key, nullptr));
    if (!fresh || EVP_PKEY_sign_init(fresh.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(fresh.get(), RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(fresh.get(), sha1_md()) != 1 ||
        !(kept = memo.put(key, std::move(fresh)))) {
      ERR_clear_error();
      return {};
    }
  }
  EVP_PKEY_CTX* ctx = kept->get();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  const int size = EVP_PKEY_get_size(key);
  if (size <= 0 || EVP_Digest(data.data(), data.size(), digest, &digest_len, sha1_md(), nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  std::string out(static_cast<std::size_t>(size), '\0');
  std::size_t len = out.size();
  if (EVP_PKEY_sign(ctx, reinterpret_cast<unsigned char*>(out.data()), &len, digest, digest_len) != 1) {
    ERR_clear_error();
    return {};
  }
  out.resize(len);
  return out;
}

namespace {

// What xmlsec's "tree" node set answers for the subtree of `top`: a node (or the element owning
// an attribute or namespace node) is visible when `top` is it or one of its ancestors.
int visible_in_subtree(void* top, xmlNode* node, xmlNode* parent) {
  const xmlNode* n = node;
  if (!n || n->type == XML_NAMESPACE_DECL) n = parent;
  for (; n; n = n->parent)
    if (n == top) return 1;
  return 0;
}

int append_output(void* context, const char* buffer, int len) {
  try {
    static_cast<std::string*>(context)->append(buffer, static_cast<std::size_t>(len));
    return len;
  } catch (...) {
    return -1;
  }
}

}  // namespace

bool c14n_subtree(xmlDoc* doc, xmlNode* top, std::string* out) {
  xmlOutputBuffer* buf = xmlOutputBufferCreateIO(append_output, nullptr, out, nullptr);
  if (!buf) return false;
  int rc = xmlC14NExecute(doc, visible_in_subtree, top, XML_C14N_1_0, nullptr, 0, buf);
  int closed = xmlOutputBufferClose(buf);
  return rc >= 0 && closed >= 0;
}

namespace {

// Both escapers copy each run of plain characters with one append (not byte by byte).
void c14n_text(std::string& out, const xmlChar* s) {
  if (!s) return;
  const char* p = reinterpret_cast<const char*>(s);
  for (;;) {
    const char* run = p;
    while (*p && *p != '&' && *p != '<' && *p != '>' && *p != '\r') ++p;
    out.append(run, static_cast<std::size_t>(p - run));
    switch (*p) {
      case '\0': return;
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out += "&#xD;"; break;
    }
    ++p;
  }
}

void c14n_attr_value(std::string& out, const xmlChar* s) {
  if (!s) return;
  const char* p = reinterpret_cast<const char*>(s);
  for (;;) {
    const char* run = p;
    while (*p && *p != '&' && *p != '<' && *p != '"' && *p != '\t' && *p != '\n' && *p != '\r')
      ++p;
    out.append(run, static_cast<std::size_t>(p - run));
    switch (*p) {
      case '\0': return;
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '"': out += "&quot;"; break;
      case '\t': out += "&#x9;"; break;
      case '\n': out += "&#xA;"; break;
      default: out += "&#xD;"; break;
    }
    ++p;
  }
}

const char* str(const xmlChar* s) { return s ? reinterpret_cast<const char*>(s) : ""; }

// One rendered namespace: prefix ("" = default) and URI.
struct RenderedNs {
  std::string_view prefix;
  std::string_view href;
};

class FastC14N {
 public:
  explicit FastC14N(std::string* out) : out_(out) {}

  bool run(const xmlNode* top) {
    if (!top || top->type != XML_ELEMENT_NODE) return false;
    // xml:* attributes of ancestors are inherited by the apex in C14N 1.0: not handled here.
    for (const xmlNode* a = top->parent; a && a->type == XML_ELEMENT_NODE; a = a->parent)
      for (const xmlAttr* at = a->properties; at; at = at->next)
        if (at->ns && xmlStrEqual(at->ns->href, XML_XML_NAMESPACE)) return false;
    // The apex renders every namespace in scope (closest declaration of each prefix wins).
    std::vector<RenderedNs> in_scope;
    for (const xmlNode* n = top; n && n->type == XML_ELEMENT_NODE; n = n->parent)
      for (const xmlNs* ns = n->nsDef; ns; ns = ns->next)
        if (!add_in_scope(in_scope, ns)) return false;
    return element(top, in_scope, {}, true);
  }

 private:
  bool add_in_scope(std::vector<RenderedNs>& scope, const xmlNs* ns) {
    if (!ns->href) return false;
    std::string_view prefix = str(ns->prefix);
    if (prefix == "xml") return true;
    for (const auto& r : scope)
      if (r.prefix == prefix) return true;  // a closer declaration already won
    scope.push_back({prefix, str(ns->href)});
    return true;
  }

  // `scope`: this element's namespaces in scope; `parent_scope`: what the output parent had
  // in scope (empty for the apex, whose parent is not output).
  bool element(const xmlNode* e, const std::vector<RenderedNs>& scope,
               const std::vector<RenderedNs>& parent_scope, bool apex) {
    std::string& out = *out_;
    out.push_back('<');
    qname(e->ns, e->name);
    // Namespaces to render, sorted by prefix (default first).
    std::vector<RenderedNs> render;
    bool has_default = false;
    // A child without declarations of its own is passed its parent's very scope: nothing new to
    // render, and no undeclaration (it has a default exactly when its parent has one).
    const bool inherited = !apex && &scope == &parent_scope;
    for (const auto& r : inherited ? parent_scope_none() : scope) {
      if (r.prefix.empty()) has_default = true;
      bool rendered = false;
      bool found = false;
      for (const auto& p : parent_scope)
        if (p.prefix == r.prefix) {
          found = true;
          rendered = p.href == r.href;
          break;
        }
      if (r.prefix.empty() && r.href.empty() && !found) rendered = true;  // xmlns="" is implied
      if (!rendered) render.push_back(r);
    }
    if (!has_default && !apex && !inherited) {
      // No default namespace here but the output parent has a non-empty one: undeclare it.
      for (const auto& p : parent_scope)
        if (p.prefix.empty() && !p.href.empty()) render.push_back({"", ""});
    }
    std::sort(render.begin(), render.end(),
              [](const RenderedNs& a, const RenderedNs& b) { return a.prefix < b.prefix; });
    for (const auto& r : render) {
      if (r.href.find('"') != std::string_view::npos) return false;
      out += r.prefix.empty() ? " xmlns=\"" : " xmlns:";
      if (!r.prefix.empty()) {
        out += r.prefix;
        out += "=\"";
      }
      out += r.href;
      out.push_back('"');
    }
    // Attributes: unqualified first, then by namespace URI, then by local name.
    std::vector<const xmlAttr*> attrs;
    for (const xmlAttr* a = e->properties; a; a = a->next) {
      if (a->type != XML_ATTRIBUTE_NODE) return false;
      for (const xmlNode* c = a->children; c; c = c->next)
        if (c->type != XML_TEXT_NODE) return false;
      if (a->ns && (!a->ns->prefix || !a->ns->href)) return false;
      attrs.push_back(a);
    }
    std::sort(attrs.begin(), attrs.end(), [](const xmlAttr* a, const xmlAttr* b) {
      if (!a->ns || !b->ns) {
        if (a->ns != b->ns) return a->ns == nullptr;
        return std::strcmp(str(a->name), str(b->name)) < 0;
      }
      int c = std::strcmp(str(a->ns->href), str(b->ns->href));
      if (c != 0) return c < 0;
      return std::strcmp(str(a->name), str(b->name)) < 0;
    });
    for (const xmlAttr* a : attrs) {
      out.push_back(' ');
      qname(a->ns, a->name);
      out += "=\"";
      for (const xmlNode* c = a->children; c; c = c->next) c14n_attr_value(out, c->content);
      out.push_back('"');
    }
    out.push_back('>');
    for (const xmlNode* c = e->children; c; c = c->next) {
      switch (c->type) {
        case XML_ELEMENT_NODE: {
          if (!c->nsDef) {
            if (!element(c, scope, scope, false)) return false;
            break;
          }
          std::vector<RenderedNs> child_scope;
          for (const xmlNs* ns = c->nsDef; ns; ns = ns->next)
            if (!add_in_scope(child_scope, ns)) return false;
          for (const auto& r : scope) {
            bool shadowed = false;
            for (const auto& k : child_scope)
              if (k.prefix == r.prefix) shadowed = true;
            if (!shadowed) child_scope.push_back(r);
          }
          if (!element(c, child_scope, scope, false)) return false;
          break;
        }
        case XML_TEXT_NODE:
        case XML_CDATA_SECTION_NODE:
          c14n_text(out, c->content);
          break;
        case XML_COMMENT_NODE:
          break;
        default:  // processing instructions, entity references...: left to libxml2
          return false;
      }
    }
    out += "</";
    qname(e->ns, e->name);
    out.push_back('>');
    return true;
  }

  static const std::vector<RenderedNs>& parent_scope_none() {
    static const std::vector<RenderedNs> none;
    return none;
  }

  void qname(const xmlNs* ns, const xmlChar* name) {
    if (ns && ns->prefix && *ns->prefix) {
      *out_ += str(ns->prefix);
      out_->push_back(':');
    }
    *out_ += str(name);
  }

  std::string* out_;
};

}  // namespace

bool fast_c14n_subtree(const xmlNode* top, std::string* out) {
  out->clear();
  try {
    FastC14N c(out);
    if (c.run(top)) return true;
  } catch (const std::bad_alloc&) {
  }
  out->clear();
  return false;
}

bool c14n_document_ok(const xmlDoc* doc) {
  // libxml2's C14N walks the whole document whatever the subset, and fails on an entity
  // reference anywhere or on a relative (scheme-less) namespace URI anywhere.
  const xmlNode* cur = xmlDocGetRootElement(doc);
  while (cur) {
    if (cur->type == XML_ENTITY_REF_NODE) return false;
    if (cur->type == XML_ELEMENT_NODE) {
      for (const xmlNs* ns = cur->nsDef; ns; ns = ns->next) {
        if (!ns->href || !*ns->href) continue;
        xmlURIPtr uri = xmlParseURI(reinterpret_cast<const char*>(ns->href));
        bool absolute = uri && uri->scheme && *uri->scheme;
        if (uri) xmlFreeURI(uri);
        if (!absolute) return false;
      }
    }
    if (cur->type == XML_ELEMENT_NODE && cur->children) {
      cur = cur->children;
      continue;
    }
    while (cur && !cur->next) cur = cur->parent;
    if (cur) cur = cur->next;
  }
  return true;
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

namespace {

// KeyInfo as xmlsec writes it for one certificate (RSAKeyValue Modulus/Exponent and
// X509Certificate, line breaks included), learnt from the first signature xmlsec makes with it
// and keyed by the certificate's DER bytes. Later signatures fill the same text in directly
// instead of having xmlsec read the key's parameters back out of OpenSSL every time.
struct KeyInfoText {
  std::string modulus;
  std::string exponent;
  std::string certificate;
  bool plain = false;  // none holds what signature_text would have to escape
};

std::mutex key_info_mu;
std::unordered_map<std::string, std::shared_ptr<const KeyInfoText>>& key_info_cache() {
  // Outlives pool threads.
  static auto* cache = new std::unordered_map<std::string, std::shared_ptr<const KeyInfoText>>;
  return *cache;
}

std::shared_ptr<const KeyInfoText> cached_key_info(const std::string& der) {
  std::lock_guard lock(key_info_mu);
  auto it = key_info_cache().find(der);
  return it != key_info_cache().end() ? it->second : nullptr;
}

// cached_key_info for `cert`, remembered per thread by certificate object: the lookup by DER
// (encoding the certificate, hashing it, locking) would otherwise come with every signature. An
// entry holds a reference to the X509, so a remembered address is never another certificate's.
std::shared_ptr<const KeyInfoText> key_info_of(const Certificate& cert) {
  struct Entry {
    X509Ptr cert;
    std::shared_ptr<const KeyInfoText> text;
  };
  thread_local std::vector<Entry> memo;
  X509* x509 = cert.x509();
  if (!x509) return nullptr;
  for (const Entry& e : memo)
    if (e.cert.get() == x509) return e.text;
  std::shared_ptr<const KeyInfoText> text = cached_key_info(cert.cert_der());
  if (text && X509_up_ref(x509) == 1) {
    if (memo.size() >= 8) memo.erase(memo.begin());
    memo.push_back(Entry{X509Ptr(x509), text});
  }
  return text;
}

xmlNode* dsig_element(xmlNode* parent, const char* name) {
  for (xmlNode* c = parent ? parent->children : nullptr; c; c = c->next) {
    if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name) && c->ns &&
        xmlStrEqual(c->ns->href, xmlSecDSigNs))
      return c;
  }
  return nullptr;
}

bool plain_id(std::string_view id) {
  if (id.empty()) return false;
  for (char ch : id) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

bool plain_base64_text(const std::string& s) {
  return s.find_first_of("&<>\r\"") == std::string::npos;
}

void set_text(xmlNode* node, const std::string& text) {
  xmlNodeSetContent(node, nullptr);
  xmlNodeAddContentLen(node, BAD_CAST text.data(), static_cast<int>(text.size()));
}

// Base64 in xmlsec's layout (lines of xmlSecBase64GetDefaultLineSize() characters, no final
// line break), written by OpenSSL's block encoder: xmlSecBase64Encode gives the same text at
// several times the cost.
std::string base64_lines(const unsigned char* data, std::size_t len) {
  const int line = xmlSecBase64GetDefaultLineSize();
  return base64_encode(std::string_view(reinterpret_cast<const char*>(data), len),
                       line > 0 ? static_cast<std::size_t>(line) : 0);
}

// The signature xmlsec would make over a template built by append_signature for a "#ID"
// Reference: DigestValue = SHA-1 of the target's C14N, SignatureValue = RSA-SHA1 over SignedInfo's
// C14N, both base64 in xmlsec's line layout, KeyInfo from `text`. False (template untouched)
// when anything is off; the caller then lets xmlsec do it all.
bool fast_sign(xmlDoc* doc, xmlNode* sig, std::string_view reference_id, EVP_PKEY* key,
               const KeyInfoText& text) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) return false;
  xmlNode* signed_info = dsig_element(sig, "SignedInfo");
  xmlNode* ref = dsig_element(signed_info, "Reference");
  xmlNode* digest_value = dsig_element(ref, "DigestValue");
  xmlNode* signature_value = dsig_element(sig, "SignatureValue");
  xmlNode* key_info = dsig_element(sig, "KeyInfo");
  xmlNode* key_value = dsig_element(key_info, "KeyValue");
  xmlNode* x509_cert = dsig_element(dsig_element(key_info, "X509Data"), "X509Certificate");
  if (!digest_value || !signature_value || !key_value || !x509_cert || key_value->children ||
      !plain_id(reference_id))
    return false;
  xmlAttr* id = xmlGetID(doc, BAD_CAST std::string(reference_id).c_str());
  if (!id || id->type != XML_ATTRIBUTE_NODE || !id->parent) return false;
  // A Signature inside the element it signs would be digested with the KeyInfo xmlsec writes
  // first: only the usual sibling (or unrelated) placement takes this path.
  for (const xmlNode* n = sig; n; n = n->parent)
    if (n == id->parent) return false;

  std::string target_c14n;
  if (!detail::c14n_subtree(doc, id->parent, &target_c14n)) return false;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(target_c14n.data(), target_c14n.size(), digest, &digest_len, detail::sha1_md(),
                 nullptr) != 1) {
    ERR_clear_error();
    return false;
  }
  std::string digest_b64 = base64_lines(digest, digest_len);
  if (digest_b64.empty()) return false;
  set_text(digest_value, digest_b64);

  std::string signed_info_c14n;
  std::string signature;
  // SignedInfo is our own template (fixed elements, plain attributes, base64): the direct writer
  // gives libxml2's bytes without another walk of the whole document.
  bool ok = detail::fast_c14n_subtree(signed_info, &signed_info_c14n) ||
            detail::c14n_subtree(doc, signed_info, &signed_info_c14n);
  if (ok) {
    signature = detail::rsa_sha1_sign(key, signed_info_c14n);
    ok = !signature.empty();
  }
  std::string signature_b64 =
      ok ? base64_lines(reinterpret_cast<const unsigned char*>(signature.data()), signature.size())
         : std::string();
  if (signature_b64.empty()) {
    ERR_clear_error();
    xmlNodeSetContent(digest_value, nullptr);
    return false;
  }
  set_text(signature_value, signature_b64);
  // KeyInfo, node for node as xmlsec's RSAKeyValue writer lays it out.
  xmlNode* rsa = xmlSecAddChild(key_value, BAD_CAST "RSAKeyValue", xmlSecDSigNs);
  xmlNode* modulus = rsa ? xmlSecAddChild(rsa, BAD_CAST "Modulus", xmlSecDSigNs) : nullptr;
  xmlNode* exponent = rsa ? xmlSecAddChild(rsa, BAD_CAST "Exponent", xmlSecDSigNs) : nullptr;
  if (!modulus || !exponent) throw SignatureError("sign.failed", "cannot write RSAKeyValue");
  set_text(modulus, text.modulus);
  set_text(exponent, text.exponent);
  set_text(x509_cert, text.certificate);
  return true;
}

}  // namespace

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

  // Fast path for "#ID" References once xmlsec has shown how it writes this certificate's
  // KeyInfo; the output is byte-for-byte what xmlsec makes (RSA PKCS#1 v1.5 is deterministic).
  std::string cert_key;
  if (!reference_id.empty()) {
    cert_key = cert.cert_der();
    std::shared_ptr<const KeyInfoText> text = cached_key_info(cert_key);
    try {
      if (text && fast_sign(doc, sig, reference_id, cert.private_key(), *text)) return;
    } catch (const SignatureError& e) {
      fail(e.what());
    }
  }

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
  if (!cert_key.empty()) {
    xmlNode* rsa = dsig_element(dsig_element(key_info, "KeyValue"), "RSAKeyValue");
    xmlNode* x509_cert = dsig_element(dsig_element(key_info, "X509Data"), "X509Certificate");
    xmlNode* modulus = dsig_element(rsa, "Modulus");
    xmlNode* exponent = dsig_element(rsa, "Exponent");
    if (modulus && exponent && x509_cert) {
      auto text = std::make_shared<KeyInfoText>(
          KeyInfoText{node_text(modulus), node_text(exponent), node_text(x509_cert)});
      text->plain = plain_base64_text(text->modulus) && plain_base64_text(text->exponent) &&
                    plain_base64_text(text->certificate);
      std::lock_guard lock(key_info_mu);
      if (key_info_cache().size() >= 64) key_info_cache().clear();
      key_info_cache().emplace(std::move(cert_key), std::move(text));
    }
  }
}

std::optional<std::string> detail::signature_text(std::string_view target_c14n,
                                                  std::string_view reference_id,
                                                  const Certificate& cert) {
  EVP_PKEY* key = cert.private_key();
  if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA || !plain_id(reference_id))
    return std::nullopt;
  const std::shared_ptr<const KeyInfoText> text = key_info_of(cert);
  if (!text || !text->plain) return std::nullopt;

  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(target_c14n.data(), target_c14n.size(), digest, &digest_len, detail::sha1_md(),
                 nullptr) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  const std::string digest_b64 = base64_lines(digest, digest_len);
  if (digest_b64.empty()) return std::nullopt;

  // SignedInfo of xmlsec's template (append_signature) in canonical form: the default namespace
  // of Signature rendered on it, empty elements written out in full.
  static constexpr std::string_view kC14nMethod =
      "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
  static constexpr std::string_view kRsaSha1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
  static constexpr std::string_view kSha1 = "http://www.w3.org/2000/09/xmldsig#sha1";
  std::string si;
  si.reserve(512);
  si += "<SignedInfo xmlns=\"http://www.w3.org/2000/09/xmldsig#\">\n<CanonicalizationMethod Algorithm=\"";
  si += kC14nMethod;
  si += "\"></CanonicalizationMethod>\n<SignatureMethod Algorithm=\"";
  si += kRsaSha1;
  si += "\"></SignatureMethod>\n<Reference URI=\"#";
  si += reference_id;
  si += "\">\n<DigestMethod Algorithm=\"";
  si += kSha1;
  si += "\"></DigestMethod>\n<DigestValue>";
  si += digest_b64;
  si += "</DigestValue>\n</Reference>\n</SignedInfo>";
  const std::string signature = detail::rsa_sha1_sign(key, si);
  if (signature.empty()) return std::nullopt;
  const std::string signature_b64 =
      base64_lines(reinterpret_cast<const unsigned char*>(signature.data()), signature.size());
  if (signature_b64.empty()) return std::nullopt;

  std::string out;
  out.reserve(1024 + text->modulus.size() + text->certificate.size() + signature_b64.size());
  out += "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">\n<SignedInfo>\n"
         "<CanonicalizationMethod Algorithm=\"";
  out += kC14nMethod;
  out += "\"/>\n<SignatureMethod Algorithm=\"";
  out += kRsaSha1;
  out += "\"/>\n<Reference URI=\"#";
  out += reference_id;
  out += "\">\n<DigestMethod Algorithm=\"";
  out += kSha1;
  out += "\"/>\n<DigestValue>";
  out += digest_b64;
  out += "</DigestValue>\n</Reference>\n</SignedInfo>\n<SignatureValue>";
  out += signature_b64;
  out += "</SignatureValue>\n<KeyInfo>\n<KeyValue>\n<RSAKeyValue>\n<Modulus>";
  out += text->modulus;
  out += "</Modulus>\n<Exponent>";
  out += text->exponent;
  out += "</Exponent>\n</RSAKeyValue>\n</KeyValue>\n<X509Data>\n<X509Certificate>";
  out += text->certificate;
  out += "</X509Certificate>\n</X509Data>\n</KeyInfo>\n</Signature>";
  return out;
}

std::string sign_seed(std::string_view seed, const Certificate& cert) {
  std::string xml = "<getToken><item><Semilla>" + escape_text(seed) +
                    "</Semilla></item></getToken>";
  XmlDocPtr doc = parse_xml(xml);
  append_signature(doc.get(), xmlDocGetRootElement(doc.get()), {}, cert);
  return serialize(doc.get(), "UTF-8");
}

}  // namespace dte
