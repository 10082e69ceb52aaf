// The signer's certificate: PKCS#12 (.p12/.pfx, legacy RC2/3DES too) or PEM (cert + key).
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "dte/handles.hpp"

namespace dte {

struct CertificateInfo {
  std::string subject;        // one-line RFC 2253 subject
  std::string issuer;         // one-line RFC 2253 issuer
  std::string common_name;
  std::string serial_number;  // certificate serial, hex
  std::string signer_rut;     // "12345678-5", "" when the certificate carries none
  std::string rut_source;     // "san:1.3.6.1.4.1.8321.1", "subject:serialNumber", ... or ""
  std::string email;
  std::string not_before;     // "YYYY-MM-DDTHH:MM:SSZ" (UTC)
  std::string not_after;
  std::string sha256_fingerprint;  // hex, colon-free
};

enum class ValidityCheck { kNone, kNow, kAt };

class Certificate {
 public:
  // Loads a PKCS#12 bundle. Errors (CertificateError codes): "cert.wrong_password",
  // "cert.unreadable", "cert.no_private_key", "cert.key_mismatch".
  static Certificate from_pkcs12(std::string_view der, std::string_view password);
  // Loads a PEM certificate and its PEM private key (the key may be in the same text).
  static Certificate from_pem(std::string_view cert_pem, std::string_view key_pem,
                              std::string_view key_password = {});
  // A certificate without private key (verification, inspection). PEM or DER.
  static Certificate public_only(std::string_view pem_or_der);

  const CertificateInfo& info() const noexcept { return info_; }
  bool has_private_key() const noexcept { return key_ != nullptr; }

  // Throws CertificateError "cert.expired" / "cert.not_yet_valid" if not valid at `when`
  // ("YYYY-MM-DDTHH:MM:SS", Chile local time, as in TmstFirma) or now when empty.
  void check_valid_at(std::string_view when = {}) const;
  bool valid_at(std::string_view when = {}) const noexcept;

  X509* x509() const noexcept { return cert_.get(); }
  EVP_PKEY* private_key() const noexcept { return key_.get(); }
  std::string cert_der() const;
  std::string cert_base64() const;              // for X509Certificate
  std::string rsa_modulus_base64() const;       // for RSAKeyValue/Modulus
  std::string rsa_exponent_base64() const;      // for RSAKeyValue/Exponent

  Certificate(X509Ptr cert, EvpPkeyPtr key);

 private:
  std::shared_ptr<X509> cert_;
  std::shared_ptr<EVP_PKEY> key_;
  CertificateInfo info_;
};

// Makes OpenSSL 3 load the "legacy" and "default" providers once (RC2-40 PKCS#12 files).
void ensure_openssl_providers();

}  // namespace dte
