#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/errors.hpp"
#include "dte/schema.hpp"
#include "dte/signer.hpp"
#include "dte/testkit.hpp"
#include "dte/verify.hpp"
#include "dte/xml.hpp"

using namespace dte;

namespace {

const std::filesystem::path kShared = DTE_SHARED_DIR;
const std::filesystem::path kSamples = kShared / "samples";

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

#define REQUIRE_SAMPLES()                                                          \
  if (!std::filesystem::exists(kSamples))                                          \
  GTEST_SKIP() << "shared samples not found at " << kSamples << " (read-only kit)"

// The first check with this name (and subject, when given); fails the test when absent.
const Check& find(const VerifyReport& r, const std::string& name, const std::string& subject = {}) {
  for (const Check& c : r.checks)
    if (c.name == name && (subject.empty() || c.subject == subject)) return c;
  static Check missing{"(missing)", "", CheckStatus::kSkip, ""};
  ADD_FAILURE() << "no check '" << name << "' [" << subject << "]";
  return missing;
}

std::string dump(const VerifyReport& r) {
  std::string out = "kind " + r.kind + "\n";
  for (const Check& c : r.checks)
    out += "  " + c.name + " [" + c.subject + "] " + to_string(c.status) + " " + c.reason + "\n";
  return out;
}

VerifyReport verify_file(const std::string& name, const VerifyOptions& options = {}) {
  return verify_document(read_file(kSamples / name), options);
}

bool passed_or_skipped(const Check& c) { return c.status != CheckStatus::kFail; }

const Certificate& test_cert() {
  static const Certificate cert = [] {
    testkit::CertSpec spec;
    spec.rut = "12345678-5";
    return Certificate::from_pkcs12(testkit::make_certificate(spec, "pw").p12, "pw");
  }();
  return cert;
}

std::string dte_text(const std::string& id, const std::string& monto) {
  return "<DTE xmlns=\"http://www.sii.cl/SiiDte\" version=\"1.0\"><Documento ID=\"" + id +
         "\"><Encabezado><IdDoc><TipoDTE>33</TipoDTE><Folio>7</Folio>"
         "<FchEmis>2025-01-02</FchEmis></IdDoc><Emisor><RUTEmisor>76192083-9</RUTEmisor>"
         "</Emisor><Receptor><RUTRecep>60803000-K</RUTRecep></Receptor><Totales><MntTotal>" +
         monto + "</MntTotal></Totales></Encabezado><TmstFirma>" + now_timestamp() +
         "</TmstFirma></Documento></DTE>";
}

// A DTE signed standalone, as text without XML declaration (what an envelope embeds).
std::string signed_dte(const std::string& id = "T33F7") {
  XmlDocPtr doc = parse_xml(dte_text(id, "1190"));
  register_ids(doc.get());
  append_signature(doc.get(), xmlDocGetRootElement(doc.get()), id, test_cert());
  std::string xml = serialize(doc.get(), "UTF-8");
  return xml.substr(xml.find("?>") + 3);
}

void replace_once(std::string& s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  ASSERT_NE(pos, std::string::npos) << from;
  s.replace(pos, from.size(), to);
}

}  // namespace

// MANIFEST "Checks 1b": which form of each real DTE verifies.
TEST(Verify, RealDtesRawVersusCleaned) {
  REQUIRE_SAMPLES();
  struct Case {
    const char* file;
    bool signature_ok;
  };
  const Case cases[] = {
      {"DTE--60910000-1--33--2336600.xml", true},
      {"DTE--60910000-1--33--2336600--cleaned.xml", false},
      {"DTE--76354771-K--33--170.xml", false},
      {"DTE--76354771-K--33--170--cleaned.xml", true},
      {"DTE--76399752-9--33--25568.xml", false},
      {"DTE--76399752-9--33--25568--cleaned.xml", true},
      {"DTE--96670340-7--61--110616.xml", true},
      {"DTE--96670340-7--61--110616--cleaned.xml", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    VerifyReport r = verify_file(c.file);
    EXPECT_EQ(r.kind, "DTE");
    const Check& sig = find(r, "dte.signature");
    EXPECT_EQ(sig.status, c.signature_ok ? CheckStatus::kPass : CheckStatus::kFail) << dump(r);
    if (!c.signature_ok) {
      EXPECT_NE(sig.reason.find("digest"), std::string::npos) << sig.reason;
    }
    EXPECT_EQ(find(r, "dte.signature_target").status, CheckStatus::kPass);
    EXPECT_EQ(find(r, "cert.key_match").status, CheckStatus::kPass);
    // Every signer certificate has expired by now, but was valid at TmstFirma.
    EXPECT_EQ(find(r, "cert.validity").status, CheckStatus::kPass) << dump(r);
    EXPECT_TRUE(passed_or_skipped(find(r, "ted.frmt"))) << dump(r);
    ASSERT_EQ(r.documents.size(), 1u);
    EXPECT_EQ(r.documents[0].ok, c.signature_ok);
  }
  VerifyReport r = verify_file("DTE--76354771-K--33--170--cleaned.xml");
  const VerifiedDocument& d = r.documents.at(0);
  EXPECT_EQ(d.doc_type, 33);
  EXPECT_EQ(d.folio, 170);
  EXPECT_EQ(d.issuer_rut, "76354771-K");
  EXPECT_EQ(d.total, 2996301);
  EXPECT_EQ(d.signed_at, "2019-04-01T01:36:40");
  EXPECT_FALSE(d.id.empty());
  EXPECT_TRUE(r.ok()) << dump(r);
}

TEST(Verify, OfficialEnvioDteExample) {
  REQUIRE_SAMPLES();
  VerifyOptions options;
  SiiKeyring keyring;
  try {
    keyring.add_pem(100, read_file(kShared / "certs" / "sii-caf-idk100.cer"));
    options.keyring = &keyring;
  } catch (const DteError&) {
    // The CAF module may not be there yet; the TED checks then skip.
  }
  VerifyReport r = verify_file("F60T33-ejemplo-oficial-SII.xml", options);
  EXPECT_EQ(r.kind, "EnvioDTE");
  const Check& env = find(r, "envelope.signature", "SetDoc");
  EXPECT_EQ(env.status, CheckStatus::kPass) << dump(r);
  EXPECT_EQ(env.reason, "verified in place");
  // The DTE was signed standalone without a namespace, then embedded in a namespaced envelope.
  const Check& dte = find(r, "dte.signature", "T33F60");
  EXPECT_EQ(dte.status, CheckStatus::kPass) << dump(r);
  EXPECT_NE(dte.reason.find("without any namespace"), std::string::npos) << dte.reason;
  EXPECT_EQ(find(r, "dte.signature_target", "T33F60").status, CheckStatus::kPass);
  EXPECT_EQ(find(r, "envelope.subtotals").status, CheckStatus::kPass);
  // SII's own example carries an RSAKeyValue that is not the key of its X509Certificate
  // (checked independently with python-cryptography): the check must say so.
  EXPECT_EQ(find(r, "cert.key_match", "SetDoc").status, CheckStatus::kFail);
  EXPECT_EQ(find(r, "cert.validity", "T33F60").status, CheckStatus::kPass);
  EXPECT_TRUE(passed_or_skipped(find(r, "ted.frmt", "T33F60"))) << dump(r);
  EXPECT_TRUE(passed_or_skipped(find(r, "ted.caf", "T33F60"))) << dump(r);
  ASSERT_EQ(r.documents.size(), 1u);
  EXPECT_EQ(r.documents[0].folio, 60);
  EXPECT_EQ(r.documents[0].issuer_rut, "97975000-5");
}

TEST(Verify, RealAecsAllSignaturesSomewhere) {
  REQUIRE_SAMPLES();
  for (const char* file :
       {"AEC--76354771-K--33--170--SEQ-2.xml", "AEC--76399752-9--33--25568--SEQ-1.xml"}) {
    SCOPED_TRACE(file);
    VerifyReport r = verify_file(file);
    EXPECT_EQ(r.kind, "AEC");
    const Check& env = find(r, "envelope.signature");
    EXPECT_EQ(env.status, CheckStatus::kPass);
    EXPECT_EQ(env.reason, "verified in place");
    const Check& dte = find(r, "dte.signature");
    EXPECT_EQ(dte.status, CheckStatus::kPass) << dump(r);
    EXPECT_NE(dte.reason.find("standalone"), std::string::npos);
    EXPECT_EQ(find(r, "dtecedido.signature").status, CheckStatus::kPass) << dump(r);
    for (const Check& c : r.checks) {
      if (c.name.find("signature") != std::string::npos) {
        EXPECT_EQ(c.status, CheckStatus::kPass) << c.name << " " << c.subject << " " << c.reason;
      }
    }
  }
}

TEST(Verify, BrokenSamplesFailTheRightCheck) {
  REQUIRE_SAMPLES();
  const std::string base = "broken/DTE--76354771-K--33--170--cleaned-mod-";
  {
    VerifyReport r = verify_file(base + "changed-monto.xml");
    const Check& c = find(r, "dte.signature");
    EXPECT_EQ(c.status, CheckStatus::kFail);
    EXPECT_NE(c.reason.find("digest"), std::string::npos) << c.reason;
    EXPECT_FALSE(r.ok());
  }
  {
    VerifyReport r = verify_file(base + "replaced-cert.xml");
    const Check& c = find(r, "dte.signature");
    EXPECT_EQ(c.status, CheckStatus::kFail);
    EXPECT_NE(c.reason.find("RSA"), std::string::npos) << c.reason;
  }
  for (const char* which : {"bad-cert.xml", "bad-cert-no-base64.xml"}) {
    SCOPED_TRACE(which);
    VerifyReport r = verify_file(base + which);
    // The RSA signature verifies with RSAKeyValue, as xmlsec1 says; the certificate is broken.
    EXPECT_EQ(find(r, "dte.signature").status, CheckStatus::kPass) << dump(r);
    EXPECT_EQ(find(r, "cert.key_match").status, CheckStatus::kFail) << dump(r);
    EXPECT_FALSE(r.ok());
    EXPECT_FALSE(r.documents.at(0).ok);
  }
  {
    VerifyReport r = verify_file(base + "removed-signature.xml");
    EXPECT_EQ(find(r, "dte.signature").status, CheckStatus::kFail);
  }
  {
    VerifyReport r = verify_file(base + "empty-emails.xml");
    EXPECT_EQ(find(r, "dte.signature").status, CheckStatus::kFail);
  }
}

TEST(Verify, SignatureNodeRequiresKeyMatch) {
  REQUIRE_SAMPLES();
  XmlDocPtr doc = parse_xml(read_file(kSamples / "broken/DTE--76354771-K--33--170--cleaned-mod-bad-cert.xml"));
  register_ids(doc.get());
  xmlNode* sig = descendants(xmlDocGetRootElement(doc.get()), "Signature").at(0);
  std::string reason;
  EXPECT_FALSE(verify_signature_node(doc.get(), sig, &reason));
  EXPECT_NE(reason.find("X509Certificate"), std::string::npos) << reason;

  XmlDocPtr good = parse_xml(read_file(kSamples / "DTE--76354771-K--33--170--cleaned.xml"));
  register_ids(good.get());
  sig = descendants(xmlDocGetRootElement(good.get()), "Signature").at(0);
  xmlNode* target = nullptr;
  EXPECT_TRUE(verify_signature_node(good.get(), sig, &reason, &target)) << reason;
  ASSERT_NE(target, nullptr);
  EXPECT_STREQ(reinterpret_cast<const char*>(target->name), "Documento");
}

TEST(Verify, UnusableInputIsAFailedXmlCheck) {
  for (std::string bad : {std::string("not xml at all"), std::string(),
                          std::string("<!DOCTYPE x [<!ENTITY e \"boom\">]><x>&e;</x>"),
                          std::string("<DTE><Documento></DTE>")}) {
    VerifyReport r;
    EXPECT_NO_THROW(r = verify_document(bad, {}));
    EXPECT_FALSE(r.ok());
    ASSERT_FALSE(r.checks.empty());
    EXPECT_EQ(r.checks[0].name, "xml");
    EXPECT_EQ(r.checks[0].status, CheckStatus::kFail);
  }
}

TEST(Verify, RoundTripAndTampering) {
  std::string xml = signed_dte();
  VerifyReport r = verify_document(xml, {});
  EXPECT_EQ(find(r, "dte.signature", "T33F7").status, CheckStatus::kPass) << dump(r);
  EXPECT_EQ(find(r, "dte.signature_target").status, CheckStatus::kPass);
  EXPECT_EQ(find(r, "cert.key_match").status, CheckStatus::kPass);
  EXPECT_EQ(find(r, "cert.validity").status, CheckStatus::kPass) << dump(r);
  ASSERT_EQ(r.documents.size(), 1u);
  EXPECT_EQ(r.documents[0].total, 1190);
  EXPECT_EQ(r.documents[0].receiver_rut, "60803000-K");

  std::string tampered = xml;
  replace_once(tampered, "<MntTotal>1190<", "<MntTotal>1<");
  VerifyReport t = verify_document(tampered, {});
  const Check& c = find(t, "dte.signature");
  EXPECT_EQ(c.status, CheckStatus::kFail);
  EXPECT_NE(c.reason.find("digest"), std::string::npos);
  EXPECT_FALSE(t.ok());
}

TEST(Verify, EnvelopeWithEmbeddedDte) {
  // The DTE is signed standalone and embedded as text; the envelope adds xmlns:xsi, which
  // changes the DTE's inclusive C14N in place, so it verifies standalone as SII does.
  std::string env =
      "<EnvioDTE xmlns=\"http://www.sii.cl/SiiDte\" "
      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" version=\"1.0\">"
      "<SetDTE ID=\"SetDoc\"><Caratula version=\"1.0\"><RutEmisor>76192083-9</RutEmisor>"
      "<TmstFirmaEnv>" + now_timestamp() + "</TmstFirmaEnv><SubTotDTE><TpoDTE>33</TpoDTE>"
      "<NroDTE>1</NroDTE></SubTotDTE></Caratula>" + signed_dte() + "</SetDTE></EnvioDTE>";
  XmlDocPtr doc = parse_xml(env);
  register_ids(doc.get());
  append_signature(doc.get(), xmlDocGetRootElement(doc.get()), "SetDoc", test_cert());
  VerifyReport r = verify_document(serialize(doc.get()), {});
  EXPECT_EQ(find(r, "envelope.signature", "SetDoc").status, CheckStatus::kPass) << dump(r);
  const Check& dte = find(r, "dte.signature", "T33F7");
  EXPECT_EQ(dte.status, CheckStatus::kPass) << dump(r);
  EXPECT_NE(dte.reason.find("standalone"), std::string::npos) << dte.reason;
  EXPECT_EQ(find(r, "envelope.subtotals").status, CheckStatus::kPass);
  EXPECT_EQ(find(r, "cert.validity", "SetDoc").status, CheckStatus::kPass) << dump(r);
}

TEST(Verify, SignatureWrappingIsRefused) {
  std::string xml = signed_dte("T33F7");
  // 1. An attacker Documento with the same ID next to the signed one (moved into an Object).
  {
    std::string evil = xml;
    auto start = evil.find("<Documento");
    auto end = evil.find("</Documento>") + std::string("</Documento>").size();
    std::string original = evil.substr(start, end - start);
    std::string attacker = original;
    replace_once(attacker, "<MntTotal>1190<", "<MntTotal>999999<");
    evil.replace(start, end - start, attacker);
    replace_once(evil, "</Signature>",
                 "<Object>" + original + "</Object></Signature>");
    VerifyReport r = verify_document(evil, {});
    const Check& c = find(r, "dte.signature_target");
    EXPECT_EQ(c.status, CheckStatus::kFail) << dump(r);
    EXPECT_NE(c.reason.find("wrapping"), std::string::npos) << c.reason;
    EXPECT_FALSE(r.ok());
  }
  // 2. The same with a fresh ID on the attacker's Documento: the signature still verifies
  //    over the moved original, but it no longer covers this DTE's Documento.
  {
    std::string evil = xml;
    auto start = evil.find("<Documento");
    auto end = evil.find("</Documento>") + std::string("</Documento>").size();
    std::string original = evil.substr(start, end - start);
    std::string attacker = original;
    replace_once(attacker, "ID=\"T33F7\"", "ID=\"EVIL\"");
    replace_once(attacker, "<MntTotal>1190<", "<MntTotal>999999<");
    evil.replace(start, end - start, attacker);
    replace_once(evil, "</Signature>", "<Object>" + original + "</Object></Signature>");
    VerifyReport r = verify_document(evil, {});
    const Check& c = find(r, "dte.signature_target");
    EXPECT_EQ(c.status, CheckStatus::kFail) << dump(r);
    EXPECT_NE(c.reason.find("wrapping"), std::string::npos) << c.reason;
    EXPECT_FALSE(r.ok());
    EXPECT_FALSE(r.documents.at(0).ok);
  }
}

TEST(Verify, SchemaCheckWhenSchemasGiven) {
  REQUIRE_SAMPLES();
  const char* dir = std::getenv("DTE_XSD_DIR");
  std::string xsd = dir ? dir : (kShared / "xsd").string();
  if (!std::filesystem::exists(std::filesystem::path(xsd) / "DTE_v10.xsd"))
    GTEST_SKIP() << "SII XSDs not found";
  std::shared_ptr<SchemaSet> schemas;
  try {
    schemas = SchemaSet::shared(xsd);
  } catch (const DteError& e) {
    GTEST_SKIP() << "schema module unavailable: " << e.what();
  }
  VerifyOptions options;
  options.schemas = schemas.get();
  VerifyReport r = verify_file("DTE--76354771-K--33--170--cleaned.xml", options);
  EXPECT_TRUE(passed_or_skipped(find(r, "schema"))) << dump(r);
  VerifyReport bad = verify_file("broken/DTE--76354771-K--33--170--cleaned-mod-empty-emails.xml",
                                 options);
  const Check& s = find(bad, "schema");
  if (s.status != CheckStatus::kSkip) {
    EXPECT_EQ(s.status, CheckStatus::kFail) << dump(bad);
  }
}
