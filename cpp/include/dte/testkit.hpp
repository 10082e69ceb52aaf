// Test and demo material made on the spot: an "SII" CAF-signing key, CAFs signed with it, and
// self-signed signer certificates in the shape Chilean CAs use. Nothing here is secret or
// committed; the simulator, the demo job, certification dry-runs and the tests all use it.
#pragma once
#include <string>

namespace dte::testkit {

struct KeyPair {
  std::string private_pem;  // PKCS#8 PEM
  std::string public_pem;   // SubjectPublicKeyInfo PEM
};

// A fresh RSA key ("SII" CAF keys are 1024-bit in production; CAF range keys are 512-bit, e=3).
KeyPair make_rsa_key(int bits = 1024, unsigned long exponent = 65537);

struct CafSpec {
  std::string issuer_rut;        // RE
  std::string issuer_name = "EMPRESA DE PRUEBA";
  int doc_type = 33;
  long long folio_from = 1;
  long long folio_to = 100;
  std::string authorized_on;     // FA; empty = today
  int idk = 100;
};

// An AUTORIZACION file (ISO-8859-1 bytes with declaration) whose FRMA is signed with
// `sii_private_pem` and which carries a fresh 512-bit e=3 key pair in RSAPK/RSASK/RSAPUBK.
std::string make_caf(const CafSpec& spec, const std::string& sii_private_pem);

struct CertSpec {
  std::string rut;                 // signer RUT, put where Chilean CAs put it
  std::string name = "Firmante de Prueba";
  std::string email = "firmante@example.cl";
  int days_valid = 365;            // negative: already expired
  int days_offset = 0;             // notBefore = now + offset days (positive: not yet valid)
  bool rut_in_san = true;          // SAN otherName 1.3.6.1.4.1.8321.1 (SII's RUT extension)
  bool rut_in_serial_number = true;  // subject serialNumber (E-Sign / Acepta style)
  bool legacy_pkcs12 = false;      // RC2-40 / 3DES PBE like older CA exports
};

struct Pkcs12Bundle {
  std::string p12;       // DER bytes
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed RSA-2048 certificate and key, and the same as PKCS#12 with `password`.
Pkcs12Bundle make_certificate(const CertSpec& spec, const std::string& password);

}  // namespace dte::testkit
