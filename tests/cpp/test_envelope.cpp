#include <gtest/gtest.h>

#include <functional>

#include "dte/envelope.hpp"
#include "dte/errors.hpp"
#include "dte/pipeline.hpp"
#include "dte/verify.hpp"
#include "dte/xml.hpp"
#include "signing_material.hpp"

using namespace dte;
using namespace dte::test;

namespace {

std::string code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DteError& e) {
    return e.code();
  }
  return "no exception";
}

std::string sign(int type, long long folio) {
  SignOptions o;
  o.keyring = &keyring();
  return sign_document(example_input(type, folio), caf_for(type), cert(), o).xml;
}

// The DTE element's bytes as the envelope must carry them: everything after the declaration.
std::string element_bytes(const std::string& signed_dte) {
  auto start = signed_dte.find("<DTE");
  auto end = signed_dte.rfind("</DTE>");
  return signed_dte.substr(start, end + 6 - start);
}


void expect_valid_and_verified(const std::string& envelope, const char* kind,
                               const std::vector<std::string>& dtes) {
  EXPECT_EQ(envelope.rfind("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<", 0), 0u);
  for (const auto& d : dtes) {
    EXPECT_NE(envelope.find(element_bytes(d)), std::string::npos)
        << "a DTE was not carried byte for byte";
  }
  if (schemas()) {
    auto r = schemas()->validate_bytes(envelope);
    EXPECT_TRUE(r.valid) << issues_text(r) << envelope.substr(0, 2000);
    EXPECT_EQ(r.schema, std::string(kind) == "EnvioBOLETA" ? "EnvioBOLETA_v11.xsd" : "EnvioDTE_v10.xsd");
  }
  if (have_xmlsec1()) {
    // The envelope's own signature is the root's last child.
    auto r = xmlsec1_verify(envelope, "SetDTE", "/*/*[local-name()='Signature']");
    EXPECT_EQ(r.status, 0) << r.output;
  }
  VerifyOptions vo;
  vo.keyring = &keyring();
  vo.schemas = schemas();
  VerifyReport report = verify_document(envelope, vo);
  EXPECT_EQ(report.kind, kind);
  for (const auto& c : report.checks)
    EXPECT_NE(c.status, CheckStatus::kFail) << c.name << " " << c.subject << ": " << c.reason;
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.documents.size(), dtes.size());
}

}  // namespace

TEST(Envelope, EnvioDteOfSeveralTypesValidatesAndVerifies) {
  std::vector<std::string> dtes{sign(33, 11), sign(33, 12), sign(61, 13), sign(34, 14),
                                sign(110, 15)};
  std::string env = build_envelope(dtes, example_caratula(), cert(), false);
  expect_valid_and_verified(env, "EnvioDTE", dtes);
  EXPECT_NE(env.find("<SetDTE ID=\"SetDoc\">"), std::string::npos);
  EXPECT_NE(env.find("<RutEnvia>" + std::string(kSigner) + "</RutEnvia>"), std::string::npos);
  EXPECT_NE(env.find("<RutReceptor>60803000-K</RutReceptor>"), std::string::npos);
  EXPECT_NE(env.find("<SubTotDTE>\n<TpoDTE>33</TpoDTE>\n<NroDTE>2</NroDTE>\n</SubTotDTE>"),
            std::string::npos);
  EXPECT_NE(env.find("<TpoDTE>61</TpoDTE>\n<NroDTE>1</NroDTE>"), std::string::npos);
  EXPECT_NE(env.find("xsi:schemaLocation=\"http://www.sii.cl/SiiDte EnvioDTE_v10.xsd\""),
            std::string::npos);
}

TEST(Envelope, EnvioBoletaValidatesAndVerifies) {
  std::vector<std::string> dtes{sign(39, 21), sign(41, 22), sign(39, 23)};
  Caratula c = example_caratula();
  c.tmst_firma_env = now_timestamp();
  std::string env = build_envelope(dtes, c, cert(), true, "SetBoletas");
  expect_valid_and_verified(env, "EnvioBOLETA", dtes);
  EXPECT_NE(env.find("<TmstFirmaEnv>" + c.tmst_firma_env + "</TmstFirmaEnv>"), std::string::npos);
  EXPECT_NE(env.find("EnvioBOLETA_v11.xsd"), std::string::npos);
}

TEST(Envelope, CustomerCopyCarriesTheCustomerRut) {
  std::vector<std::string> dtes{sign(33, 31)};
  Caratula c = example_caratula();
  c.rut_receptor = "96874030-k";
  std::string env = build_envelope(dtes, c, cert(), false);
  EXPECT_NE(env.find("<RutReceptor>96874030-K</RutReceptor>"), std::string::npos);
  expect_valid_and_verified(env, "EnvioDTE", dtes);
}

TEST(Envelope, LimitsAndMismatchesAreSpecificErrors) {
  const std::string factura = sign(33, 41);
  const std::string boleta = sign(39, 42);
  EXPECT_EQ(code_of([&] { build_envelope({}, example_caratula(), cert(), false); }), "envelope.empty");
  EXPECT_EQ(code_of([&] { build_envelope({factura, boleta}, example_caratula(), cert(), false); }),
            "envelope.mixed");
  EXPECT_EQ(code_of([&] { build_envelope({boleta, factura}, example_caratula(), cert(), true); }),
            "envelope.mixed");
  Caratula other = example_caratula();
  other.rut_emisor = "96874030-K";
  EXPECT_EQ(code_of([&] { build_envelope({factura}, other, cert(), false); }), "envelope.issuer");
  EXPECT_EQ(code_of([&] { build_envelope({factura, factura}, example_caratula(), cert(), false); }),
            "envelope.duplicate");
  EXPECT_EQ(code_of([&] {
              build_envelope(std::vector<std::string>(501, boleta), example_caratula(), cert(), true);
            }),
            "envelope.too_many");
  EXPECT_EQ(code_of([&] {
              build_envelope(std::vector<std::string>(2001, factura), example_caratula(), cert(), false);
            }),
            "envelope.too_many");
  Caratula bad_date = example_caratula();
  bad_date.fch_resol = "22-08-2014";
  EXPECT_EQ(code_of([&] { build_envelope({factura}, bad_date, cert(), false); }),
            "envelope.caratula");
  EXPECT_EQ(code_of([&] { build_envelope({factura}, example_caratula(), cert(), false, "1bad id"); }),
            "envelope.caratula");
  // The certificate is checked at TmstFirmaEnv, as SII does.
  Caratula past = example_caratula();
  past.tmst_firma_env = "2020-03-10T10:00:00";
  EXPECT_EQ(code_of([&] { build_envelope({factura}, past, cert(), false); }), "cert.not_yet_valid");
  // An unsigned DTE (the document module's output before signing) cannot be sent.
  json j = json::parse(example_input(33, 43));
  auto unsigned_doc = build_document_xml(normalize(j));
  EXPECT_EQ(code_of([&] {
              build_envelope({serialize(unsigned_doc.get())}, example_caratula(), cert(), false);
            }),
            "envelope.unsigned");
  EXPECT_EQ(code_of([&] { build_envelope({"<DTE"}, example_caratula(), cert(), false); }),
            "xml.malformed");
}

TEST(Envelope, TooManyTypesForBoletas) {
  // Only two boleta types exist, so the boleta type limit cannot be crossed with valid boletas;
  // more than 20 types is likewise impossible with SII's 12 DTE types. Check the counting
  // instead: SubTotDTE lists each type once, in order.
  std::vector<std::string> dtes{sign(41, 51), sign(39, 52), sign(41, 53)};
  std::string env = build_envelope(dtes, example_caratula(), cert(), true);
  auto first = env.find("<TpoDTE>39</TpoDTE>\n<NroDTE>1</NroDTE>");
  auto second = env.find("<TpoDTE>41</TpoDTE>\n<NroDTE>2</NroDTE>");
  EXPECT_NE(first, std::string::npos);
  EXPECT_NE(second, std::string::npos);
  EXPECT_LT(first, second);
}

TEST(Envelope, UtfEightDteIsCarriedAsLatinOneAndStillVerifies) {
  // A DTE handed over as UTF-8 (e.g. read back from a UTF-8 database column) is re-encoded, not
  // re-signed: its canonical form and so its signature do not change.
  const std::string latin = sign(33, 61);
  auto doc = parse_xml(latin);
  const std::string utf8 = serialize(doc.get(), "UTF-8", false);
  std::string env = build_envelope({utf8}, example_caratula(), cert(), false);
  expect_valid_and_verified(env, "EnvioDTE", {latin});
  env = build_envelope({"\xEF\xBB\xBF" + utf8}, example_caratula(), cert(), false);
  expect_valid_and_verified(env, "EnvioDTE", {latin});
}
