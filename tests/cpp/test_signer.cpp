#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "dte/cert.hpp"
#include "dte/errors.hpp"
#include "dte/signer.hpp"
#include "dte/testkit.hpp"
#include "dte/verify.hpp"
#include "dte/xml.hpp"

using namespace dte;

namespace {

const Certificate& test_cert() {
  static const Certificate cert = [] {
    testkit::CertSpec spec;
    spec.rut = "12345678-5";
    return Certificate::from_pkcs12(testkit::make_certificate(spec, "pw").p12, "pw");
  }();
  return cert;
}

const char* kDte =
    "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n"
    "<DTE xmlns=\"http://www.sii.cl/SiiDte\" version=\"1.0\">"
    "<Documento ID=\"T33F1\"><Encabezado><IdDoc><TipoDTE>33</TipoDTE><Folio>1</Folio>"
    "</IdDoc></Encabezado><Detalle><NmbItem>Caf\xe9</NmbItem></Detalle>"
    "<TmstFirma>2025-01-01T10:00:00</TmstFirma></Documento></DTE>";

std::string signed_dte() {
  XmlDocPtr doc = parse_xml(kDte);
  register_ids(doc.get());
  append_signature(doc.get(), xmlDocGetRootElement(doc.get()), "T33F1", test_cert());
  return serialize(doc.get());
}

struct TempFile {
  std::filesystem::path path;
  explicit TempFile(const std::string& content, const std::string& ext = ".xml") {
    static int n = 0;
    path = std::filesystem::temp_directory_path() /
           ("dte-signer-" + std::to_string(::getpid()) + "-" + std::to_string(++n) + ext);
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

int run(const std::string& cmd, std::string* out = nullptr) {
  std::string text;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) text += buf;
  int rc = pclose(p);
  if (out) *out = text;
  return rc;
}

bool have_xmlsec1() { return run("xmlsec1 --version > /dev/null") == 0; }

}  // namespace

TEST(Signer, SiiProfileShape) {
  std::string xml = signed_dte();
  EXPECT_NE(xml.find("<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">"), std::string::npos);
  EXPECT_NE(xml.find("Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\""),
            std::string::npos);
  EXPECT_NE(xml.find("Algorithm=\"http://www.w3.org/2000/09/xmldsig#rsa-sha1\""), std::string::npos);
  EXPECT_NE(xml.find("Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\""), std::string::npos);
  EXPECT_NE(xml.find("<Reference URI=\"#T33F1\">"), std::string::npos);
  EXPECT_EQ(xml.find("<Transforms>"), std::string::npos);
  EXPECT_EQ(xml.find("ds:"), std::string::npos);
  EXPECT_EQ(xml.find('\r'), std::string::npos);
  auto kv = xml.find("<KeyValue>");
  auto x509 = xml.find("<X509Data>");
  ASSERT_NE(kv, std::string::npos);
  ASSERT_NE(x509, std::string::npos);
  EXPECT_LT(kv, x509);
  // Line breaks inside the base64 as in SII's own example (F60T33).
  EXPECT_NE(xml.find("<Exponent>\nAQAB\n</Exponent>"), std::string::npos);
  EXPECT_EQ(xml.find("PrivateExponent"), std::string::npos);
  EXPECT_NE(xml.find("<X509Certificate>"), std::string::npos);
  // The Signature is the last child of DTE.
  EXPECT_NE(xml.find("</Signature></DTE>"), std::string::npos);
}

TEST(Signer, VerifiesWithOurVerifier) {
  XmlDocPtr doc = parse_xml(signed_dte());
  register_ids(doc.get());
  xmlNode* sig = descendants(xmlDocGetRootElement(doc.get()), "Signature").at(0);
  std::string reason;
  xmlNode* target = nullptr;
  EXPECT_TRUE(verify_signature_node(doc.get(), sig, &reason, &target)) << reason;
  ASSERT_NE(target, nullptr);
  EXPECT_STREQ(reinterpret_cast<const char*>(target->name), "Documento");
}

TEST(Signer, VerifiesWithXmlsec1Cli) {
  if (!have_xmlsec1()) GTEST_SKIP() << "xmlsec1 CLI not installed";
  TempFile xml(signed_dte());
  TempFile pem(test_cert().x509() ? [] {
    std::string b64 = test_cert().cert_base64();
    return "-----BEGIN CERTIFICATE-----\n" + b64 + "\n-----END CERTIFICATE-----\n";
  }() : std::string(), ".pem");
  std::string out;
  EXPECT_EQ(run("xmlsec1 --verify --id-attr:ID Documento --pubkey-cert-pem " + pem.path.string() +
                    " " + xml.path.string(),
                &out),
            0)
      << out;
  EXPECT_EQ(run("xmlsec1 --verify --insecure --id-attr:ID Documento " +
                    xml.path.string(),
                &out),
            0)
      << out;
}

TEST(Signer, SeedIsEnvelopedAndVerifies) {
  std::string xml = sign_seed("012345678901", test_cert());
  EXPECT_EQ(xml.rfind("<?xml", 0), 0u);
  EXPECT_NE(xml.find("<getToken><item><Semilla>012345678901</Semilla></item><Signature"),
            std::string::npos);
  EXPECT_NE(xml.find("<Reference URI=\"\">"), std::string::npos);
  EXPECT_NE(xml.find("http://www.w3.org/2000/09/xmldsig#enveloped-signature"), std::string::npos);
  VerifyReport r = verify_document(xml, {});
  EXPECT_EQ(r.kind, "getToken");
  bool sig_ok = false;
  for (const Check& c : r.checks)
    if (c.name == "envelope.signature") sig_ok = c.status == CheckStatus::kPass;
  EXPECT_TRUE(sig_ok);
  if (have_xmlsec1()) {
    TempFile f(xml);
    std::string out;
    EXPECT_EQ(run("xmlsec1 --verify --insecure " + f.path.string(), &out), 0)
        << out;
  }
}

TEST(Signer, Errors) {
  XmlDocPtr doc = parse_xml(kDte);
  register_ids(doc.get());
  try {
    append_signature(doc.get(), xmlDocGetRootElement(doc.get()), "NOPE", test_cert());
    FAIL() << "signing an unknown ID must fail";
  } catch (const SignatureError& e) {
    EXPECT_EQ(e.code(), "sign.failed");
    EXPECT_NE(std::string(e.what()).find("NOPE"), std::string::npos);
  }
  // The failed attempt leaves no Signature behind.
  EXPECT_EQ(serialize(doc.get()).find("Signature"), std::string::npos);
  Certificate pub = Certificate::public_only(test_cert().cert_der());
  try {
    append_signature(doc.get(), xmlDocGetRootElement(doc.get()), "T33F1", pub);
    FAIL();
  } catch (const SignatureError& e) {
    EXPECT_EQ(e.code(), "sign.no_private_key");
  }
}

TEST(Signer, ThreadsSignConcurrently) {
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &ok] {
      for (int i = 0; i < 10; ++i) {
        XmlDocPtr doc = parse_xml(signed_dte());
        register_ids(doc.get());
        xmlNode* sig = descendants(xmlDocGetRootElement(doc.get()), "Signature").at(0);
        if (verify_signature_node(doc.get(), sig, nullptr)) ++ok[static_cast<std::size_t>(t)];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int n : ok) EXPECT_EQ(n, 10);
}
