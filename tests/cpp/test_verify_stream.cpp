// The streaming verifier (cpp/src/verify_stream.cpp) against the DOM verifier: for every input,
// the report verify_document gives (streaming allowed) must be exactly the DOM verifier's
// (streaming off), check for check and document for document; and for the common shapes the
// streaming pass must really be the one answering.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "../../cpp/src/verify_internal.hpp"
#include "dte/envelope.hpp"
#include "dte/pipeline.hpp"
#include "dte/verify.hpp"
#include "signing_material.hpp"

using namespace dte;
using namespace dte::test;

namespace {

std::string dump(const VerifyReport& r) {
  std::string out = "kind " + r.kind + "\n";
  for (const Check& c : r.checks)
    out += "  " + c.name + " [" + c.subject + "] " + to_string(c.status) + " " + c.reason + "\n";
  for (const VerifiedDocument& d : r.documents)
    out += "  doc " + d.id + " " + std::to_string(d.doc_type) + " " + std::to_string(d.folio) +
           " " + d.issuer_rut + " " + d.receiver_rut + " " + d.issue_date + " " +
           std::to_string(d.total) + " " + d.signed_at + (d.ok ? " ok" : " not-ok") + "\n";
  return out;
}

VerifyOptions options(bool streaming, bool with_keyring = true) {
  VerifyOptions o;
  o.keyring = with_keyring ? &keyring() : nullptr;
  o.streaming = streaming;
  return o;
}

// The same report both ways, without schemas and (when the XSDs are at hand) with them; returns
// whether the streaming pass answered in every case.
bool same_report(const std::string& bytes, const std::string& what, bool with_keyring = true) {
  bool answered = true;
  for (const SchemaSet* set : {static_cast<const SchemaSet*>(nullptr), schemas()}) {
    VerifyOptions dom_options = options(false, with_keyring);
    VerifyOptions stream_options = options(true, with_keyring);
    dom_options.schemas = stream_options.schemas = set;
    const VerifyReport dom = verify_document(bytes, dom_options);
    const VerifyReport either = verify_document(bytes, stream_options);
    EXPECT_EQ(dump(dom), dump(either)) << what << (set ? " (with schemas)" : "");
    VerifyReport streamed;
    answered = detail::stream_verify(bytes, stream_options, &streamed) && answered;
    if (!have_xsds()) break;
  }
  return answered;
}


std::string sign(int type, long long folio) {
  return sign_document(example_input(type, folio), caf_for(type), cert(), fixed_sign_options()).xml;
}


constexpr int kTypes[] = {33, 34, 39, 41, 43, 46, 52, 56, 61, 110, 111, 112};

// Every way a signed document is edited below, each applied where its text is found.
struct Edit {
  const char* name;
  std::function<bool(std::string&)> apply;
};

bool replace_first(std::string& s, const std::string& from, const std::string& to) {
  auto at = s.find(from);
  if (at == std::string::npos) return false;
  s.replace(at, from.size(), to);
  return true;
}

std::vector<Edit> edits() {
  return {
      {"amount changed", [](std::string& s) { return replace_first(s, "<MntTotal>", "<MntTotal>1"); }},
      {"folio in DD changed", [](std::string& s) { return replace_first(s, "<F>", "<F>9"); }},
      {"comment in Documento",
       [](std::string& s) { return replace_first(s, "<Encabezado>", "<Encabezado><!-- c -->"); }},
      {"processing instruction",
       [](std::string& s) { return replace_first(s, "<Encabezado>", "<Encabezado><?pi x?>"); }},
      {"CDATA text",
       [](std::string& s) { return replace_first(s, "<FchEmis>", "<FchEmis><![CDATA[]]>"); }},
      {"entity in text",
       [](std::string& s) { return replace_first(s, "<RznSoc>", "<RznSoc>A &amp; B &#60; "); }},
      {"character reference CR",
       [](std::string& s) { return replace_first(s, "<RznSoc>", "<RznSoc>&#13;"); }},
      {"attribute with entity",
       [](std::string& s) { return replace_first(s, "<Encabezado>", "<Encabezado a=\"x&amp;y&#9;&quot;\">"); }},
      {"prefixed namespace on Documento",
       [](std::string& s) { return replace_first(s, "<Documento ", "<Documento xmlns:x=\"urn:x\" "); }},
      {"redundant default namespace on Documento",
       [](std::string& s) {
         return replace_first(s, "<Documento ", "<Documento xmlns=\"http://www.sii.cl/SiiDte\" ");
       }},
      {"ds prefix",
       [](std::string& s) {
         return replace_first(s, "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">",
                              "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">") &&
                replace_first(s, "</Signature>", "</ds:Signature>");
       }},
      {"duplicate ID",
       [](std::string& s) { return replace_first(s, "<Encabezado>", "<Encabezado ID=\"SetDoc\">"); }},
      {"second Documento",
       [](std::string& s) {
         auto at = s.find("<Signature");
         return at != std::string::npos && (s.insert(at, "<Documento ID=\"X\"/>"), true);
       }},
      {"DTE nested inside",
       [](std::string& s) { return replace_first(s, "<Encabezado>", "<Encabezado><DTE/>"); }},
      {"reference to another ID",
       [](std::string& s) { return replace_first(s, "URI=\"#", "URI=\"#X"); }},
      {"signature value changed",
       [](std::string& s) {
         auto at = s.find("<SignatureValue>");
         if (at == std::string::npos) return false;
         char& c = s[at + 20];
         c = c == 'A' ? 'B' : 'A';
         return true;
       }},
      {"TED without FRMT",
       [](std::string& s) {
         auto a = s.find("<FRMT");
         auto b = s.find("</FRMT>");
         return a != std::string::npos && b != std::string::npos && (s.erase(a, b + 7 - a), true);
       }},
      {"no TmstFirma", [](std::string& s) { return replace_first(s, "<TmstFirma>", "<TmstFirmaX>") &&
                                                   replace_first(s, "</TmstFirma>", "</TmstFirmaX>"); }},
      {"Caratula count changed",
       [](std::string& s) { return replace_first(s, "<NroDTE>", "<NroDTE>1"); }},
      {"second RUTRecep",
       [](std::string& s) {
         return replace_first(s, "</RUTRecep>", "</RUTRecep><RUTRecep>1-9</RUTRecep>");
       }},
      {"truncated", [](std::string& s) { s.resize(s.size() / 2); return true; }},
      {"doctype",
       [](std::string& s) {
         auto at = s.find("?>");
         return at != std::string::npos && (s.insert(at + 2, "<!DOCTYPE x [<!ENTITY e \"v\">]>"), true);
       }},
  };
}

}  // namespace

TEST(VerifyStream, EveryTypeAloneAndInEnvelopesAnswersLikeTheDom) {
  std::vector<std::string> dtes, boletas;
  long long folio = 40;
  for (int type : kTypes) {
    std::string xml = sign(type, ++folio);
    // A lone boleta with schemas goes to the DOM verifier (validated in a synthesised envelope).
    const bool boleta_with_xsds = (type == 39 || type == 41) && have_xsds();
    EXPECT_TRUE(same_report(xml, "DTE " + std::to_string(type)) || boleta_with_xsds) << type;
    EXPECT_TRUE(same_report(xml, "DTE without keyring", false) || boleta_with_xsds) << type;
    (type == 39 || type == 41 ? boletas : dtes).push_back(xml);
  }
  std::string envio = build_envelope(dtes, example_caratula(), cert(), false);
  EXPECT_TRUE(same_report(envio, "EnvioDTE"));
  Caratula c = example_caratula();
  std::string envio_boleta = build_envelope(boletas, c, cert(), true, "SetBoletas");
  EXPECT_TRUE(same_report(envio_boleta, "EnvioBOLETA"));
  // The certificate's validity is checked at TmstFirma(Env) by both.
  VerifyOptions no_validity = options(true);
  no_validity.check_cert_validity = false;
  VerifyOptions no_validity_dom = no_validity;
  no_validity_dom.streaming = false;
  EXPECT_EQ(dump(verify_document(envio, no_validity_dom)), dump(verify_document(envio, no_validity)));
}

TEST(VerifyStream, EditedDocumentsGetTheDomReport) {
  std::vector<std::string> inputs{sign(33, 61), sign(61, 62), sign(110, 63)};
  inputs.push_back(build_envelope({sign(33, 64), sign(56, 65)}, example_caratula(), cert(), false));
  for (const std::string& original : inputs) {
    for (const Edit& e : edits()) {
      std::string edited = original;
      if (!e.apply(edited)) continue;
      same_report(edited, e.name);
    }
  }
}

TEST(VerifyStream, ExpiredCertificateAndOtherSignerStillMatch) {
  const Certificate old = make_cert(10, -400);  // expired long before TmstFirma
  SignOptions o = fixed_sign_options();
  o.check_certificate_validity = false;
  std::string xml = sign_document(example_input(33, 71), caf_for(33), old, o).xml;
  EXPECT_TRUE(same_report(xml, "expired signer"));  // cert.validity fails, signatures verify
  const VerifyReport r = verify_document(xml, options(true));
  bool validity_failed = false;
  for (const Check& c : r.checks)
    if (c.name == "cert.validity" && c.status == CheckStatus::kFail) validity_failed = true;
  EXPECT_TRUE(validity_failed) << dump(r);
}

TEST(VerifyStream, SharedSamplesGetTheDomReport) {
  const std::filesystem::path samples = std::filesystem::path(DTE_SHARED_DIR) / "samples";
  if (!std::filesystem::exists(samples)) GTEST_SKIP() << "shared samples not found at " << samples;
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(samples)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".xml") continue;
    ++files;
    same_report(read_file(entry.path()), entry.path().string());
  }
  EXPECT_GT(files, 10);
}

// Reception reads its facts from the same pass: they must be what the DOM gives (the Caratula's
// texts, the envelope's DigestValue, each DTE as serialize_node writes it).
TEST(VerifyStream, EnvelopeFactsAreWhatTheDomReads) {
  std::vector<std::string> dtes{sign(33, 81), sign(61, 82), sign(110, 83), sign(52, 84)};
  for (bool edited : {false, true}) {
    std::string envio = build_envelope(dtes, example_caratula(), cert(), false);
    if (edited) {
      // Text the serialiser escapes or keeps (entities, a CR, Latin-1), outside signed parts.
      replace_first(envio, "<RutEnvia>", "<!-- x --><RutEnvia>");
    }
    detail::EnvelopeFacts facts;
    VerifyReport report;
    ASSERT_TRUE(detail::stream_verify(envio, options(true), &report, &facts));
    EXPECT_EQ(facts.complete, true);
    XmlDocPtr doc = parse_xml(envio);
    xmlNode* root = xmlDocGetRootElement(doc.get());
    xmlNode* set = child(root, "SetDTE");
    xmlNode* car = child(set, "Caratula");
    EXPECT_EQ(facts.set_id, "SetDoc");
    EXPECT_EQ(facts.rut_emisor, text_at(car, "RutEmisor"));
    EXPECT_EQ(facts.rut_envia, text_at(car, "RutEnvia"));
    EXPECT_EQ(facts.rut_receptor, text_at(car, "RutReceptor"));
    EXPECT_EQ(facts.tmst_firma_env, text_at(car, "TmstFirmaEnv"));
    EXPECT_EQ(facts.digest, text_at(child(root, "Signature"), "SignedInfo/Reference/DigestValue"));
    std::vector<xmlNode*> nodes = children(set, "DTE");
    ASSERT_EQ(facts.dte_xml.size(), nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i)
      EXPECT_EQ(facts.dte_xml[i], serialize_node(nodes[i])) << i;
  }
  // Inside a DTE, a comment (kept by the serialiser) leaves the facts to the DOM.
  std::string with_comment = build_envelope(dtes, example_caratula(), cert(), false);
  replace_first(with_comment, "<Encabezado>", "<Encabezado><!-- c -->");
  detail::EnvelopeFacts facts;
  VerifyReport report;
  if (detail::stream_verify(with_comment, options(true), &report, &facts)) {
    EXPECT_FALSE(facts.complete);
  }
}

// Text with every character the two writers treat specially, in a DTE's signed content.
TEST(VerifyStream, SerialisedDteWithSpecialText) {
  json input = json::parse(example_input(33, 91));
  input["Encabezado"]["Receptor"]["RznSocRecep"] = "A & B <C> \"D\" 'E' Ñandú";
  SignedDte s = sign_document(input.dump(), caf_for(33), cert(), fixed_sign_options());
  std::string envio = build_envelope({s.xml}, example_caratula(), cert(), false);
  detail::EnvelopeFacts facts;
  VerifyReport report;
  ASSERT_TRUE(detail::stream_verify(envio, options(true), &report, &facts)) << dump(verify_document(envio, options(false)));
  ASSERT_TRUE(facts.complete);
  XmlDocPtr doc = parse_xml(envio);
  xmlNode* set = child(xmlDocGetRootElement(doc.get()), "SetDTE");
  EXPECT_EQ(facts.dte_xml.at(0), serialize_node(children(set, "DTE").at(0)));
  EXPECT_TRUE(same_report(envio, "special text"));
}
