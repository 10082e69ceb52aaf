#include "dte/cert.hpp"

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <optional>

#include "dte/errors.hpp"
#include "dte/rut.hpp"
#include "dte/testkit.hpp"
#include "dte/xml.hpp"

namespace dte {
namespace {

using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, CDeleter<GENERAL_NAMES_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, CDeleter<X509_EXTENSION_free>>;
using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, CDeleter<ASN1_INTEGER_free>>;
inline void openssl_free(char* p) noexcept { OPENSSL_free(p); }
using OpensslStringPtr = std::unique_ptr<char, CDeleter<openssl_free>>;
inline void openssl_free_uchar(unsigned char* p) noexcept { OPENSSL_free(p); }
using OpensslBytesPtr = std::unique_ptr<unsigned char, CDeleter<openssl_free_uchar>>;

// OID of SII's RUT extension (SAN otherName), and the older E-CertChile one.
constexpr const char* kOidSiiRut = "1.3.6.1.4.1.8321.1";
constexpr const char* kOidECertChileRut = "1.3.6.1.4.1.8658.1";

std::string openssl_error(std::string_view fallback) {
  unsigned long e = ERR_get_error();
  std::string out;
  while (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
    e = ERR_get_error();
  }
  ERR_clear_error();
  return out.empty() ? std::string(fallback) : out;
}

BioPtr mem_bio(std::string_view bytes) {
  BioPtr bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
  if (!bio) throw CertificateError("cert.internal", "cannot allocate an OpenSSL BIO");
  return bio;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return len > 0 ? std::string(data, static_cast<std::size_t>(len)) : std::string();
}

std::string asn1_string_utf8(const ASN1_STRING* s) {
  if (!s) return {};
  unsigned char* out = nullptr;
  int len = ASN1_STRING_to_UTF8(&out, s);
  if (len < 0) return {};
  OpensslBytesPtr holder(out);
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(len));
}

std::string name_entry(const X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return {};
  return asn1_string_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
}

std::string rfc2253(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  return bio_text(bio.get());
}

std::string asn1_time_iso(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string hex(const unsigned char* data, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[data[i] >> 4]);
    out.push_back(digits[data[i] & 0x0F]);
  }
  return out;
}

// The value of a SAN otherName as text, whatever string type the CA chose.
std::string other_name_text(const OTHERNAME* on) {
  if (!on || !on->value) return {};
  const ASN1_TYPE* v = on->value;
  switch (v->type) {
    case V_ASN1_UTF8STRING:
    case V_ASN1_IA5STRING:
    case V_ASN1_PRINTABLESTRING:
    case V_ASN1_VISIBLESTRING:
    case V_ASN1_T61STRING:
    case V_ASN1_BMPSTRING:
    case V_ASN1_UNIVERSALSTRING:
    case V_ASN1_OCTET_STRING:
      return asn1_string_utf8(v->value.asn1_string);
    default:
      return {};
  }
}

// A RUT inside text that may carry a prefix ("RUT: 12.345.678-5", "CL12345678-5").
std::optional<Rut> rut_in_text(std::string_view text) {
  if (auto r = Rut::try_parse(text)) return r;
  std::size_t first = text.find_first_of("0123456789");
  if (first == std::string_view::npos) return std::nullopt;
  std::string_view tail = text.substr(first);
  while (!tail.empty() && std::isspace(static_cast<unsigned char>(tail.back())))
    tail.remove_suffix(1);
  return Rut::try_parse(tail);
}

// A RUT-shaped value ("12.345.678-5", "012345678-5", "12345678k") in SII's form, without
// judging the check digit: the CA's RUT field is authoritative and SII compares it as
// written (CORD's test certificate carries "13185095-K", whose digit is wrong).
std::optional<std::string> rut_shape(std::string_view text) {
  std::string compact;
  for (char c : text) {
    if (c == '.' || c == ' ') continue;
    compact.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  if (compact.size() >= 2 && compact[compact.size() - 2] == '-') compact.erase(compact.size() - 2, 1);
  if (compact.size() < 2) return std::nullopt;
  char dv = compact.back();
  std::string body = compact.substr(0, compact.size() - 1);
  if (!((dv >= '0' && dv <= '9') || dv == 'K')) return std::nullopt;
  if (body.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  body.erase(0, body.find_first_not_of('0'));
  if (body.empty() || body.size() > 8) return std::nullopt;
  return body + "-" + dv;
}

std::string oid_text(const ASN1_OBJECT* obj) {
  char buf[128];
  int n = OBJ_obj2txt(buf, sizeof buf, obj, 1);
  return n > 0 ? std::string(buf) : std::string();
}

void fill_rut(X509* cert, CertificateInfo& info, const std::string& san_email) {
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (const char* oid : {kOidSiiRut, kOidECertChileRut}) {
      for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
        const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
        if (gn->type != GEN_OTHERNAME || oid_text(gn->d.otherName->type_id) != oid) continue;
        if (auto rut = rut_shape(other_name_text(gn->d.otherName))) {
          info.signer_rut = *rut;
          info.rut_source = std::string("san:") + oid;
          return;
        }
      }
    }
  }
  const X509_NAME* subject = X509_get_subject_name(cert);
  if (auto rut = rut_in_text(name_entry(subject, NID_serialNumber))) {
    info.signer_rut = rut->str();
    info.rut_source = "subject:serialNumber";
    return;
  }
  // Last resort, and only for a value that is nothing but a valid RUT.
  if (auto rut = Rut::try_parse(info.common_name)) {
    info.signer_rut = rut->str();
    info.rut_source = "subject:CN";
    return;
  }
  std::string email = san_email.empty() ? info.email : san_email;
  std::string local = email.substr(0, email.find('@'));
  if (!local.empty()) {
    if (auto rut = Rut::try_parse(local)) {
      info.signer_rut = rut->str();
      info.rut_source = "email";
    }
  }
}

CertificateInfo describe(X509* cert) {
  CertificateInfo info;
  const X509_NAME* subject = X509_get_subject_name(cert);
  info.subject = rfc2253(subject);
  info.issuer = rfc2253(X509_get_issuer_name(cert));
  info.common_name = name_entry(subject, NID_commonName);
  if (BignumPtr bn{ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)}) {
    OpensslStringPtr h(BN_bn2hex(bn.get()));
    if (h) info.serial_number = h.get();
  }
  std::string san_email;
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
      if (gn->type == GEN_EMAIL) {
        san_email = asn1_string_utf8(gn->d.rfc822Name);
        break;
      }
    }
  }
  info.email = name_entry(subject, NID_pkcs9_emailAddress);
  if (info.email.empty()) info.email = san_email;
  info.not_before = asn1_time_iso(X509_get0_notBefore(cert));
  info.not_after = asn1_time_iso(X509_get0_notAfter(cert));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &md_len) == 1) info.sha256_fingerprint = hex(md, md_len);
  fill_rut(cert, info, san_email);
  return info;
}

// "YYYY-MM-DDTHH:MM:SS" (optionally with "Z") to broken-down time; false when malformed.
bool parse_timestamp(std::string_view s, std::tm& tm, bool& utc) {
  int y, mo, d, h = 0, mi = 0, se = 0;
  std::string text(s);
  int n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &se);
  if (n != 6 && !(n == 3 && text.size() == 10)) return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return false;
  tm = {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  utc = !text.empty() && text.back() == 'Z';
  return true;
}

std::shared_ptr<X509> share(X509Ptr p) { return std::shared_ptr<X509>(p.release(), X509_free); }
std::shared_ptr<EVP_PKEY> share(EvpPkeyPtr p) {
  return std::shared_ptr<EVP_PKEY>(p.release(), EVP_PKEY_free);
}

std::string bn_param_base64(EVP_PKEY* pkey, const char* param) {
  if (!pkey || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
    throw CertificateError("cert.not_rsa", "the certificate key is not RSA (SII requires RSA)");
  }
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, param, &raw) != 1) {
    throw CertificateError("cert.internal", openssl_error("cannot read the RSA key"));
  }
  BignumPtr bn(raw);
  std::string bytes(static_cast<std::size_t>(BN_num_bytes(bn.get())), '\0');
  BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(bytes.data()));
  return base64_encode(bytes);
}

}  // namespace

void ensure_openssl_providers() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Loading any provider explicitly stops OpenSSL from loading "default" on its own, so both
    // are loaded. "legacy" may be missing on a minimal system: modern bundles still work then.
    // Kept for the life of the process. Our references are dropped at exit, before OpenSSL's
    // own clean-up (atexit runs handlers last-registered first, and OpenSSL registered its
    // handler when it initialised, before these loads): otherwise the provider store stays
    // half-freed and LeakSanitizer reports it.
    static OSSL_PROVIDER* legacy = nullptr;
    static OSSL_PROVIDER* standard = nullptr;
    legacy = OSSL_PROVIDER_load(nullptr, "legacy");
    standard = OSSL_PROVIDER_load(nullptr, "default");
    std::atexit([] {
      if (legacy) OSSL_PROVIDER_unload(legacy);
      if (standard) OSSL_PROVIDER_unload(standard);
    });
    ERR_clear_error();
  });
}

Certificate::Certificate(X509Ptr cert, EvpPkeyPtr key) {
  if (!cert) throw CertificateError("cert.unreadable", "no certificate given");
  if (key && X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    throw CertificateError("cert.key_mismatch",
                           "the private key does not belong to the certificate");
  }
  info_ = describe(cert.get());
  cert_ = share(std::move(cert));
  if (key) key_ = share(std::move(key));
}

Certificate Certificate::from_pkcs12(std::string_view der, std::string_view password) {
  ensure_openssl_providers();
  ERR_clear_error();
  BioPtr bio = mem_bio(der);
  Pkcs12Ptr p12(d2i_PKCS12_bio(bio.get(), nullptr));
  if (!p12) {
    throw CertificateError("cert.unreadable",
                           "not a PKCS#12 file (" + openssl_error("DER decoding failed") + ")");
  }
  std::string pass(password);
  // An empty password may have been encoded as "no password" or as an empty string.
  const char* pass_arg = pass.c_str();
  if (PKCS12_mac_present(p12.get())) {
    if (PKCS12_verify_mac(p12.get(), pass_arg, -1) != 1) {
      if (pass.empty() && PKCS12_verify_mac(p12.get(), nullptr, 0) == 1) {
        pass_arg = nullptr;
      } else {
        ERR_clear_error();
        throw CertificateError("cert.wrong_password",
                               "wrong password for the PKCS#12 file (MAC check failed)");
      }
    }
  }
  EVP_PKEY* key_raw = nullptr;
  X509* cert_raw = nullptr;
  STACK_OF(X509)* ca_raw = nullptr;
  if (PKCS12_parse(p12.get(), pass_arg, &key_raw, &cert_raw, &ca_raw) != 1) {
    std::string why = openssl_error("cannot decrypt the PKCS#12 contents");
    if (!PKCS12_mac_present(p12.get()) && why.find("decrypt") != std::string::npos) {
      throw CertificateError("cert.wrong_password", "wrong password for the PKCS#12 file");
    }
    throw CertificateError("cert.unreadable", "cannot read the PKCS#12 file: " + why);
  }
  EvpPkeyPtr key(key_raw);
  X509Ptr cert(cert_raw);
  X509StackPtr ca(ca_raw);
  if (!key) throw CertificateError("cert.no_private_key", "the PKCS#12 file holds no private key");
  if (!cert && ca) {
    // Some exports put the signer's certificate among the CA ones: take the one of the key.
    for (int i = 0; i < sk_X509_num(ca.get()); ++i) {
      X509* c = sk_X509_value(ca.get(), i);
      if (X509_check_private_key(c, key.get()) == 1) {
        X509_up_ref(c);
        cert.reset(c);
        break;
      }
    }
    ERR_clear_error();
  }
  if (!cert) throw CertificateError("cert.unreadable", "the PKCS#12 file holds no certificate");
  return Certificate(std::move(cert), std::move(key));
}

Certificate Certificate::from_pem(std::string_view cert_pem, std::string_view key_pem,
                                  std::string_view key_password) {
  ensure_openssl_providers();
  ERR_clear_error();
  BioPtr cbio = mem_bio(cert_pem);
  X509Ptr cert(PEM_read_bio_X509(cbio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    throw CertificateError("cert.unreadable",
                           "no PEM certificate found (" + openssl_error("PEM decoding failed") + ")");
  }
  std::string_view key_text = key_pem.empty() ? cert_pem : key_pem;
  std::string pass(key_password);
  BioPtr kbio = mem_bio(key_text);
  // With a null password OpenSSL would prompt on the terminal for an encrypted key.
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, pass.data()));
  if (!key) {
    std::string why = openssl_error("no private key");
    bool encrypted = key_text.find("ENCRYPTED") != std::string_view::npos;
    if (encrypted) {
      throw CertificateError("cert.wrong_password",
                             "cannot decrypt the PEM private key (wrong password?)");
    }
    throw CertificateError("cert.no_private_key", "no PEM private key found (" + why + ")");
  }
  return Certificate(std::move(cert), std::move(key));
}

Certificate Certificate::public_only(std::string_view pem_or_der) {
  ensure_openssl_providers();
  ERR_clear_error();
  X509Ptr cert;
  if (pem_or_der.find("-----BEGIN") != std::string_view::npos) {
    BioPtr bio = mem_bio(pem_or_der);
    cert.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  } else {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(pem_or_der.data());
    cert.reset(d2i_X509(nullptr, &p, static_cast<long>(pem_or_der.size())));
  }
  if (!cert) {
    throw CertificateError("cert.unreadable",
                           "not an X.509 certificate (" + openssl_error("decoding failed") + ")");
  }
  return Certificate(std::move(cert), nullptr);
}

// `when` is Chile local time, which is UTC-3 in summer and UTC-4 in winter. Rather than guess
// the offset in force (TmstFirma carries none), the certificate counts as valid when it is valid
// at either reading: this gives at most one hour of slack at each end of the validity period.
void Certificate::check_valid_at(std::string_view when) const {
  std::time_t earliest, latest;
  if (when.empty()) {
    earliest = latest = std::time(nullptr);
  } else {
    std::tm tm{};
    bool utc = false;
    if (!parse_timestamp(when, tm, utc)) {
      throw CertificateError("cert.bad_time", "cannot read the time '" + std::string(when) +
                                                  "' (expected YYYY-MM-DDTHH:MM:SS)");
    }
    std::time_t as_utc = timegm(&tm);
    earliest = utc ? as_utc : as_utc + 3 * 3600;
    latest = utc ? as_utc : as_utc + 4 * 3600;
  }
  std::string at = when.empty() ? std::string("now") : std::string(when);
  // X509_cmp_time: -1 when the certificate time is earlier than the given one.
  if (X509_cmp_time(X509_get0_notBefore(cert_.get()), &latest) > 0) {
    throw CertificateError("cert.not_yet_valid", "the certificate is not valid before " +
                                                     info_.not_before + " (checked at " + at + ")");
  }
  if (X509_cmp_time(X509_get0_notAfter(cert_.get()), &earliest) < 0) {
    throw CertificateError("cert.expired",
                           "the certificate expired on " + info_.not_after + " (checked at " + at + ")");
  }
}

bool Certificate::valid_at(std::string_view when) const noexcept {
  try {
    check_valid_at(when);
    return true;
  } catch (...) {
    return false;
  }
}

std::string Certificate::cert_der() const {
  unsigned char* out = nullptr;
  int len = i2d_X509(cert_.get(), &out);
  if (len < 0) throw CertificateError("cert.internal", "cannot encode the certificate");
  OpensslBytesPtr holder(out);
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(len));
}

std::string Certificate::cert_base64() const { return base64_encode(cert_der(), 76); }

std::string Certificate::rsa_modulus_base64() const {
  return bn_param_base64(X509_get0_pubkey(cert_.get()), OSSL_PKEY_PARAM_RSA_N);
}

std::string Certificate::rsa_exponent_base64() const {
  return bn_param_base64(X509_get0_pubkey(cert_.get()), OSSL_PKEY_PARAM_RSA_E);
}

namespace testkit {
namespace {

void add_name(X509_NAME* name, int nid, const std::string& value) {
  if (value.empty()) return;
  X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
}

void add_ext(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    throw CertificateError("cert.internal", "cannot add extension '" + value + "': " +
                                                openssl_error("X509V3 failed"));
  }
}

std::string pem_of(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return bio_text(bio.get());
}

std::string pem_of(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return bio_text(bio.get());
}

}  // namespace

// Validity: notBefore = now + days_offset; notAfter = notBefore + days_valid. A negative
// days_valid makes a certificate that expired |days_valid| days ago and was valid for a year.
Pkcs12Bundle make_certificate(const CertSpec& spec, const std::string& password) {
  ensure_openssl_providers();
  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  if (!key) throw CertificateError("cert.internal", openssl_error("RSA key generation failed"));
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7F;
  BignumPtr bn(BN_bin2bn(serial, sizeof serial, nullptr));
  Asn1IntegerPtr asn_serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  X509_set_serialNumber(cert.get(), asn_serial.get());

  const long day = 24L * 3600L;
  long before = static_cast<long>(spec.days_offset) * day;
  long after = before + static_cast<long>(spec.days_valid) * day;
  if (spec.days_valid <= 0) {
    after = static_cast<long>(spec.days_valid) * day + (spec.days_valid == 0 ? 0 : -1);
    before = after - 365 * day;
  }
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), before);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), after);

  std::string rut;
  if (!spec.rut.empty()) {
    // Shape only: tests may want a certificate with a wrong check digit, as real ones exist.
    auto shaped = rut_shape(spec.rut);
    if (!shaped) throw RutError("rut.invalid", "'" + spec.rut + "' is not a RUT");
    rut = *shaped;
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  add_name(name, NID_countryName, "CL");
  add_name(name, NID_organizationName, "Pruebas dte-native");
  add_name(name, NID_commonName, spec.name);
  add_name(name, NID_pkcs9_emailAddress, spec.email);
  if (spec.rut_in_serial_number) add_name(name, NID_serialNumber, rut);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key.get());

  add_ext(cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), NID_key_usage, "critical,digitalSignature,nonRepudiation,keyEncipherment");
  std::string san;
  if (spec.rut_in_san && !rut.empty()) san = std::string("otherName:") + kOidSiiRut + ";UTF8:" + rut;
  if (!spec.email.empty()) san += (san.empty() ? "" : ",") + std::string("email:") + spec.email;
  if (!san.empty()) add_ext(cert.get(), NID_subject_alt_name, san);
  add_ext(cert.get(), NID_subject_key_identifier, "hash");

  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) {
    throw CertificateError("cert.internal", openssl_error("self-signing failed"));
  }

  Pkcs12Bundle out;
  out.cert_pem = pem_of(cert.get());
  out.key_pem = pem_of(key.get());
  std::string friendly = spec.name;
  Pkcs12Ptr p12;
  if (spec.legacy_pkcs12) {
    // What older CA exports (and Windows) produce: 3DES for the key, RC2-40 for the
    // certificate, SHA-1 MAC.
    p12.reset(PKCS12_create(password.c_str(), friendly.c_str(), key.get(), cert.get(), nullptr,
                            NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
                            NID_pbe_WithSHA1And40BitRC2_CBC, 2048, 2048, 0));
  } else {
    p12.reset(PKCS12_create(password.c_str(), friendly.c_str(), key.get(), cert.get(), nullptr,
                            NID_aes_256_cbc, NID_aes_256_cbc, 2048, -1, 0));
    if (p12 && PKCS12_set_mac(p12.get(), password.c_str(), -1, nullptr, 0, 2048,
                              EVP_sha256()) != 1) {
      p12.reset();
    }
  }
  if (!p12) throw CertificateError("cert.internal", openssl_error("PKCS#12 export failed"));
  unsigned char* der = nullptr;
  int len = i2d_PKCS12(p12.get(), &der);
  if (len < 0) throw CertificateError("cert.internal", openssl_error("PKCS#12 encoding failed"));
  OpensslBytesPtr holder(der);
  out.p12.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  return out;
}

}  // namespace testkit
}  // namespace dte
