// The direct text path of signing (cpp/src/sign_fast.cpp) must write exactly the bytes of the DOM
// path it replaces (detail::sign_via_dom: libxml2 tree, formatted serialisation, re-parse, xmlsec
// template). RSA PKCS#1 v1.5 is deterministic, so with a fixed timestamp both are reproducible:
// every case compares the two byte for byte, and bad input must fail the same way on both.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "../../cpp/src/document_internal.hpp"
#include "../../cpp/src/sign_fast.hpp"
#include "dte/errors.hpp"
#include "dte/pipeline.hpp"
#include "dte/verify.hpp"
#include "dte/xml.hpp"
#include "signing_material.hpp"

using namespace dte;
using namespace dte::test;

namespace {

const int kTypes[] = {33, 34, 39, 41, 43, 46, 52, 56, 61, 110, 111, 112};


struct Outcome {
  std::string error;  // "code: message", empty on success
  SignedDte dte;
};

Outcome attempt(const std::function<SignedDte()>& f) {
  Outcome o;
  try {
    o.dte = f();
  } catch (const DteError& e) {
    o.error = e.code() + ": " + e.what();
  }
  return o;
}

// The certificate's first signature goes through xmlsec, which is what teaches the fast paths
// its KeyInfo text: sign once through the DOM before comparing.
void warm_up(const Certificate& c) {
  const SignOptions o = fixed_sign_options();
  detail::sign_via_dom(normalize(parse_input(example_input(33, 1))), caf_for(33), c, o, "");
}

// Both paths on one input. `must_be_fast`: the direct path must not decline it.
void expect_same(const std::string& input, int type, const std::string& label,
                 bool must_be_fast = true, const SignOptions& o = fixed_sign_options(),
                 const std::string& doc_id = "") {
  SCOPED_TRACE(label);
  const Caf& caf = caf_for(type);
  Outcome dom = attempt([&] {  // sign_document's steps, through the DOM
    const json normalized = normalize(parse_input(input));
    detail::check_caf_fit_first(normalized, caf, o);
    return detail::sign_via_dom(normalized, caf, cert(), o, doc_id);
  });
  SignOptions with_id = o;
  with_id.doc_id = doc_id;
  Outcome pub = attempt([&] { return sign_document(input, caf, cert(), with_id); });
  EXPECT_EQ(dom.error, pub.error);
  if (!dom.error.empty()) {
    EXPECT_FALSE(must_be_fast) << "expected a signed document, got " << dom.error;
    return;
  }
  EXPECT_EQ(dom.dte.xml, pub.dte.xml);
  EXPECT_EQ(dom.dte.ted_xml, pub.dte.ted_xml);
  EXPECT_EQ(dom.dte.id, pub.dte.id);
  EXPECT_EQ(dom.dte.total, pub.dte.total);
  EXPECT_EQ(dom.dte.issuer_rut, pub.dte.issuer_rut);
  EXPECT_EQ(dom.dte.receiver_rut, pub.dte.receiver_rut);
  EXPECT_EQ(dom.dte.issue_date, pub.dte.issue_date);
  EXPECT_EQ(dom.dte.doc_type, pub.dte.doc_type);
  EXPECT_EQ(dom.dte.folio, pub.dte.folio);
  EXPECT_EQ(dom.dte.warnings.size(), pub.dte.warnings.size());
  const json normalized = normalize(parse_input(input));
  std::optional<SignedDte> fast = detail::sign_fast(
      normalized, caf, cert(), o.timestamp.empty() ? now_timestamp() : o.timestamp, doc_id);
  if (must_be_fast) {
    ASSERT_TRUE(fast.has_value()) << "the fast path declined";
  }
  if (fast && !o.timestamp.empty()) {
    EXPECT_EQ(fast->xml, dom.dte.xml);
    if (label == "empty required texts") {
      EXPECT_NE(fast->xml.find("<RznSocRecep/>"), std::string::npos);
      EXPECT_NE(fast->xml.find("<RSR/>"), std::string::npos);
    }
    if (fast->xml != dom.dte.xml) {
      std::size_t at = 0;
      while (at < fast->xml.size() && at < dom.dte.xml.size() && fast->xml[at] == dom.dte.xml[at])
        ++at;
      ADD_FAILURE() << "first difference at byte " << at << "\nDOM:  "
                    << dom.dte.xml.substr(at > 80 ? at - 80 : 0, 200) << "\nfast: "
                    << fast->xml.substr(at > 80 ? at - 80 : 0, 200);
    }
    EXPECT_EQ(fast->ted_xml, dom.dte.ted_xml);
  }
}

json example_json(int type, long long folio) { return json::parse(example_input(type, folio)); }

}  // namespace

class SignFastByType : public ::testing::TestWithParam<int> {};

TEST_P(SignFastByType, ExampleIsByteIdentical) {
  warm_up(cert());
  const int type = GetParam();
  const std::string input = example_input(type, 21);
  ASSERT_FALSE(input.empty());
  expect_same(input, type, "example " + std::to_string(type));
}

TEST_P(SignFastByType, EmptyAndZeroOptionalFields) {
  warm_up(cert());
  const int type = GetParam();
  json j = example_json(type, 22);
  // Empty optional texts and zero amounts are left out; the receiver's name empty too.
  json& enc = j["Encabezado"];
  if (enc.contains("Receptor")) {
    json& r = enc["Receptor"];
    if (r.contains("Contacto")) r["Contacto"] = "";
    if (r.contains("CorreoRecep")) r["CorreoRecep"] = nullptr;
    if (r.contains("CiudadRecep")) r["CiudadRecep"] = "   ";
  }
  if (enc["Emisor"].contains("Telefono")) enc["Emisor"]["Telefono"] = "";
  for (auto& line : j["Detalle"]) {
    line["DscItem"] = "";
    if (!line.contains("UnmdItem")) line["UnmdItem"] = "";
    if (!line.contains("DescuentoPct") && type != 43 && type < 110) line["DescuentoPct"] = 0;
  }
  expect_same(j.dump(), type, "empty fields " + std::to_string(type));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, SignFastByType, ::testing::ValuesIn(kTypes));

TEST(SignFast, EscapingAndLatin1EdgeCases) {
  warm_up(cert());
  const std::vector<std::string> texts = {
      "A & B <Ltda> \"quoted\" 'single'",
      "Ñandú Pérez Ü ü ß ç ¿¡ « » ° ± µ ÿ",
      "emoji 😀 euro € snowman ☃ kanji 漢字 kept out",
      "tab\there newline\nthere",
      "control \x01\x02\x1f chars and DEL \x7f",
      "  leading and trailing spaces  ",
      "]]> cdata end & &amp; already escaped &lt;",
      std::string(300, 'x') + " long text cut to the field's length",
      "ÁÉÍÓÚ" + std::string(100, 'n') + "ñ",
      "€€€€",
      "   ",
  };
  int n = 0;
  for (const auto& t : texts) {
    json j = example_json(33, 30 + n);
    j["Encabezado"]["Receptor"]["RznSocRecep"] = "R" + t;
    j["Encabezado"]["Receptor"]["GiroRecep"] = t + "g";
    j["Encabezado"]["Emisor"]["GiroEmis"] = "G" + t;
    j["Detalle"][0]["NmbItem"] = t + "i";
    j["Detalle"][1]["DscItem"] = t;
    j["Referencia"][0]["RazonRef"] = t;
    expect_same(j.dump(), 33, "text #" + std::to_string(n));
    ++n;
  }
  // Required texts that Latin-1 cannot hold at all: empty elements (<RznSocRecep/>, <RSR/>).
  json j = example_json(33, 45);
  j["Encabezado"]["Receptor"]["RznSocRecep"] = "😀";
  j["Encabezado"]["Emisor"]["GiroEmis"] = "€";
  j["Detalle"][0]["NmbItem"] = "☃";
  expect_same(j.dump(), 33, "empty required texts");
}

TEST(SignFast, ManyLinesDiscountsAndReferences) {
  warm_up(cert());
  json j = example_json(33, 40);
  json lines = json::array();
  for (int i = 0; i < 60; ++i) {
    json line = {{"NmbItem", "Producto número " + std::to_string(i) + " & cía"},
                 {"QtyItem", 1 + i % 7},
                 {"PrcItem", 1000 + 37 * i}};
    if (i % 3 == 0) line["DescuentoPct"] = 10;
    if (i % 5 == 0) line["IndExe"] = 1;
    if (i % 4 == 0) line["UnmdItem"] = "KG";
    if (i % 6 == 0) line["QtyItem"] = 2.5;
    if (i % 7 == 0) line["PrcItem"] = std::to_string(990 + i);  // numbers as text
    if (i % 8 == 0) line["QtyItem"] = 1.23456789;
    if (i % 9 == 0) line["PrcItem"] = 0.5 + i;
    lines.push_back(line);
  }
  j["Detalle"] = lines;
  j["DscRcgGlobal"] = json::array({{{"TpoMov", "D"}, {"GlosaDR", "Desc"}, {"TpoValor", "%"}, {"ValorDR", 3}},
                                   {{"TpoMov", "R"}, {"GlosaDR", "Flete"}, {"TpoValor", "$"}, {"ValorDR", 500}}});
  json refs = json::array();
  for (int i = 0; i < 5; ++i)
    refs.push_back({{"TpoDocRef", "801"}, {"FolioRef", "OC-" + std::to_string(i)},
                    {"FchRef", "2025-01-15"}, {"RazonRef", "Orden <" + std::to_string(i) + ">"}});
  j["Referencia"] = refs;
  expect_same(j.dump(), 33, "60 lines");
}

TEST(SignFast, FirstDetalleWithoutNameAndOddShapes) {
  warm_up(cert());
  json j = example_json(33, 41);
  j["Detalle"][0]["NmbItem"] = "";  // IT1 comes from the first Detalle only
  expect_same(j.dump(), 33, "first NmbItem empty", /*must_be_fast=*/false);
  j = example_json(33, 42);
  j["Encabezado"]["Receptor"].erase("RznSocRecep");
  expect_same(j.dump(), 33, "no RznSocRecep", /*must_be_fast=*/false);
}

TEST(SignFast, BadInputFailsTheSameWay) {
  warm_up(cert());
  std::vector<std::string> inputs;
  json j = example_json(33, 50);
  j["Encabezado"]["Receptor"]["Unknown"] = "x";
  inputs.push_back(j.dump());
  j = example_json(33, 51);
  j["Detalle"][0]["QtyItem"] = "many";
  inputs.push_back(j.dump());
  j = example_json(33, 52);
  j["Encabezado"]["IdDoc"]["Folio"] = 5000;  // outside the CAF
  inputs.push_back(j.dump());
  j = example_json(33, 53);
  j["Encabezado"]["Emisor"]["RUTEmisor"] = "11111111-1";
  inputs.push_back(j.dump());
  j = example_json(33, 54);
  j["Encabezado"]["Receptor"] = json::array({1, 2});
  inputs.push_back(j.dump());
  j = example_json(33, 55);
  j["Detalle"][0]["CdgItem"] = "text";
  inputs.push_back(j.dump());
  j = example_json(33, 56);
  j["TED"] = "x";
  inputs.push_back(j.dump());
  int n = 0;
  for (const auto& input : inputs) expect_same(input, 33, "bad #" + std::to_string(n++), false);
}

TEST(SignFast, UnusualIdsAndTimestampsFallBackToTheSameBytes) {
  warm_up(cert());
  const std::string input = example_input(33, 60);
  expect_same(input, 33, "custom id", true, fixed_sign_options(), "DOC_60.a-b");
  expect_same(input, 33, "id with an accent", false, fixed_sign_options(), "Dóc60");
  SignOptions o = fixed_sign_options();
  o.timestamp += ".5";
  expect_same(input, 33, "timestamp with fraction", false, o);
}

TEST(SignFast, UnseenCertificateGoesThroughXmlsecFirst) {
  const Certificate fresh = make_cert();
  const SignOptions o = fixed_sign_options();
  const json normalized = normalize(parse_input(example_input(33, 70)));
  EXPECT_FALSE(detail::sign_fast(normalized, caf_for(33), fresh, o.timestamp, "").has_value());
  SignedDte first = sign_document(example_input(33, 70), caf_for(33), fresh, o);
  std::optional<SignedDte> fast = detail::sign_fast(normalized, caf_for(33), fresh, o.timestamp, "");
  ASSERT_TRUE(fast.has_value());
  EXPECT_EQ(fast->xml, first.xml);
}

TEST(SignFast, OutputVerifiesWithXmlsec1AndOurVerifier) {
  warm_up(cert());
  const SignOptions o = fixed_sign_options();
  VerifyOptions vo;
  vo.keyring = &keyring();
  for (int type : {33, 43, 52, 110}) {
    const json normalized = normalize(parse_input(example_input(type, 80)));
    std::optional<SignedDte> fast = detail::sign_fast(normalized, caf_for(type), cert(), o.timestamp, "");
    ASSERT_TRUE(fast.has_value());
    VerifyReport r = verify_document(fast->xml, vo);
    EXPECT_TRUE(r.ok()) << "type " << type;
    if (have_xmlsec1()) {
      auto x = xmlsec1_verify(fast->xml, "Documento Liquidacion Exportaciones",
                              "/*/*[local-name()='Signature']");
      EXPECT_EQ(x.status, 0) << x.output;
    }
  }
}

TEST(SignFast, BatchSigningUsesTheSameBytes) {
  warm_up(cert());
  const SignOptions o = fixed_sign_options();
  std::vector<std::string> inputs;
  for (int i = 0; i < 8; ++i) inputs.push_back(example_input(33, 90 + i));
  const std::vector<const Caf*> cafs{&caf_for(33)};
  auto out = sign_many(inputs, cafs, cert(), o, 2);
  ASSERT_EQ(out.size(), inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(out[i].ok) << out[i].error_code;
    SignedDte dom = detail::sign_via_dom(normalize(parse_input(inputs[i])), caf_for(33), cert(), o, "");
    EXPECT_EQ(out[i].dte.xml, dom.xml);
  }
}

// The fast walk finds each input key by merging the key list with the schema's element list,
// which gives the DOM walk's order only if no group names one element twice.
TEST(SignFast, SchemaGroupsNameEachElementOnce) {
  std::function<void(const detail::Node&)> check = [&](const detail::Node& n) {
    std::set<std::string> names;
    for (const auto& c : n.children) {
      EXPECT_TRUE(names.insert(c.name).second) << c.name << " twice in " << n.name;
      check(c);
    }
  };
  for (int type : kTypes) check(detail::schema_for(type));
}
