#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <openssl/x509v3.h>
#include <unistd.h>

#include "dte/cert.hpp"
#include "dte/errors.hpp"
#include "dte/testkit.hpp"

using namespace dte;

namespace {

const std::filesystem::path kCerts = std::filesystem::path(DTE_SHARED_DIR) / "certs";

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

#define REQUIRE_SHARED()                                                          \
  if (!std::filesystem::exists(kCerts))                                           \
  GTEST_SKIP() << "shared test data not found at " << kCerts << " (read-only kit)"

template <typename F>
std::string error_code(F&& f) {
  try {
    f();
  } catch (const DteError& e) {
    return e.code();
  }
  return "no error";
}

testkit::CertSpec spec(std::string rut) {
  testkit::CertSpec s;
  s.rut = std::move(rut);
  return s;
}

}  // namespace

TEST(Cert, SharedCertificatesYieldTheirRut) {
  REQUIRE_SHARED();
  struct Case {
    const char* file;
    const char* rut;
    const char* source;
  };
  const Case cases[] = {
      {"TEST-DTE-13185095-K.cert.der", "13185095-K", "san:1.3.6.1.4.1.8321.1"},
      {"TEST-DTE-WITH-ID-BUT-NO-RUT.cert.der", "", ""},
      {"wildcard-google-com-cert.der", "", ""},
      {"wildcard-google-com-cert.pem", "", ""},
      {"prueba-sii-cert.pem", "7880442-4", "san:1.3.6.1.4.1.8658.1"},
      {"prueba-sii-cert.der", "7880442-4", "san:1.3.6.1.4.1.8658.1"},
      {"DTE--60910000-1--33--2336600-cert.der", "8480437-1", "san:1.3.6.1.4.1.8321.1"},
      {"DTE--76354771-K--33--170-cert.pem", "13185095-6", "san:1.3.6.1.4.1.8321.1"},
      {"DTE--76399752-9--33--25568-cert.der", "16477752-9", "san:1.3.6.1.4.1.8321.1"},
      {"DTE--96670340-7--61--110616-cert.pem", "23099536-2", "san:1.3.6.1.4.1.8321.1"},
      {"AEC--76354771-K--33--170--SEQ-2-cert.der", "16360379-9", "san:1.3.6.1.4.1.8321.1"},
      {"AEC--76399752-9--33--25568--SEQ-1-cert.pem", "16477752-9", "san:1.3.6.1.4.1.8321.1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    Certificate cert = Certificate::public_only(read_file(kCerts / c.file));
    EXPECT_FALSE(cert.has_private_key());
    EXPECT_EQ(cert.info().signer_rut, c.rut);
    EXPECT_EQ(cert.info().rut_source, c.source);
    EXPECT_EQ(cert.info().sha256_fingerprint.size(), 64u);
    EXPECT_FALSE(cert.info().not_after.empty());
    EXPECT_FALSE(cert.valid_at());  // every shared certificate has expired
  }
  // The rest of the folder loads too (SII's CAF keys have an odd version field).
  for (const auto& entry : std::filesystem::directory_iterator(kCerts)) {
    std::string name = entry.path().filename().string();
    if (name.find(".key.") != std::string::npos) continue;
    SCOPED_TRACE(name);
    EXPECT_NO_THROW(Certificate::public_only(read_file(entry.path())));
  }
}

TEST(Cert, SharedCertificateInfo) {
  REQUIRE_SHARED();
  Certificate cert = Certificate::public_only(read_file(kCerts / "TEST-DTE-13185095-K.cert.der"));
  const CertificateInfo& i = cert.info();
  EXPECT_EQ(i.common_name, "John Doe");
  EXPECT_EQ(i.email, "john.doe@acme.com");
  EXPECT_NE(i.subject.find("CN=John Doe"), std::string::npos);
  EXPECT_EQ(i.not_before.substr(0, 10), "2024-10-01");
  EXPECT_EQ(i.not_after.substr(0, 10), "2025-10-01");
  // Valid at a time inside its validity, Chile local time; not before or after.
  EXPECT_TRUE(cert.valid_at("2025-01-15T12:00:00"));
  EXPECT_EQ(error_code([&] { cert.check_valid_at("2024-09-01T12:00:00"); }), "cert.not_yet_valid");
  EXPECT_EQ(error_code([&] { cert.check_valid_at("2025-10-03T12:00:00"); }), "cert.expired");
  EXPECT_EQ(error_code([&] { cert.check_valid_at("yesterday"); }), "cert.bad_time");
  // The DER and PEM forms agree.
  Certificate pem = Certificate::public_only(read_file(kCerts / "DTE--76354771-K--33--170-cert.pem"));
  Certificate der = Certificate::public_only(read_file(kCerts / "DTE--76354771-K--33--170-cert.der"));
  EXPECT_EQ(pem.info().sha256_fingerprint, der.info().sha256_fingerprint);
  EXPECT_EQ(pem.cert_der(), der.cert_der());
}

TEST(Cert, SharedKeyPairLoadsFromPem) {
  REQUIRE_SHARED();
  Certificate pub = Certificate::public_only(read_file(kCerts / "TEST-DTE-13185095-K.cert.der"));
  std::string cert_pem = "-----BEGIN CERTIFICATE-----\n" + pub.cert_base64() +
                         "\n-----END CERTIFICATE-----\n";
  Certificate c = Certificate::from_pem(cert_pem, read_file(kCerts / "TEST-DTE-13185095-K.key.pem"));
  EXPECT_TRUE(c.has_private_key());
  EXPECT_EQ(c.info().signer_rut, "13185095-K");
  // The other test key does not belong to this certificate.
  EXPECT_EQ(error_code([&] {
              Certificate::from_pem(cert_pem,
                                    read_file(kCerts / "TEST-DTE-WITH-ID-BUT-NO-RUT.key.pem"));
            }),
            "cert.key_mismatch");
}

TEST(Cert, Pkcs12RoundTripAndWrongPassword) {
  testkit::Pkcs12Bundle b = testkit::make_certificate(spec("76.192.083-9"), "s3cret");
  Certificate c = Certificate::from_pkcs12(b.p12, "s3cret");
  EXPECT_TRUE(c.has_private_key());
  EXPECT_EQ(c.info().signer_rut, "76192083-9");
  EXPECT_EQ(c.info().rut_source, "san:1.3.6.1.4.1.8321.1");
  EXPECT_EQ(c.info().common_name, "Firmante de Prueba");
  EXPECT_EQ(c.info().email, "firmante@example.cl");
  EXPECT_TRUE(c.valid_at());
  EXPECT_FALSE(c.rsa_modulus_base64().empty());
  EXPECT_EQ(c.rsa_exponent_base64(), "AQAB");
  EXPECT_EQ(error_code([&] { Certificate::from_pkcs12(b.p12, "wrong"); }), "cert.wrong_password");
  EXPECT_EQ(error_code([&] { Certificate::from_pkcs12("not a pkcs12", "x"); }), "cert.unreadable");
  // The same pair from PEM.
  Certificate p = Certificate::from_pem(b.cert_pem, b.key_pem);
  EXPECT_EQ(p.info().sha256_fingerprint, c.info().sha256_fingerprint);
  EXPECT_EQ(error_code([&] { Certificate::from_pem(b.cert_pem, "no key here"); }),
            "cert.no_private_key");
}

TEST(Cert, LegacyPkcs12RoundTrip) {
  testkit::CertSpec s = spec("12345678-5");
  s.legacy_pkcs12 = true;
  testkit::Pkcs12Bundle b = testkit::make_certificate(s, "clave");
  Certificate c = Certificate::from_pkcs12(b.p12, "clave");
  EXPECT_TRUE(c.has_private_key());
  EXPECT_EQ(c.info().signer_rut, "12345678-5");
  EXPECT_EQ(error_code([&] { Certificate::from_pkcs12(b.p12, "clav"); }), "cert.wrong_password");
}

TEST(Cert, RutFromSubjectSerialNumberOnly) {
  testkit::CertSpec s = spec("12345678-5");
  s.rut_in_san = false;
  Certificate c = Certificate::from_pkcs12(testkit::make_certificate(s, "x").p12, "x");
  EXPECT_EQ(c.info().signer_rut, "12345678-5");
  EXPECT_EQ(c.info().rut_source, "subject:serialNumber");
  s.rut_in_serial_number = false;
  Certificate none = Certificate::from_pkcs12(testkit::make_certificate(s, "x").p12, "x");
  EXPECT_EQ(none.info().signer_rut, "");
  EXPECT_EQ(none.info().rut_source, "");
}

TEST(Cert, ExpiredAndNotYetValid) {
  testkit::CertSpec s = spec("12345678-5");
  s.days_valid = -2;
  Certificate expired = Certificate::from_pkcs12(testkit::make_certificate(s, "x").p12, "x");
  EXPECT_EQ(error_code([&] { expired.check_valid_at(); }), "cert.expired");
  s.days_valid = 365;
  s.days_offset = 3;
  Certificate future = Certificate::from_pkcs12(testkit::make_certificate(s, "x").p12, "x");
  EXPECT_EQ(error_code([&] { future.check_valid_at(); }), "cert.not_yet_valid");
  EXPECT_FALSE(future.valid_at());
}

TEST(Cert, GeneratedCertificateShapeForOpenssl) {
  // The SAN otherName holds a UTF8String, as CAs (and CORD's recipe) issue it.
  testkit::Pkcs12Bundle b = testkit::make_certificate(spec("13185095-K"), "x");
  Certificate c = Certificate::from_pem(b.cert_pem, b.key_pem);
  // A wrong check digit in the CA's RUT field is reported as written (see CORD's test cert).
  EXPECT_EQ(c.info().signer_rut, "13185095-K");
  using Names = std::unique_ptr<GENERAL_NAMES, dte::CDeleter<GENERAL_NAMES_free>>;
  Names names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(c.x509(), NID_subject_alt_name, nullptr, nullptr)));
  ASSERT_TRUE(names);
  bool found = false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_OTHERNAME) continue;
    char oid[64];
    OBJ_obj2txt(oid, sizeof oid, gn->d.otherName->type_id, 1);
    EXPECT_STREQ(oid, "1.3.6.1.4.1.8321.1");
    EXPECT_EQ(gn->d.otherName->value->type, V_ASN1_UTF8STRING);
    found = true;
  }
  EXPECT_TRUE(found);
  if (std::system("openssl version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl CLI";
  auto path = std::filesystem::temp_directory_path() /
              ("dte-cert-" + std::to_string(::getpid()) + ".pem");
  std::ofstream(path) << b.cert_pem;
  std::string cmd = "openssl x509 -noout -text -in " + path.string() + " 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  std::filesystem::remove(path);
  EXPECT_NE(out.find("othername: 1.3.6.1.4.1.8321.1::13185095-K"), std::string::npos) << out;
  EXPECT_NE(out.find("serialNumber = 13185095-K"), std::string::npos) << out;
}
