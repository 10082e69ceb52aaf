// Document model: normalisation (amounts and totals), rules, and XML in XSD order.
#include <gtest/gtest.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "dte/document.hpp"
#include "dte/errors.hpp"
#include "dte/xml.hpp"
#include "../../cpp/src/document_internal.hpp"

namespace fs = std::filesystem;
using dte::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path examples_dir() { return fs::path(DTE_SOURCE_DIR) / "dte_native" / "examples"; }
fs::path libredte_dir() {
  return fs::path(DTE_SHARED_DIR) / "sets" / "libredte-json-examples";
}

json base_invoice(int tipo) {
  json j = json::parse(R"({
    "Encabezado": {
      "IdDoc": {"TipoDTE": 33, "Folio": 10, "FchEmis": "2024-05-10"},
      "Emisor": {"RUTEmisor": "76543210-3", "RznSoc": "Emisor SpA", "GiroEmis": "Comercio",
                 "Acteco": 463020, "DirOrigen": "Calle 1", "CmnaOrigen": "Santiago"},
      "Receptor": {"RUTRecep": "77123456-9", "RznSocRecep": "Cliente Ltda", "GiroRecep": "Comercio",
                   "DirRecep": "Calle 2", "CmnaRecep": "Ñuñoa"}
    },
    "Detalle": []
  })");
  j["Encabezado"]["IdDoc"]["TipoDTE"] = tipo;
  return j;
}

dte::RuleContext at(const char* today) {
  dte::RuleContext c;
  c.today = today;
  return c;
}

const json& totals(const json& doc) { return doc.at("Encabezado").at("Totales"); }
long long amount(const json& doc, const char* key) {
  return totals(doc).contains(key) ? totals(doc)[key].get<long long>() : -1;
}

bool has_code(const std::vector<dte::Finding>& f, const std::string& code) {
  for (const auto& x : f)
    if (x.code == code) return true;
  return false;
}
std::string codes(const std::vector<dte::Finding>& f) {
  std::string s;
  for (const auto& x : f) s += std::string(dte::to_string(x.severity)) + ":" + x.code + "@" + x.field + " ";
  return s;
}
std::vector<dte::Finding> errors_only(const std::vector<dte::Finding>& f) {
  std::vector<dte::Finding> out;
  for (const auto& x : f)
    if (x.severity == dte::Finding::Severity::kError) out.push_back(x);
  return out;
}

}  // namespace

// ---------------------------------------------------------------- normalize: LibreDTE's set

TEST(DocumentNormalize, LibreDteExamplesReproduceExpectedTotals) {
  const fs::path dir = libredte_dir();
  if (!fs::exists(dir / "montos_esperados.json"))
    GTEST_SKIP() << "LibreDTE JSON examples not found in " << dir;
  const json expected = json::parse(slurp(dir / "montos_esperados.json"));
  int checked = 0;
  for (auto it = expected.begin(); it != expected.end(); ++it) {
    SCOPED_TRACE(it.key());
    const json doc = dte::normalize(json::parse(slurp(dir / (it.key() + ".json"))));
    const json& t = totals(doc);
    for (auto want = it->begin(); want != it->end(); ++want) {
      if (want.key() == "ImptoReten") {
        ASSERT_TRUE(t.contains("ImptoReten"));
        const json& imp = t["ImptoReten"][0];
        EXPECT_EQ(std::stoi(imp["TipoImp"].get<std::string>()), (*want)["TipoImp"].get<int>());
        EXPECT_DOUBLE_EQ(imp["TasaImp"].get<double>(), (*want)["TasaImp"].get<double>());
        EXPECT_EQ(imp["MontoImp"].get<long long>(), (*want)["MontoImp"].get<long long>());
      } else {
        ASSERT_TRUE(t.contains(want.key())) << want.key();
        EXPECT_DOUBLE_EQ(t[want.key()].get<double>(), want->get<double>()) << want.key();
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

// ---------------------------------------------------------------- normalize: hand-computed

TEST(DocumentNormalize, IvaRoundsHalfUp) {
  json in = base_invoice(33);
  in["Detalle"] = json::array({{{"NmbItem", "A"}, {"QtyItem", 1}, {"PrcItem", 1350}}});
  json d = dte::normalize(in);
  EXPECT_EQ(amount(d, "MntNeto"), 1350);
  EXPECT_EQ(amount(d, "IVA"), 257);  // 256.5 -> 257, banker's rounding would give 256
  EXPECT_EQ(amount(d, "MntTotal"), 1607);
  EXPECT_EQ(totals(d)["TasaIVA"].get<int>(), 19);
  EXPECT_EQ(d["Detalle"][0]["NroLinDet"].get<int>(), 1);
  EXPECT_EQ(d["Detalle"][0]["MontoItem"].get<long long>(), 1350);
}

TEST(DocumentNormalize, LineDiscountsAndSurcharges) {
  json in = base_invoice(33);
  in["Detalle"] = json::parse(R"([
    {"NmbItem": "pct", "QtyItem": 3, "PrcItem": 1001, "DescuentoPct": 12.5},
    {"NmbItem": "monto", "QtyItem": "2.5", "PrcItem": "333", "DescuentoMonto": 100},
    {"NmbItem": "recargo", "QtyItem": 1, "PrcItem": 1000, "RecargoPct": 7.5},
    {"NmbItem": "recargo $", "QtyItem": 2, "PrcItem": 500, "RecargoMonto": 45}
  ])");
  json d = dte::normalize(in);
  // 3003 - round(375.375)=375 -> 2628; round(832.5)=833 - 100 = 733; 1000 + 75 = 1075; 1045
  EXPECT_EQ(d["Detalle"][0]["DescuentoMonto"].get<long long>(), 375);
  EXPECT_EQ(d["Detalle"][0]["MontoItem"].get<long long>(), 2628);
  EXPECT_EQ(d["Detalle"][1]["MontoItem"].get<long long>(), 733);
  EXPECT_EQ(d["Detalle"][2]["RecargoMonto"].get<long long>(), 75);
  EXPECT_EQ(d["Detalle"][2]["MontoItem"].get<long long>(), 1075);
  EXPECT_EQ(d["Detalle"][3]["MontoItem"].get<long long>(), 1045);
  EXPECT_EQ(amount(d, "MntNeto"), 5481);
  EXPECT_EQ(amount(d, "IVA"), 1041);  // 1041.39
  EXPECT_EQ(amount(d, "MntTotal"), 6522);
  EXPECT_TRUE(errors_only(dte::check_rules(d, at("2024-06-01"))).empty())
      << codes(dte::check_rules(d, at("2024-06-01")));
}

TEST(DocumentNormalize, ExemptLinesAndGlobalDiscounts) {
  json in = base_invoice(33);
  in["Detalle"] = json::parse(R"([
    {"NmbItem": "afecto", "QtyItem": 10, "PrcItem": 1000},
    {"NmbItem": "exento", "IndExe": 1, "QtyItem": 1, "PrcItem": 5000},
    {"NmbItem": "no facturable", "IndExe": 2, "QtyItem": 1, "PrcItem": 700}
  ])");
  in["DscRcgGlobal"] = json::parse(R"([
    {"TpoMov": "D", "TpoValor": "%", "ValorDR": 10},
    {"TpoMov": "R", "TpoValor": "$", "ValorDR": 250},
    {"TpoMov": "D", "TpoValor": "$", "ValorDR": 1000, "IndExeDR": 1}
  ])");
  json d = dte::normalize(in);
  EXPECT_EQ(amount(d, "MntNeto"), 10000 - 1000 + 250);
  EXPECT_EQ(amount(d, "MntExe"), 4000);
  EXPECT_EQ(amount(d, "IVA"), 1758);  // 9250 * 0.19 = 1757.5 -> 1758
  EXPECT_EQ(amount(d, "MntTotal"), 9250 + 4000 + 1758);
  EXPECT_EQ(d["DscRcgGlobal"][2]["NroLinDR"].get<int>(), 3);
}

TEST(DocumentNormalize, ExemptInvoice34HasNoVat) {
  json in = base_invoice(34);
  in["Detalle"] = json::parse(R"([{"NmbItem": "Asesoría", "QtyItem": 3, "PrcItem": 33333}])");
  json d = dte::normalize(in);
  EXPECT_EQ(amount(d, "MntExe"), 99999);
  EXPECT_EQ(amount(d, "MntTotal"), 99999);
  EXPECT_FALSE(totals(d).contains("IVA"));
  EXPECT_FALSE(totals(d).contains("MntNeto"));
}

TEST(DocumentNormalize, BoletaPricesAreGross) {
  json in = json::parse(R"({"Encabezado": {"IdDoc": {"TipoDTE": 39, "Folio": 5},
    "Emisor": {"RUTEmisor": "76543210-3", "RznSoc": "Tienda", "GiroEmis": "Venta", "Acteco": 471990,
               "DirOrigen": "Calle 1", "CmnaOrigen": "Santiago"}},
    "Detalle": [{"NmbItem": "X", "QtyItem": 3, "PrcItem": 999}, {"NmbItem": "Y", "IndExe": 1, "PrcItem": 500}]})");
  json d = dte::normalize(in);
  // gross 2997 -> neto round(2518.49) = 2518, IVA 479
  EXPECT_EQ(amount(d, "MntNeto"), 2518);
  EXPECT_EQ(amount(d, "IVA"), 479);
  EXPECT_EQ(amount(d, "MntExe"), 500);
  EXPECT_EQ(amount(d, "MntTotal"), 3497);
  EXPECT_EQ(d["Encabezado"]["Receptor"]["RUTRecep"], "66666666-6");
  EXPECT_EQ(d["Encabezado"]["IdDoc"]["IndServicio"], 3);
  EXPECT_EQ(d["Encabezado"]["Emisor"]["RznSocEmisor"], "Tienda");  // invoice names accepted
  EXPECT_FALSE(d["Encabezado"]["Emisor"].contains("Acteco"));
  // Net prices on request.
  in["Encabezado"]["IdDoc"]["IndMntNeto"] = 2;
  d = dte::normalize(in);
  EXPECT_EQ(amount(d, "MntNeto"), 2997);
  EXPECT_EQ(amount(d, "IVA"), 569);  // 569.43
  EXPECT_EQ(amount(d, "MntTotal"), 2997 + 569 + 500);
}

TEST(DocumentNormalize, BoletaExempt41) {
  json in = json::parse(R"({"Encabezado": {"IdDoc": {"TipoDTE": 41, "Folio": 5},
    "Emisor": {"RUTEmisor": "76543210-3", "RznSocEmisor": "T", "GiroEmisor": "V"}},
    "Detalle": {"NmbItem": "Libro", "PrcItem": 12990}})");
  json d = dte::normalize(in);
  EXPECT_TRUE(d["Detalle"].is_array());
  EXPECT_EQ(amount(d, "MntExe"), 12990);
  EXPECT_EQ(amount(d, "MntTotal"), 12990);
  EXPECT_FALSE(totals(d).contains("IVA"));
}

TEST(DocumentNormalize, AdditionalTaxesAndRetentions) {
  json in = base_invoice(33);
  in["Detalle"] = json::parse(R"([
    {"NmbItem": "Vino", "QtyItem": 10, "PrcItem": 3000, "CodImpAdic": 25},
    {"NmbItem": "Bebida", "QtyItem": 10, "PrcItem": 1000, "CodImpAdic": 271},
    {"NmbItem": "Pan", "QtyItem": 1, "PrcItem": 1000}
  ])");
  json d = dte::normalize(in);
  const json& imp = totals(d)["ImptoReten"];
  ASSERT_EQ(imp.size(), 2u);
  EXPECT_EQ(imp[0]["TipoImp"], "25");
  EXPECT_EQ(imp[0]["MontoImp"].get<long long>(), 6150);  // 30000 * 20.5%
  EXPECT_EQ(imp[1]["TipoImp"], "271");
  EXPECT_EQ(imp[1]["MontoImp"].get<long long>(), 1800);
  EXPECT_EQ(amount(d, "MntNeto"), 41000);
  EXPECT_EQ(amount(d, "IVA"), 7790);
  EXPECT_EQ(amount(d, "MntTotal"), 41000 + 7790 + 6150 + 1800);

  json compra = base_invoice(46);
  compra["Detalle"] = json::parse(R"([{"NmbItem": "Trigo", "QtyItem": 1000, "PrcItem": 250, "CodImpAdic": 34}])");
  d = dte::normalize(compra);
  EXPECT_EQ(amount(d, "IVA"), 47500);
  EXPECT_EQ(totals(d)["ImptoReten"][0]["MontoImp"].get<long long>(), 10000);  // 4%
  EXPECT_EQ(amount(d, "IVANoRet"), 37500);
  EXPECT_EQ(amount(d, "MntTotal"), 250000 + 47500 - 10000);
}

TEST(DocumentNormalize, StatedAmountsAreKeptAndChecked) {
  json in = base_invoice(33);
  in["Detalle"] = json::parse(R"([{"NmbItem": "A", "QtyItem": 1, "PrcItem": 1000}])");
  in["Encabezado"]["Totales"] = {{"MntNeto", 1000}, {"IVA", 190}, {"MntTotal", 1200}};
  json d = dte::normalize(in);
  EXPECT_EQ(amount(d, "MntTotal"), 1200);
  auto f = dte::check_rules(d, at("2024-06-01"));
  EXPECT_TRUE(has_code(f, "totals.mnt_total_mismatch")) << codes(f);
}

TEST(DocumentNormalize, ExportInForeignCurrency) {
  json in = base_invoice(110);
  in["Encabezado"]["Receptor"] = {{"RUTRecep", "55555555-5"}, {"RznSocRecep", "ACME Inc"},
                                  {"Extranjero", {{"Nacionalidad", "225"}}}};
  in["Encabezado"]["Totales"] = {{"TpoMoneda", "DOLAR USA"}};
  in["Encabezado"]["OtraMoneda"] = {{"TpoMoneda", "PESO CL"}, {"TpoCambio", 950.5}};
  in["Detalle"] = json::parse(R"([{"NmbItem": "Vino", "QtyItem": 3, "PrcItem": 12.345},
                                   {"NmbItem": "Pisco", "QtyItem": 2, "PrcItem": 10.1}])");
  json d = dte::normalize(in);
  EXPECT_DOUBLE_EQ(d["Detalle"][0]["MontoItem"].get<double>(), 37.04);  // 37.035 -> 37.04
  EXPECT_DOUBLE_EQ(totals(d)["MntExe"].get<double>(), 57.24);
  EXPECT_DOUBLE_EQ(totals(d)["MntTotal"].get<double>(), 57.24);
  EXPECT_EQ(d["Encabezado"]["OtraMoneda"]["MntTotOtrMnda"].get<long long>(), 54407);  // 54406.62
  EXPECT_FALSE(totals(d).contains("IVA"));
}

TEST(DocumentNormalize, NotesAndGuias) {
  json nc = base_invoice(61);
  nc["Detalle"] = json::parse(R"([{"NmbItem": "Corrige giro", "DscItem": "Donde dice A debe decir B"}])");
  nc["Referencia"] = json::parse(R"({"TpoDocRef": 33, "FolioRef": 7, "FchRef": "2024-05-01", "CodRef": 2, "RazonRef": "Corrige giro"})");
  json d = dte::normalize(nc);
  EXPECT_EQ(amount(d, "MntTotal"), 0);
  EXPECT_EQ(d["Referencia"][0]["TpoDocRef"], "33");
  EXPECT_EQ(d["Referencia"][0]["NroLinRef"], 1);
  auto f = dte::check_rules(d, at("2024-06-01"));
  EXPECT_TRUE(errors_only(f).empty()) << codes(f);

  json guia = base_invoice(52);
  guia["Encabezado"]["IdDoc"]["IndTraslado"] = 5;
  guia["Detalle"] = json::parse(R"([{"NmbItem": "Impresora", "QtyItem": 1}])");
  d = dte::normalize(guia);
  EXPECT_EQ(amount(d, "MntTotal"), 0);
  EXPECT_FALSE(totals(d).contains("IVA"));
}

TEST(DocumentNormalize, DefaultsAndShapes) {
  json in = base_invoice(33);
  in["Encabezado"]["IdDoc"].erase("FchEmis");
  in["Encabezado"]["IdDoc"]["FchVenc"] = "2050-01-01";
  in["Detalle"] = json::parse(R"({"NmbItem": "A", "QtyItem": "2", "PrcItem": "10.5"})");
  json d = dte::normalize(in);
  EXPECT_EQ(d["Encabezado"]["IdDoc"]["FchEmis"], dte::today_date());
  EXPECT_EQ(d["Encabezado"]["IdDoc"]["FmaPago"], 2);
  EXPECT_TRUE(d["Encabezado"]["Emisor"]["Acteco"].is_array());
  EXPECT_EQ(d["Detalle"][0]["QtyItem"], 2);
  EXPECT_EQ(d["Detalle"][0]["MontoItem"], 21);
}

TEST(DocumentNormalize, WrongInputThrowsByCause) {
  json in = base_invoice(33);
  in["Detalle"] = json::parse(R"([{"NmbItem": "A", "QtyItem": 1, "PrcItm": 10}])");
  try {
    dte::normalize(in);
    FAIL();
  } catch (const dte::DocumentError& e) {
    EXPECT_EQ(e.code(), "input.unknown_field");
    EXPECT_NE(std::string(e.what()).find("Detalle[0].PrcItm"), std::string::npos) << e.what();
  }
  in["Detalle"] = json::parse(R"([{"NmbItem": "A", "QtyItem": "dos", "PrcItem": 10}])");
  try {
    dte::normalize(in);
    FAIL();
  } catch (const dte::DocumentError& e) {
    EXPECT_EQ(e.code(), "input.type");
  }
  in = base_invoice(35);
  try {
    dte::normalize(in);
    FAIL();
  } catch (const dte::DocumentError& e) {
    EXPECT_EQ(e.code(), "input.unsupported_type");
  }
  EXPECT_THROW(dte::parse_input("{\"a\": "), dte::DocumentError);
}

// A key given twice keeps its first place and its last value, on both reading paths (the direct
// reader; json's own parser, which a \u escape sends the text to), in time near linear in the
// number of keys: 200 000 keys, every tenth of them given again later, would take minutes at
// one walk over the members per key.
TEST(DocumentNormalize, ManyKeysAndRepeatedKeysReadInNearLinearTime) {
  constexpr int kKeys = 200000;
  for (bool fallback : {false, true}) {
    std::string text = "{";
    for (int i = 0; i < kKeys; ++i) text += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
    for (int i = 0; i < kKeys; i += 10) text += "\"k" + std::to_string(i) + "\":\"again\",";
    text += fallback ? "\"\\u0041\":{\"k0\":1,\"k0\":[2]}}" : "\"A\":{\"k0\":1,\"k0\":[2]}}";
    const dte::json doc = dte::parse_input(text);
    ASSERT_TRUE(doc.is_object());
    const auto& members = doc.get_ref<const dte::json::object_t&>();
    ASSERT_EQ(members.size(), static_cast<std::size_t>(kKeys) + 1) << fallback;
    for (int i = 0; i < kKeys; i += 997) {
      const auto& m = *(members.begin() + i);
      EXPECT_EQ(m.first, "k" + std::to_string(i));
      if (i % 10 == 0)
        EXPECT_EQ(m.second, "again") << i;
      else
        EXPECT_EQ(m.second, i) << i;
    }
    EXPECT_EQ((members.begin() + kKeys)->first, "A");
    EXPECT_EQ(doc.at("A"), dte::json::parse(R"({"k0":[2]})")) << fallback;
    EXPECT_EQ(doc.at("k199990"), "again");
    EXPECT_EQ(doc.at("k199999"), 199999);
  }
  // The same document as json::parse on a few mixed shapes, both paths.
  for (const char* text :
       {R"({"a":1,"b":2,"a":3})", R"({"a":{"x":1},"b":[1,{"y":2,"y":3}],"a":{"z":4}})",
        R"({"\u0061":1,"b":2,"a":3,"b":{"c":1,"c":2}})", R"([{"a":1,"a":2},{"\u0062":1,"b":2}])"}) {
    EXPECT_EQ(dte::parse_input(text).dump(), dte::json::parse(text).dump()) << text;
  }
}

// round_half_up: half away from zero with the 1e-7 tolerance, the range check at 9e18.
TEST(DocumentNormalize, RoundHalfUpEdges) {
  using dte::detail::round_half_up;
  EXPECT_EQ(round_half_up(0.5L), 1);
  EXPECT_EQ(round_half_up(-0.5L), -1);
  EXPECT_EQ(round_half_up(0.4999998L), 0);
  EXPECT_EQ(round_half_up(0.4999999L), 1);  // within the tolerance
  EXPECT_EQ(round_half_up(-2.4999998L), -2);
  EXPECT_EQ(round_half_up(-2.4999999L), -3);
  EXPECT_EQ(round_half_up(1071.0L / 1.19L), 900);
  EXPECT_EQ(round_half_up(0x1p53L - 1), (1LL << 53) - 1);
  EXPECT_EQ(round_half_up(0x1p53L + 2), (1LL << 53) + 2);
  EXPECT_EQ(round_half_up(-0x1p60L), -(1LL << 60));
  EXPECT_EQ(round_half_up(8.9e18L), 8900000000000000000LL);
  EXPECT_EQ(round_half_up(-0.0L), 0);
  EXPECT_THROW(round_half_up(9e18L), dte::DocumentError);
  EXPECT_THROW(round_half_up(-9e18L), dte::DocumentError);
  EXPECT_THROW(round_half_up(std::numeric_limits<long double>::quiet_NaN()), dte::DocumentError);
  EXPECT_THROW(round_half_up(std::numeric_limits<long double>::infinity()), dte::DocumentError);
}

// ---------------------------------------------------------------- rules

TEST(DocumentRules, ExamplesHaveNoErrors) {
  for (int tipo : dte::kSupportedTypes) {
    SCOPED_TRACE(tipo);
    const fs::path p = examples_dir() / (std::to_string(tipo) + ".json");
    ASSERT_TRUE(fs::exists(p)) << p;
    json d = dte::normalize(dte::parse_input(slurp(p)));
    auto f = dte::check_rules(d);
    EXPECT_TRUE(errors_only(f).empty()) << codes(f);
  }
}

TEST(DocumentRules, FindsWhatSiiRejects) {
  const dte::RuleContext ctx = at("2024-06-01");
  json in = base_invoice(33);
  in["Detalle"] = json::parse(R"([{"NmbItem": "A", "QtyItem": 2, "PrcItem": 100, "MontoItem": 250}])");
  in["Encabezado"]["IdDoc"]["FchEmis"] = "2024-06-02";
  in["Encabezado"]["Receptor"]["RUTRecep"] = "66666666-6";
  in["Encabezado"]["Emisor"]["RUTEmisor"] = "76543210-4";
  in["Encabezado"]["Emisor"].erase("GiroEmis");
  in["Encabezado"]["Receptor"]["GiroRecep"] = "Un giro de más de cuarenta caracteres de largo total";
  in["Encabezado"]["Receptor"]["DirRecep"] = "Calle \xe2\x98\x83 1";
  json d = dte::normalize(in);
  auto f = dte::check_rules(d, ctx);
  EXPECT_TRUE(has_code(f, "date.future")) << codes(f);
  EXPECT_TRUE(has_code(f, "receiver.generic_rut")) << codes(f);
  EXPECT_TRUE(has_code(f, "rut.invalid")) << codes(f);
  EXPECT_TRUE(has_code(f, "field.required")) << codes(f);
  EXPECT_TRUE(has_code(f, "line.monto_mismatch")) << codes(f);
  EXPECT_TRUE(has_code(f, "text.truncated")) << codes(f);
  EXPECT_TRUE(has_code(f, "text.not_latin1")) << codes(f);

  json nc = base_invoice(61);
  nc["Detalle"] = json::parse(R"([{"NmbItem": "A", "QtyItem": 1, "PrcItem": 100}])");
  d = dte::normalize(nc);
  f = dte::check_rules(d, ctx);
  EXPECT_TRUE(has_code(f, "reference.required")) << codes(f);
  nc["Referencia"] = json::parse(R"([{"TpoDocRef": "33", "FolioRef": "1", "FchRef": "2024-01-01", "CodRef": 2},
                                     {"TpoDocRef": "33", "FolioRef": "2", "FchRef": "2024-01-01", "CodRef": 3}])");
  d = dte::normalize(nc);
  f = dte::check_rules(d, ctx);
  EXPECT_TRUE(has_code(f, "reference.single")) << codes(f);
  EXPECT_TRUE(has_code(f, "reference.text_correction_amounts")) << codes(f);

  json guia = base_invoice(52);
  guia["Detalle"] = json::parse(R"([{"NmbItem": "A", "QtyItem": 1, "PrcItem": 100}])");
  f = dte::check_rules(dte::normalize(guia), ctx);
  EXPECT_TRUE(has_code(f, "guia.ind_traslado")) << codes(f);

  json many = base_invoice(33);
  for (int i = 0; i < 61; ++i) many["Detalle"].push_back({{"NmbItem", "x"}, {"PrcItem", 1}});
  f = dte::check_rules(dte::normalize(many), ctx);
  EXPECT_TRUE(has_code(f, "lines.count")) << codes(f);

  json ok = base_invoice(33);
  ok["Detalle"] = json::parse(R"([{"NmbItem": "A", "QtyItem": 1, "PrcItem": 100}])");
  d = dte::normalize(ok);
  dte::RuleContext caf = at("2024-06-01");
  caf.caf_folio_from = 20;
  caf.caf_folio_to = 30;
  caf.caf_doc_type = 34;
  caf.caf_issuer_rut = "77123456-9";
  caf.caf_expires_on = "2024-05-01";
  f = dte::check_rules(d, caf);
  EXPECT_TRUE(has_code(f, "caf.folio_out_of_range")) << codes(f);
  EXPECT_TRUE(has_code(f, "caf.wrong_type")) << codes(f);
  EXPECT_TRUE(has_code(f, "caf.wrong_rut")) << codes(f);
  EXPECT_TRUE(has_code(f, "caf.expired")) << codes(f);
  EXPECT_TRUE(errors_only(dte::check_rules(d, ctx)).empty()) << codes(dte::check_rules(d, ctx));

  json bad_type = base_invoice(30);
  f = dte::check_rules(bad_type, ctx);
  EXPECT_TRUE(has_code(f, "type.unsupported")) << codes(f);
}

// ---------------------------------------------------------------- XML

namespace {

std::string dummy_ted(int tipo) {
  const std::string td = std::to_string(tipo);
  return "<TED version=\"1.0\"><DD><RE>76543210-3</RE><TD>" + td + "</TD><F>1</F><FE>2024-01-01</FE>"
    "<RR>77123456-9</RR><RSR>X</RSR><MNT>1</MNT><IT1>X</IT1><CAF version=\"1.0\"><DA>"
    "<RE>76543210-3</RE><RS>X</RS><TD>" + td + "</TD><RNG><D>1</D><H>10</H></RNG><FA>2024-01-01</FA>"
    "<RSAPK><M>AAAA</M><E>Aw==</E></RSAPK><IDK>100</IDK></DA><FRMA algoritmo=\"SHA1withRSA\">AAAA</FRMA>"
    "</CAF><TSTED>2024-01-01T10:00:00</TSTED></DD><FRMT algoritmo=\"SHA1withRSA\">AAAA</FRMT></TED>"
    "<TmstFirma>2024-01-01T10:00:00</TmstFirma>";
}
const char* kDummySignature =
    "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><SignedInfo>"
    "<CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\"/>"
    "<SignatureMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#rsa-sha1\"/>"
    "<Reference URI=\"#X\"><DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"/>"
    "<DigestValue>AAAA</DigestValue></Reference></SignedInfo><SignatureValue>AAAA</SignatureValue>"
    "<KeyInfo><KeyValue><RSAKeyValue><Modulus>AAAA</Modulus><Exponent>AQAB</Exponent></RSAKeyValue>"
    "</KeyValue><X509Data><X509Certificate>AAAA</X509Certificate></X509Data></KeyInfo></Signature>";

// Serialises the built DTE and splices in what the other modules add (TED, TmstFirma,
// Signature), so that the schema can judge our part.
std::string completed(xmlDoc* doc, int tipo) {
  std::string xml = dte::serialize(doc, "UTF-8");
  auto decl_end = xml.find("?>");
  if (decl_end != std::string::npos) xml = xml.substr(decl_end + 2);
  for (const char* closing : {"</Documento>", "</Exportaciones>", "</Liquidacion>"}) {
    auto pos = xml.find(closing);
    if (pos != std::string::npos) {
      xml.insert(pos, dummy_ted(tipo));
      break;
    }
  }
  xml.insert(xml.rfind("</DTE>"), kDummySignature);
  return xml;
}

struct Validator {
  dte::XmlSchemaPtr schema;
  explicit Validator(const std::string& path) {
    dte::XmlSchemaParserCtxtPtr pc(xmlSchemaNewParserCtxt(path.c_str()));
    schema.reset(xmlSchemaParse(pc.get()));
  }
  std::string validate(const std::string& xml) const {
    dte::XmlDocPtr doc = dte::parse_xml(xml);
    dte::XmlSchemaValidCtxtPtr vc(xmlSchemaNewValidCtxt(schema.get()));
    std::string errors;
    xmlSchemaSetValidStructuredErrors(
        vc.get(),
        [](void* ctx, xmlErrorPtr err) {
          auto* out = static_cast<std::string*>(ctx);
          *out += std::string(err->message ? err->message : "?");
        },
        &errors);
    int rc = xmlSchemaValidateDoc(vc.get(), doc.get());
    if (rc != 0 && errors.empty()) errors = "invalid (rc " + std::to_string(rc) + ")";
    return errors;
  }
};

std::string xsd_dir() {
  const char* env = std::getenv("DTE_XSD_DIR");
  return env && *env ? env : std::string(DTE_SHARED_DIR) + "/xsd";
}

}  // namespace

TEST(DocumentXml, EveryExampleTypeValidatesAgainstSiiXsd) {
  const std::string dir = xsd_dir();
  if (!fs::exists(dir + "/DTE_v10.xsd") || !fs::exists(dir + "/EnvioBOLETA_v11.xsd"))
    GTEST_SKIP() << "SII XSDs not found in " << dir;
  dte::init_xml();
  Validator dte_xsd(dir + "/DTE_v10.xsd");
  Validator boleta_xsd(dir + "/EnvioBOLETA_v11.xsd");
  ASSERT_TRUE(dte_xsd.schema && boleta_xsd.schema);
  for (int tipo : dte::kSupportedTypes) {
    SCOPED_TRACE(tipo);
    json d = dte::normalize(dte::parse_input(slurp(examples_dir() / (std::to_string(tipo) + ".json"))));
    dte::XmlDocPtr doc = dte::build_document_xml(d);
    std::string xml = completed(doc.get(), tipo);
    if (dte::is_boleta(tipo)) {
      xml = "<EnvioBOLETA xmlns=\"http://www.sii.cl/SiiDte\" version=\"1.0\"><SetDTE ID=\"SetDoc\">"
            "<Caratula version=\"1.0\"><RutEmisor>76543210-3</RutEmisor><RutEnvia>12345678-5</RutEnvia>"
            "<RutReceptor>60803000-K</RutReceptor><FchResol>2024-01-01</FchResol><NroResol>0</NroResol>"
            "<TmstFirmaEnv>2024-01-01T10:00:00</TmstFirmaEnv><SubTotDTE><TpoDTE>" +
            std::to_string(tipo) + "</TpoDTE><NroDTE>1</NroDTE></SubTotDTE></Caratula>" + xml +
            "</SetDTE>" + kDummySignature + "</EnvioBOLETA>";
      EXPECT_EQ(boleta_xsd.validate(xml), "") << xml;
    } else {
      EXPECT_EQ(dte_xsd.validate(xml), "") << xml;
    }
  }
}

TEST(DocumentXml, OrderTruncationAndFormatting) {
  json in = base_invoice(33);
  in["Encabezado"]["Receptor"]["RznSocRecep"] = std::string(120, 'a') + "\xe2\x82\xac";
  in["Detalle"] = json::parse(R"([{"PrcItem": 10.50, "QtyItem": 1000000, "NmbItem": "Tornillo & tuerca <M6>",
                                   "UnmdItem": "UN", "CdgItem": {"VlrCodigo": 123, "TpoCodigo": "INT1"}}])");
  json d = dte::normalize(in);
  dte::XmlDocPtr doc = dte::build_document_xml(d);
  std::string xml = dte::serialize(doc.get(), "UTF-8");
  EXPECT_NE(xml.find("<Documento ID=\"T33F10\">"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<RznSocRecep>" + std::string(100, 'a') + "</RznSocRecep>"), std::string::npos);
  EXPECT_NE(xml.find("<NroLinDet>1</NroLinDet><CdgItem><TpoCodigo>INT1</TpoCodigo><VlrCodigo>123</VlrCodigo></CdgItem>"
                     "<NmbItem>Tornillo &amp; tuerca &lt;M6&gt;</NmbItem><QtyItem>1000000</QtyItem>"
                     "<UnmdItem>UN</UnmdItem><PrcItem>10.5</PrcItem><MontoItem>10500000</MontoItem>"),
            std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<MntNeto>10500000</MntNeto><TasaIVA>19</TasaIVA><IVA>1995000</IVA>"),
            std::string::npos);
  EXPECT_EQ(xml.find("TED"), std::string::npos);

  json typo = d;
  typo["Encabezado"]["Emisor"]["GiroEmisor"] = "typo";
  try {
    dte::build_document_xml(typo);
    FAIL();
  } catch (const dte::DocumentError& e) {
    EXPECT_EQ(e.code(), "input.unknown_field");
    EXPECT_NE(std::string(e.what()).find("Encabezado.Emisor.GiroEmisor"), std::string::npos);
  }
  EXPECT_NE(dte::serialize(dte::build_document_xml(d, "F10T33").get()).find("ID=\"F10T33\""),
            std::string::npos);
}

TEST(DocumentXml, RootElementPerType) {
  for (int tipo : {43, 110}) {
    json d = dte::normalize(dte::parse_input(slurp(examples_dir() / (std::to_string(tipo) + ".json"))));
    std::string xml = dte::serialize(dte::build_document_xml(d).get(), "UTF-8");
    EXPECT_NE(xml.find(tipo == 43 ? "<Liquidacion ID=\"T43F1\">" : "<Exportaciones ID=\"T110F1\">"),
              std::string::npos)
        << xml;
  }
}

// The signing pipeline runs the rules on normalize()'s own output without normalising it again
// (detail::check_normalized_rules); the findings must be check_rules' exactly, for the shipped
// examples, LibreDTE's JSON examples and variants of them with amounts, dates and lines changed.
TEST(DocumentRules, NormalizedShortcutFindsWhatCheckRulesFinds) {
  std::vector<json> inputs;
  for (const fs::path& dir : {examples_dir(), libredte_dir()}) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() != ".json") continue;
      try {
        inputs.push_back(dte::parse_input(slurp(e.path())));
      } catch (const dte::DteError&) {
      }
    }
  }
  ASSERT_FALSE(inputs.empty());
  const std::size_t originals = inputs.size();
  for (std::size_t i = 0; i < originals; ++i) {
    json a = inputs[i];
    if (a.contains("Detalle") && a["Detalle"].is_array() && !a["Detalle"].empty()) {
      a["Detalle"][0]["MontoItem"] = 1;  // a line that does not add up
      inputs.push_back(a);
      json b = inputs[i];
      b["Detalle"].push_back(b["Detalle"][0]);  // a repeated line
      inputs.push_back(b);
    }
    json c = inputs[i];
    c["Encabezado"]["IdDoc"]["FchEmis"] = "2031-01-01";
    c["Encabezado"].erase("Totales");
    inputs.push_back(c);
  }
  const dte::RuleContext ctx = at("2024-06-01");
  int compared = 0;
  for (const json& in : inputs) {
    json d;
    try {
      d = dte::normalize(in);
    } catch (const dte::DteError&) {
      continue;
    }
    auto text = [](const std::vector<dte::Finding>& f) {
      std::string out;
      for (const auto& x : f)
        out += x.code + " " + x.field + " " + x.message +
               (x.severity == dte::Finding::Severity::kError ? " E\n" : " W\n");
      return out;
    };
    EXPECT_EQ(text(dte::detail::check_normalized_rules(d, ctx)), text(dte::check_rules(d, ctx)))
        << in.dump().substr(0, 300);
    ++compared;
  }
  EXPECT_GT(compared, static_cast<int>(originals));
}

// A huge number where the rules read a code (FmaPago, CodRef...) went through int_of, declared
// noexcept while round_half_up throws: std::terminate. Now the usual range error.
TEST(DocumentRules, HugeCodeIsARangeErrorNotATermination) {
  for (const char* where : {"FmaPago"}) {
    json d = base_invoice(33);
    d["Encabezado"]["IdDoc"][where] = 1e30;
    try {
      (void)dte::check_rules(d);
      ADD_FAILURE() << where << ": no error";
    } catch (const dte::DocumentError& e) {
      EXPECT_EQ(e.code(), "input.amount_range") << where;
    }
  }
}
