#include "dte/caf.hpp"

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>

#include "dsig_internal.hpp"
#include "dte/cert.hpp"
#include "dte/errors.hpp"
#include "dte/rut.hpp"
#include "dte/xml.hpp"

namespace dte {
namespace {

using OsslDecoderCtxPtr = std::unique_ptr<OSSL_DECODER_CTX, CDeleter<OSSL_DECODER_CTX_free>>;
using OsslParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, CDeleter<OSSL_PARAM_BLD_free>>;
using OsslParamPtr = std::unique_ptr<OSSL_PARAM, CDeleter<OSSL_PARAM_free>>;

std::string local_name(const xmlNode* n) { return reinterpret_cast<const char*>(n->name); }

void canonical_into(std::string& out, const xmlNode* node) {
  switch (node->type) {
    case XML_ELEMENT_NODE: {
      out.push_back('<');
      out += local_name(node);
      std::vector<std::pair<std::string, std::string>> attrs;
      for (const xmlAttr* a = node->properties; a; a = a->next) {
        std::string name = reinterpret_cast<const char*>(a->name);
        if (a->ns && a->ns->prefix)
          name = std::string(reinterpret_cast<const char*>(a->ns->prefix)) + ":" + name;
        XmlCharPtr value(xmlNodeListGetString(node->doc, a->children, 1));
        attrs.emplace_back(std::move(name),
                           value ? reinterpret_cast<const char*>(value.get()) : "");
      }
      std::sort(attrs.begin(), attrs.end());
      for (const auto& [name, value] : attrs) {
        out.push_back(' ');
        out += name;
        out += "=\"";
        append_c14n_attr(out, value);
        out.push_back('"');
      }
      out.push_back('>');
      for (const xmlNode* c = node->children; c; c = c->next) canonical_into(out, c);
      out += "</";
      out += local_name(node);
      out.push_back('>');
      break;
    }
    case XML_TEXT_NODE:
    case XML_CDATA_SECTION_NODE:
      if (node->content) append_c14n_text(out, reinterpret_cast<const char*>(node->content));
      break;
    case XML_ENTITY_REF_NODE: {
      // parse_xml refuses DTDs, so only predefined/character references could appear here.
      XmlCharPtr content(xmlNodeGetContent(node));
      if (content) append_c14n_text(out, reinterpret_cast<const char*>(content.get()));
      break;
    }
    default:
      break;  // comments and processing instructions are not part of the signed form
  }
}

std::string canonical_element(const xmlNode* element) {
  std::string out;
  out.reserve(2048);  // a DD with its CAF: one allocation instead of a chain of regrowths
  canonical_into(out, element);
  return out;
}

std::string trim(std::string_view s) {
  std::size_t b = 0;
  std::size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// PEM text inside XML is often indented or has CRLF line ends; PEM decoders want clean lines.
std::string clean_pem(std::string_view text) {
  std::string out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::string t = trim(line);
    if (t.empty()) continue;
    out += t;
    out.push_back('\n');
  }
  return out;
}

EvpPkeyPtr decode_pem_key(std::string_view pem, int selection) {
  std::string clean = clean_pem(pem);
  EVP_PKEY* pkey = nullptr;
  OsslDecoderCtxPtr dctx(OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", nullptr, nullptr, selection,
                                                       nullptr, nullptr));
  if (!dctx) return nullptr;
  const auto* data = reinterpret_cast<const unsigned char*>(clean.data());
  std::size_t len = clean.size();
  if (!OSSL_DECODER_from_data(dctx.get(), &data, &len)) {
    ERR_clear_error();
    return nullptr;
  }
  return EvpPkeyPtr(pkey);
}

EvpPkeyPtr rsa_from_modulus_exponent(const std::string& m, const std::string& e) {
  BignumPtr n(BN_bin2bn(reinterpret_cast<const unsigned char*>(m.data()),
                        static_cast<int>(m.size()), nullptr));
  BignumPtr ex(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                         static_cast<int>(e.size()), nullptr));
  if (!n || !ex || BN_is_zero(n.get()) || BN_is_zero(ex.get())) return nullptr;
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, ex.get()))
    return nullptr;
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* pkey = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    ERR_clear_error();
    return nullptr;
  }
  return EvpPkeyPtr(pkey);
}

std::shared_ptr<EVP_PKEY> share(EvpPkeyPtr p) {
  return std::shared_ptr<EVP_PKEY>(p.release(), CDeleter<EVP_PKEY_free>());
}

bool rsa_sha1_verify(EVP_PKEY* key, std::string_view data, std::string_view signature) {
  EvpMdCtxPtr ctx = detail::rsa_sha1_verify_context(key);
  if (!ctx) return false;
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
  ERR_clear_error();
  return rc == 1;
}

std::string rsa_sha1_sign(EVP_PKEY* key, std::string_view data) {
  std::string sig = detail::rsa_sha1_sign(key, data);
  if (sig.empty())
    throw SignatureError("caf.sign", "OpenSSL refused to sign with the CAF key (RSA-SHA1)");
  return sig;
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                                 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

bool declares_encoding(std::string_view bytes) {
  if (bytes.substr(0, 5) != "<?xml") return false;
  auto end = bytes.find("?>");
  return end != std::string_view::npos && bytes.substr(0, end).find("encoding") != std::string_view::npos;
}

std::string normalized_rut(std::string_view rut) {
  if (auto r = Rut::try_parse(rut)) return r->str();
  std::string out;
  for (char c : rut)
    if (c != '.' && c != ' ') out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return out;
}

std::string required_text(const xmlNode* da, std::string_view path) {
  const xmlNode* n = find_path(da, path);
  if (!n) throw CafError("caf.missing_field", "CAF has no DA/" + std::string(path));
  return trim(node_text(n));
}

long long parse_number(const std::string& text, std::string_view what) {
  try {
    std::size_t used = 0;
    long long v = std::stoll(text, &used);
    if (used != text.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (const std::exception&) {
    throw CafError("caf.unreadable", "CAF " + std::string(what) + " '" + text + "' is not a number");
  }
}

bool expiring_type(int td) { return td == 33 || td == 43 || td == 46 || td == 56 || td == 61; }

// FA + 6 calendar months, the day clamped to the month's end (2024-08-31 -> 2025-02-28).
std::string add_six_months(const std::string& date) {
  int y = 0, m = 0, d = 0;
  if (std::sscanf(date.c_str(), "%4d-%2d-%2d", &y, &m, &d) != 3 || m < 1 || m > 12 || d < 1)
    throw CafError("caf.unreadable", "CAF FA '" + date + "' is not a YYYY-MM-DD date");
  m += 6;
  if (m > 12) {
    m -= 12;
    ++y;
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int last = kDays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0) ? 1 : 0);
  d = std::min(d, last);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", y, m, d);
  return buf;
}

Check make_check(std::string name, CheckStatus status, std::string reason = {}) {
  Check c;
  c.name = std::move(name);
  c.subject = "CAF";
  c.status = status;
  c.reason = std::move(reason);
  return c;
}

}  // namespace

std::string flattened_element(const xmlNode* element) {
  return flatten_xml(canonical_element(element));
}

// ---------------------------------------------------------------------------------- keyring

SiiKeyring::SiiKeyring(const SiiKeyring& other) {
  std::lock_guard lock(other.mu_);
  keys_ = other.keys_;
}

SiiKeyring& SiiKeyring::operator=(const SiiKeyring& other) {
  if (this != &other) {
    std::scoped_lock lock(mu_, other.mu_);
    keys_ = other.keys_;
  }
  return *this;
}

void SiiKeyring::add_pem(int idk, std::string_view pem_cert_or_pubkey) {
  std::string clean = clean_pem(pem_cert_or_pubkey);
  EvpPkeyPtr key;
  if (clean.find("-----BEGIN CERTIFICATE-----") != std::string::npos) {
    // SII's own IDK certificates are expired, md5WithRSA and carry an out-of-range version
    // field; OpenSSL's X.509 reader still takes them, and we only want the key anyway.
    BioPtr bio(BIO_new_mem_buf(clean.data(), static_cast<int>(clean.size())));
    X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (cert) key.reset(X509_get_pubkey(cert.get()));
    ERR_clear_error();
  } else {
    key = decode_pem_key(clean, EVP_PKEY_PUBLIC_KEY);
  }
  if (!key || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA)
    throw CafError("caf.bad_key", "SII key for IDK " + std::to_string(idk) +
                                      " is neither an RSA certificate nor an RSA public key PEM");
  std::lock_guard lock(mu_);
  keys_.emplace(idk, share(std::move(key)));
}

int SiiKeyring::add_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  int count = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    std::string ext = entry.path().extension().string();
    if (ext != ".pem" && ext != ".cer" && ext != ".pub") continue;
    std::string stem = entry.path().stem().string();
    // "<IDK>.pem" as the package ships them; "sii-caf-idk<IDK>.cer" as LibreDTE/SII name them.
    if (stem.rfind("sii-caf-idk", 0) == 0) stem = stem.substr(11);
    if (stem.empty() || stem.size() > 6 ||
        !std::all_of(stem.begin(), stem.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      add_pem(std::stoi(stem), pem);
    } catch (const CafError& e) {
      throw CafError(e.code(), entry.path().string() + ": " + e.what());
    }
    ++count;
  }
  return count;
}

std::vector<std::shared_ptr<EVP_PKEY>> SiiKeyring::keys_for(int idk) const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<EVP_PKEY>> out;
  auto [b, e] = keys_.equal_range(idk);
  for (auto it = b; it != e; ++it) out.push_back(it->second);
  return out;
}

std::vector<int> SiiKeyring::idks() const {
  std::lock_guard lock(mu_);
  std::vector<int> out;
  for (const auto& [idk, key] : keys_)
    if (out.empty() || out.back() != idk) out.push_back(idk);
  return out;
}

// ---------------------------------------------------------------------------------- CAF

Caf Caf::parse(std::string_view xml_bytes) {
  // SII's files are Latin-1; some come without an encoding declaration, which XML reads as UTF-8.
  std::string converted;
  if (!declares_encoding(xml_bytes) && !valid_utf8(xml_bytes)) {
    converted = from_latin1(xml_bytes);
    xml_bytes = converted;
  }
  XmlDocPtr doc = parse_xml(xml_bytes);
  xmlNode* root = xmlDocGetRootElement(doc.get());
  const xmlNode* caf = nullptr;
  if (local_name(root) == "AUTORIZACION") {
    caf = child(root, "CAF");
  } else if (local_name(root) == "CAF") {
    caf = root;
  } else {
    throw CafError("caf.unreadable",
                   "not a CAF: root element is <" + local_name(root) + ">, expected <AUTORIZACION>");
  }
  if (!caf) throw CafError("caf.missing_field", "AUTORIZACION has no <CAF> element");
  const xmlNode* da = child(caf, "DA");
  if (!da) throw CafError("caf.missing_field", "CAF has no <DA> element");
  const xmlNode* frma = child(caf, "FRMA");
  if (!frma) throw CafError("caf.missing_field", "CAF has no <FRMA> element");

  Caf out;
  CafInfo& info = out.info_;
  info.issuer_rut = required_text(da, "RE");
  info.issuer_name = required_text(da, "RS");
  info.doc_type = static_cast<int>(parse_number(required_text(da, "TD"), "TD"));
  info.folio_from = parse_number(required_text(da, "RNG/D"), "RNG/D");
  info.folio_to = parse_number(required_text(da, "RNG/H"), "RNG/H");
  info.authorized_on = required_text(da, "FA");
  info.idk = static_cast<int>(parse_number(required_text(da, "IDK"), "IDK"));
  info.expires_on = expiring_type(info.doc_type) ? add_six_months(info.authorized_on) : "";

  out.caf_xml_ = canonical_element(caf);
  out.da_flat_ = to_latin1(flattened_element(da));
  try {
    out.frma_ = base64_decode(trim(node_text(frma)));
    std::string m = base64_decode(required_text(da, "RSAPK/M"));
    std::string e = base64_decode(required_text(da, "RSAPK/E"));
    out.public_key_ = share(rsa_from_modulus_exponent(m, e));
  } catch (const CafError&) {
    throw;
  } catch (const DteError& err) {
    throw CafError("caf.unreadable", std::string("CAF FRMA or RSAPK is not valid base64: ") + err.what());
  }
  if (!out.public_key_) throw CafError("caf.unreadable", "CAF RSAPK M/E is not a usable RSA key");

  if (const xmlNode* sk = child(root, "RSASK"); sk && sk != caf) {
    out.private_key_ = share(decode_pem_key(node_text(sk), EVP_PKEY_KEYPAIR));
    if (!out.private_key_ || EVP_PKEY_get_base_id(out.private_key_.get()) != EVP_PKEY_RSA)
      throw CafError("caf.unreadable", "CAF RSASK is not a readable PEM RSA private key");
    info.has_private_key = true;
  }
  if (const xmlNode* pk = child(root, "RSAPUBK"); pk && pk != caf) {
    out.rsapubk_ = share(decode_pem_key(node_text(pk), EVP_PKEY_PUBLIC_KEY));
    if (!out.rsapubk_) throw CafError("caf.unreadable", "CAF RSAPUBK is not a readable PEM public key");
  }
  return out;
}

namespace {

// Outcomes of RSA operations that are pure functions of immutable keys and bytes, remembered so
// that a batch signed or verified with one CAF pays for them once (each sign_document checks the
// CAF; each verified TED carries its CAF). Keys are identified by address and held weakly: an
// entry whose key was freed is stale (its address may be reused) and is never trusted.
class OutcomeCache {
 public:
  std::optional<bool> find(const std::shared_ptr<EVP_PKEY>& a, const std::shared_ptr<EVP_PKEY>& b,
                           const std::string& bytes) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(Key{a.get(), b.get(), bytes});
    if (it == entries_.end()) return std::nullopt;
    if (it->second.a.lock() != a || it->second.b.lock() != b) {
      entries_.erase(it);
      return std::nullopt;
    }
    return it->second.result;
  }
  void put(const std::shared_ptr<EVP_PKEY>& a, const std::shared_ptr<EVP_PKEY>& b,
           const std::string& bytes, bool result) {
    std::lock_guard lock(mu_);
    if (entries_.size() >= kMaxEntries) entries_.clear();
    entries_[Key{a.get(), b.get(), bytes}] = Entry{a, b, result};
  }

 private:
  static constexpr std::size_t kMaxEntries = 4096;
  struct Key {
    const EVP_PKEY* a;
    const EVP_PKEY* b;
    std::string bytes;
    bool operator<(const Key& o) const {
      if (a != o.a) return std::less<const EVP_PKEY*>()(a, o.a);
      if (b != o.b) return std::less<const EVP_PKEY*>()(b, o.b);
      return bytes < o.bytes;
    }
  };
  struct Entry {
    std::weak_ptr<EVP_PKEY> a;
    std::weak_ptr<EVP_PKEY> b;
    bool result = false;
  };
  std::mutex mu_;
  std::map<Key, Entry> entries_;
};

OutcomeCache& frma_outcomes() {
  static OutcomeCache* cache = new OutcomeCache;  // leaked: used from pool threads until exit
  return *cache;
}

OutcomeCache& key_pair_outcomes() {
  static OutcomeCache* cache = new OutcomeCache;
  return *cache;
}

// FRMA over DA with one SII key, remembered per (key, DA, FRMA).
bool frma_verifies(const std::shared_ptr<EVP_PKEY>& sii_key, const std::string& da_flat,
                   const std::string& frma) {
  std::string bytes = da_flat;
  bytes.push_back('\0');
  bytes += frma;
  if (auto hit = frma_outcomes().find(sii_key, nullptr, bytes)) return *hit;
  bool ok = rsa_sha1_verify(sii_key.get(), da_flat, frma);
  frma_outcomes().put(sii_key, nullptr, bytes, ok);
  return ok;
}

}  // namespace

std::vector<Check> Caf::check(const SiiKeyring& keyring) const {
  std::vector<Check> out;
  auto keys = keyring.keys_for(info_.idk);
  if (keys.empty()) {
    out.push_back(make_check("caf.sii_signature", CheckStatus::kSkip,
                             "no SII key for IDK " + std::to_string(info_.idk) + " in the keyring"));
  } else {
    bool ok = std::any_of(keys.begin(), keys.end(), [&](const auto& k) {
      return frma_verifies(k, da_flat_, frma_);
    });
    out.push_back(ok ? make_check("caf.sii_signature", CheckStatus::kPass)
                     : make_check("caf.sii_signature", CheckStatus::kFail,
                                  "FRMA does not verify over DA with SII's key for IDK " +
                                      std::to_string(info_.idk) + " (DA altered or not SII's CAF)"));
  }

  if (!private_key_) {
    out.push_back(make_check("caf.key_pair", CheckStatus::kSkip, "CAF has no RSASK (public part only)"));
  } else {
    // Same modulus/exponent, and the private half really signs for the public one (a
    // corrupted private exponent would pass the first test only). Both keys are immutable, so
    // the probe (an RSA signature) is made once per key pair, not once per stamped document.
    bool same = EVP_PKEY_eq(private_key_.get(), public_key_.get()) == 1;
    ERR_clear_error();
    bool works = false;
    if (same) {
      if (auto hit = key_pair_outcomes().find(private_key_, public_key_, {})) {
        works = *hit;
      } else {
        static constexpr std::string_view kProbe = "dte-native CAF key pair probe";
        try {
          works =
              rsa_sha1_verify(public_key_.get(), kProbe, rsa_sha1_sign(private_key_.get(), kProbe));
        } catch (const DteError&) {
          works = false;
        }
        key_pair_outcomes().put(private_key_, public_key_, {}, works);
      }
    }
    out.push_back(same && works ? make_check("caf.key_pair", CheckStatus::kPass)
                  : make_check("caf.key_pair", CheckStatus::kFail,
                               same ? "RSASK does not produce signatures that RSAPK verifies"
                                    : "RSASK is not the private key of RSAPK in DA"));
  }

  if (!rsapubk_) {
    out.push_back(make_check("caf.public_key", CheckStatus::kSkip, "CAF has no RSAPUBK"));
  } else {
    bool same = EVP_PKEY_eq(rsapubk_.get(), public_key_.get()) == 1;
    ERR_clear_error();
    out.push_back(same ? make_check("caf.public_key", CheckStatus::kPass)
                       : make_check("caf.public_key", CheckStatus::kFail,
                                    "RSAPUBK differs from RSAPK in DA"));
  }
  return out;
}

void Caf::verify(const SiiKeyring& keyring) const {
  for (const Check& c : check(keyring)) {
    if (c.name == "caf.sii_signature" && c.status == CheckStatus::kSkip)
      throw CafError("caf.unknown_idk", "cannot verify the CAF: " + c.reason);
    if (c.status != CheckStatus::kFail) continue;
    if (c.name == "caf.sii_signature") throw CafError("caf.sii_signature", c.reason);
    throw CafError("caf.key_pair", c.reason);
  }
}

void Caf::check_fits(std::string_view issuer_rut, int doc_type, long long folio,
                     std::string_view on_date) const {
  if (normalized_rut(issuer_rut) != normalized_rut(info_.issuer_rut))
    throw CafError("caf.wrong_rut", "CAF is for issuer " + info_.issuer_rut +
                                        ", the document is issued by " + std::string(issuer_rut));
  if (doc_type != info_.doc_type)
    throw CafError("caf.wrong_type", "CAF is for document type " + std::to_string(info_.doc_type) +
                                         ", the document is type " + std::to_string(doc_type));
  if (folio < info_.folio_from || folio > info_.folio_to)
    throw CafError("caf.folio_out_of_range",
                   "folio " + std::to_string(folio) + " is outside the CAF range " +
                       std::to_string(info_.folio_from) + "-" + std::to_string(info_.folio_to));
  if (!info_.expires_on.empty()) {
    std::string date = on_date.empty() ? today_date() : std::string(on_date.substr(0, 10));
    if (date > info_.expires_on)
      throw CafError("caf.expired", "CAF authorized on " + info_.authorized_on + " expired on " +
                                        info_.expires_on + "; the date is " + date);
  }
}

std::string Caf::sign(std::string_view data) const {
  if (!private_key_)
    throw CafError("caf.no_private_key",
                   "CAF has no RSASK private key (public part only): it cannot stamp documents");
  // EVP_PKEY is shared read-only between threads; each call has its own EVP_MD_CTX.
  return rsa_sha1_sign(private_key_.get(), data);
}

bool Caf::verify_signature(std::string_view data, std::string_view signature) const {
  return rsa_sha1_verify(public_key_.get(), data, signature);
}

}  // namespace dte
