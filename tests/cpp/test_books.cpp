// IECV, Libro de Guías and ConsumoFolios: totals against hand-computed values, the signed XML
// against SII's XSDs, xmlsec1 and our own verifier; LibreDTE's CSV samples through the CSV helper.
#include <gtest/gtest.h>

#include "dte/books.hpp"
#include "dte/errors.hpp"
#include "dte/verify.hpp"
#include "signing_material.hpp"

namespace dte::test {
namespace {

using books::json;


fs::path books_dir() { return fs::path(DTE_SHARED_DIR) / "books"; }

json cv_input(const std::string& op, const std::string& tipo = "MENSUAL") {
  json in;
  in["Caratula"] = {{"RutEmisorLibro", kIssuer},     {"RutEnvia", kSigner},
                    {"PeriodoTributario", "2024-05"}, {"FchResol", "2014-08-22"},
                    {"NroResol", 80},                {"TipoOperacion", op},
                    {"TipoLibro", tipo},             {"TipoEnvio", "TOTAL"}};
  return in;
}

void expect_signed_ok(const std::string& xml, const std::string& id_element) {
  if (const SchemaSet* s = schemas()) {
    ValidationResult v = s->validate_bytes(xml);
    EXPECT_TRUE(v.valid) << issues_text(v) << xml.substr(0, 3000);
  }
  if (have_xmlsec1()) {
    auto r = xmlsec1_verify(xml, id_element, "/*/*[local-name()='Signature']");
    EXPECT_EQ(r.status, 0) << r.output;
  }
  VerifyOptions options;
  options.schemas = schemas();
  VerifyReport report = verify_document(xml, options);
  EXPECT_TRUE(report.ok());
  for (const auto& c : report.checks)
    EXPECT_NE(c.status, CheckStatus::kFail) << c.name << " " << c.subject << ": " << c.reason;
}

TEST(Books, VentaTotalsAreComputedFromTheDetail) {
  json in = cv_input("VENTA");
  in["Detalle"] = json::array({
      {{"TpoDoc", 33}, {"NroDoc", 1}, {"FchDoc", "2024-05-02"}, {"RUTDoc", "12345678-5"},
       {"RznSoc", "Cliente Uno"}, {"MntNeto", 100000}},                          // IVA 19000
      {{"TpoDoc", 33}, {"NroDoc", 2}, {"FchDoc", "2024-05-03"}, {"RUTDoc", "12345678-5"},
       {"RznSoc", "Cliente Uno"}, {"MntExe", 5000}, {"MntNeto", 10001}},         // IVA 1900.19 -> 1900
      {{"TpoDoc", 33}, {"NroDoc", 3}, {"Anulado", "A"}},
      {{"TpoDoc", 34}, {"NroDoc", 7}, {"FchDoc", "2024-05-04"}, {"RUTDoc", "11111111-1"},
       {"RznSoc", "Exento SpA"}, {"MntExe", 30000}},
      {{"TpoDoc", 61}, {"NroDoc", 9}, {"FchDoc", "2024-05-05"}, {"RUTDoc", "12345678-5"},
       {"RznSoc", "Cliente Uno"}, {"MntNeto", 50}},                              // IVA 9.5 -> 10
  });
  json n = books::normalize_libro_cv(in);
  const json& r = n["ResumenPeriodo"];
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0]["TpoDoc"], 33);
  EXPECT_EQ(r[0]["TotDoc"], 2);
  EXPECT_EQ(r[0]["TotAnulado"], 1);
  EXPECT_EQ(r[0]["TotMntExe"], 5000);
  EXPECT_EQ(r[0]["TotMntNeto"], 110001);
  EXPECT_EQ(r[0]["TotMntIVA"], 20900);
  EXPECT_EQ(r[0]["TotMntTotal"], 119000 + 5000 + 10001 + 1900);
  EXPECT_EQ(r[1]["TpoDoc"], 34);
  EXPECT_EQ(r[1]["TotMntExe"], 30000);
  EXPECT_EQ(r[1]["TotMntTotal"], 30000);
  EXPECT_EQ(r[2]["TotMntIVA"], 10);  // half up
  EXPECT_EQ(r[2]["TotMntTotal"], 60);
  EXPECT_FALSE(n["Detalle"][2].contains("MntTotal"));  // an annulled document carries no amounts

  std::string xml = books::sign_libro_cv(in, cert());
  EXPECT_NE(xml.find("<TipoOperacion>VENTA</TipoOperacion>"), std::string::npos);
  expect_signed_ok(xml, "EnvioLibro");
}

TEST(Books, CompraWithNonRecoverableVatAndRetention) {
  json in = cv_input("COMPRA");
  in["FctProp"] = 60;
  in["Detalle"] = json::array({
      // IVA no recuperable code 1: the IVA goes there and MntIVA is 0.
      {{"TpoDoc", 33}, {"NroDoc", 10}, {"FchDoc", "2024-05-02"}, {"RUTDoc", "12345678-5"},
       {"MntNeto", 20000}, {"IVANoRec", {{{"CodIVANoRec", 1}}}}},
      // Factura de compra 46 with IVA retenido total as OtrosImp 15 (PROTOCOL §11).
      {{"TpoDoc", 46}, {"NroDoc", 3}, {"FchDoc", "2024-05-02"}, {"RUTDoc", "12345678-5"},
       {"MntNeto", 10632}, {"OtrosImp", {{{"CodImp", 15}, {"TasaImp", 19}}}}},
      {{"TpoDoc", 33}, {"NroDoc", 11}, {"FchDoc", "2024-05-06"}, {"RUTDoc", "12345678-5"},
       {"MntNeto", 1000}, {"MntIVA", 0}, {"IVAUsoComun", 190}},
  });
  json n = books::normalize_libro_cv(in);
  const json& d = n["Detalle"];
  EXPECT_EQ(d[0]["MntIVA"], 0);
  EXPECT_EQ(d[0]["IVANoRec"][0]["MntIVANoRec"], 3800);
  EXPECT_EQ(d[0]["MntTotal"], 23800);
  EXPECT_EQ(d[1]["MntIVA"], 2020);
  EXPECT_EQ(d[1]["OtrosImp"][0]["MntImp"], 2020);
  EXPECT_EQ(d[1]["MntTotal"], 10632 + 2020);  // the retention is withheld, not added
  const json& t33 = n["ResumenPeriodo"][0];
  EXPECT_EQ(t33["TotDoc"], 2);
  EXPECT_FALSE(t33.contains("TotOpIVARec"));  // no recoverable IVA on either 33
  EXPECT_EQ(t33["TotIVANoRec"][0]["TotMntIVANoRec"], 3800);
  EXPECT_EQ(t33["TotIVAUsoComun"], 190);
  EXPECT_EQ(t33["TotCredIVAUsoComun"], 114);  // 60 % of 190
  const json& t46 = n["ResumenPeriodo"][1];
  EXPECT_EQ(t46["TotOtrosImp"][0]["CodImp"], 15);
  EXPECT_EQ(t46["TotOtrosImp"][0]["TotMntImp"], 2020);
  EXPECT_EQ(t46["TotOpIVARec"], 1);
  expect_signed_ok(books::sign_libro_cv(in, cert()), "EnvioLibro");
}

TEST(Books, CompraSplitsTheIvaBetweenItsColumns) {
  json in = cv_input("COMPRA");
  in["Detalle"] = json::array({
      // Uso común without MntIVA: none of the 9500 is recoverable MntIVA.
      {{"TpoDoc", 33}, {"NroDoc", 1}, {"MntNeto", 50000}, {"IVAUsoComun", 9500}},
      // 1700 of the 5700 not recoverable (stated), the rest recoverable.
      {{"TpoDoc", 33}, {"NroDoc", 2}, {"MntNeto", 30000}, {"IVANoRec", {{{"CodIVANoRec", 2}, {"MntIVANoRec", 1700}}}}},
      // Two codes: the one without amount takes what the other left.
      {{"TpoDoc", 33}, {"NroDoc", 3}, {"MntNeto", 10000},
       {"IVANoRec", {{{"CodIVANoRec", 3}, {"MntIVANoRec", 400}}, {{"CodIVANoRec", 9}}}}},
  });
  json n = books::normalize_libro_cv(in);
  const json& d = n["Detalle"];
  EXPECT_EQ(d[0]["MntIVA"], 0);
  EXPECT_EQ(d[0]["MntTotal"], 59500);
  EXPECT_EQ(d[1]["MntIVA"], 4000);
  EXPECT_EQ(d[1]["MntTotal"], 35700);
  EXPECT_EQ(d[2]["MntIVA"], 0);
  EXPECT_EQ(d[2]["IVANoRec"][1]["MntIVANoRec"], 1500);
  EXPECT_EQ(d[2]["MntTotal"], 11900);
  const json& t = n["ResumenPeriodo"][0];
  EXPECT_EQ(t["TotMntIVA"], 4000);
  EXPECT_EQ(t["TotOpIVARec"], 1);
  EXPECT_EQ(t["TotIVANoRec"].size(), 3u);  // codes 2, 3, 9 in code order
  EXPECT_EQ(t["TotIVANoRec"][2]["TotMntIVANoRec"], 1500);
  EXPECT_EQ(t["TotMntTotal"], 59500 + 35700 + 11900);

  in["Detalle"][0]["IVANoRec"] = json::array({{{"CodIVANoRec", 7}}});
  try {
    books::normalize_libro_cv(in);
    FAIL() << "CodIVANoRec 7 accepted";
  } catch (const DocumentError& e) {
    EXPECT_NE(std::string(e.what()).find("Detalle[0].IVANoRec[0].CodIVANoRec"), std::string::npos) << e.what();
  }
}

TEST(Books, EspecialAndRectificaNeedTheirCodes) {
  json in = cv_input("VENTA", "ESPECIAL");
  in["Detalle"] = json::array({{{"TpoDoc", 33}, {"NroDoc", 1}, {"MntNeto", 1000}, {"RUTDoc", "12345678-5"},
                                {"FchDoc", "2024-05-02"}}});
  try {
    books::normalize_libro_cv(in);
    FAIL() << "ESPECIAL without FolioNotificacion accepted";
  } catch (const DocumentError& e) {
    EXPECT_EQ(e.code(), "libro.caratula");
  }
  in["Caratula"]["FolioNotificacion"] = 12;
  expect_signed_ok(books::sign_libro_cv(in, cert()), "EnvioLibro");

  in["Caratula"]["TipoLibro"] = "RECTIFICA";
  in["Caratula"].erase("FolioNotificacion");
  EXPECT_THROW(books::normalize_libro_cv(in), DocumentError);
  in["Caratula"]["CodAutRec"] = "ABC123";
  std::string xml = books::sign_libro_cv(in, cert());
  EXPECT_NE(xml.find("<CodAutRec>ABC123</CodAutRec>"), std::string::npos);
  expect_signed_ok(xml, "EnvioLibro");

  in["Caratula"]["TipoEnvio"] = "AJUSTE";
  try {
    books::normalize_libro_cv(in);
    FAIL();
  } catch (const DocumentError& e) {
    EXPECT_EQ(e.code(), "libro.unsupported");
  }
  in["Caratula"]["TipoEnvio"] = "PARCIAL";  // a segment needs its number (test_books_segments.cpp)
  try {
    books::normalize_libro_cv(in);
    FAIL();
  } catch (const DocumentError& e) {
    EXPECT_EQ(e.code(), "libro.caratula");
  }
}

TEST(Books, BadDetailNamesTheField) {
  json in = cv_input("VENTA");
  in["Detalle"] = json::array({{{"TpoDoc", 33}, {"NroDoc", 1}, {"MntNetto", 5}}});
  try {
    books::normalize_libro_cv(in);
    FAIL();
  } catch (const DocumentError& e) {
    EXPECT_EQ(e.code(), "libro.field");
    EXPECT_NE(std::string(e.what()).find("Detalle[0].MntNetto"), std::string::npos);
  }
  in["Detalle"] = json::array({{{"TpoDoc", 33}, {"NroDoc", 1}, {"RUTDoc", "12345678-9"}}});
  EXPECT_THROW(books::normalize_libro_cv(in), DocumentError);
  in["Detalle"] = json::array({{{"TpoDoc", 33}, {"NroDoc", 1}}, {{"TpoDoc", 33}, {"NroDoc", 1}}});
  EXPECT_THROW(books::normalize_libro_cv(in), DocumentError);
}

TEST(Books, EmptyBookStillValidates) {
  json in = cv_input("COMPRA");
  in["Detalle"] = json::array();
  expect_signed_ok(books::sign_libro_cv(in, cert()), "EnvioLibro");
}

TEST(Books, SchemaOptionRejectsWhatTheXsdRejects) {
  if (!schemas()) GTEST_SKIP() << "SII XSDs not found in " << xsd_dir();
  json in = cv_input("VENTA");
  in["Detalle"] = json::array({{{"TpoDoc", 999}, {"NroDoc", 1}, {"MntExe", 1}}});  // not a DoctoType
  books::SignOptions options;
  options.schemas = schemas();
  try {
    books::sign_libro_cv(in, cert(), options);
    FAIL();
  } catch (const DocumentError& e) {
    EXPECT_EQ(e.code(), "libro.schema");
  }
}

// ---- LibreDTE CSV samples

std::string read_sample(const std::string& name) {
  fs::path p = books_dir() / "libredte" / name;
  return fs::exists(p) ? read_file(p) : std::string();
}

TEST(BooksCsv, LibreDteVentasMatchTheirSignedBook) {
  std::string csv = read_sample("libro_ventas.csv");
  if (csv.empty()) GTEST_SKIP() << "no " << books_dir() << "/libredte/libro_ventas.csv";
  auto entries = books::entries_from_csv(csv, "cv");
  EXPECT_TRUE(entries.issues.empty()) << entries.issues[0].message;
  ASSERT_EQ(entries.detalle.size(), 8u);
  json in = cv_input("VENTA");
  in["Detalle"] = entries.detalle;
  json n = books::normalize_libro_cv(in);
  // The totals of LibreDTE's own signed ventas.xml for the same detail.
  const json& r = n["ResumenPeriodo"];
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0]["TpoDoc"], 33);
  EXPECT_EQ(r[0]["TotDoc"], 4);
  EXPECT_EQ(r[0]["TotMntExe"], 48239);
  EXPECT_EQ(r[0]["TotMntNeto"], 1440818);
  EXPECT_EQ(r[0]["TotMntIVA"], 273756);
  EXPECT_EQ(r[0]["TotMntTotal"], 1762813);
  EXPECT_EQ(r[1]["TpoDoc"], 61);
  EXPECT_EQ(r[1]["TotDoc"], 3);
  EXPECT_EQ(r[1]["TotMntExe"], 34705);
  EXPECT_EQ(r[1]["TotMntNeto"], 751288);
  EXPECT_EQ(r[1]["TotMntIVA"], 142745);
  EXPECT_EQ(r[1]["TotMntTotal"], 928738);
  EXPECT_EQ(r[2]["TpoDoc"], 56);
  EXPECT_EQ(r[2]["TotDoc"], 1);
  EXPECT_EQ(r[2]["TotMntTotal"], 0);
  expect_signed_ok(books::sign_libro_cv(in, cert()), "EnvioLibro");
}

TEST(BooksCsv, LibreDteComprasLoadAndValidate) {
  for (const char* name : {"libro_compras.csv", "libro_compras_exentos.csv"}) {
    std::string csv = read_sample(name);
    if (csv.empty()) GTEST_SKIP() << "no LibreDTE book samples in " << books_dir();
    auto entries = books::entries_from_csv(csv, "cv");
    EXPECT_TRUE(entries.issues.empty()) << name << ": " << entries.issues[0].message;
    ASSERT_EQ(entries.detalle.size(), 7u) << name;
    json in = cv_input("COMPRA");
    in["Detalle"] = entries.detalle;
    if (entries.extra.contains("FctProp")) in["FctProp"] = entries.extra["FctProp"];
    json n = books::normalize_libro_cv(in);
    if (std::string(name) == "libro_compras.csv") {
      // 46/9: IVA retenido (code 15 at 19 %) on 10632.
      const json& d46 = n["Detalle"][5];
      EXPECT_EQ(d46["TpoDoc"], 46);
      EXPECT_EQ(d46["OtrosImp"][0]["MntImp"], 2020);
      // 33/67: IVA no recuperable code 4 without amount takes the IVA (12135 x 19 % = 2305.65).
      const json& d33 = n["Detalle"][4];
      EXPECT_EQ(d33["IVANoRec"][0]["MntIVANoRec"], 2306);
      EXPECT_EQ(d33["MntIVA"], 0);
      // Type 30: 53253 + 30171 net, IVA 10118 + 5732.
      EXPECT_EQ(n["ResumenPeriodo"][0]["TpoDoc"], 30);
      EXPECT_EQ(n["ResumenPeriodo"][0]["TotMntNeto"], 83424);
      EXPECT_EQ(n["ResumenPeriodo"][0]["TotMntIVA"], 15850);
    }
    expect_signed_ok(books::sign_libro_cv(in, cert()), "EnvioLibro");
  }
}

TEST(BooksCsv, BadRowsAreReportedAndTheRestKept) {
  std::string csv =
      "TpoDoc;NroDoc;RUTDoc;FchDoc;MntNeto;Columna Rara\n"
      "33;1;12345678-5;2024-05-01;1000;x\n"
      "33;dos;12345678-5;2024-05-01;1000;\n"
      "33;3;12345678-9;31/02/2024;1000;\n"
      "33;4;12345678-5;02/05/2024;-;\n";
  auto e = books::entries_from_csv(csv, "cv");
  ASSERT_EQ(e.detalle.size(), 2u);
  EXPECT_EQ(e.detalle[1]["FchDoc"], "2024-05-02");
  EXPECT_FALSE(e.detalle[1].contains("MntNeto"));  // "-" is empty
  ASSERT_EQ(e.issues.size(), 4u);
  EXPECT_EQ(e.issues[0].row, 1);
  EXPECT_EQ(e.issues[0].column, "Columna Rara");
  EXPECT_EQ(e.issues[1].row, 3);
  EXPECT_EQ(e.issues[1].column, "NroDoc");
  EXPECT_EQ(e.issues[2].row, 4);
  EXPECT_EQ(e.issues[2].column, "RUTDoc");
  EXPECT_EQ(e.issues[3].column, "FchDoc");
}

// ---- Libro de Guías

TEST(BooksGuia, LibreDteSampleTotals) {
  std::string csv = read_sample("libro_guias.csv");
  if (csv.empty()) GTEST_SKIP() << "no LibreDTE book samples in " << books_dir();
  // The sample's customer RUT 55666777-8 has a wrong check digit: both rows are reported, by
  // line and column, and the good row is kept.
  auto bad = books::entries_from_csv(csv, "guia");
  ASSERT_EQ(bad.issues.size(), 2u);
  EXPECT_EQ(bad.issues[0].row, 3);
  EXPECT_EQ(bad.issues[0].column, "RUTDoc");
  EXPECT_EQ(bad.issues[1].row, 4);
  EXPECT_EQ(bad.detalle.size(), 1u);
  for (std::size_t at; (at = csv.find("55666777-8")) != std::string::npos;) csv.replace(at, 10, "55666777-2");
  auto entries = books::entries_from_csv(csv, "guia");
  EXPECT_TRUE(entries.issues.empty());
  ASSERT_EQ(entries.detalle.size(), 3u);
  json in;
  in["Caratula"] = {{"RutEmisorLibro", kIssuer}, {"PeriodoTributario", "2015-12"},
                    {"FchResol", "2014-08-22"}, {"NroResol", 80}, {"FolioNotificacion", 2}};
  in["Detalle"] = entries.detalle;
  json n = books::normalize_libro_guia(in);
  const json& r = n["ResumenPeriodo"];
  EXPECT_EQ(r["TotGuiaAnulada"], 1);                 // folio 6
  EXPECT_EQ(r["TotGuiaVenta"], 1);                   // folio 5
  EXPECT_EQ(r["TotMntGuiaVta"], 1375761 + 261395);   // 19 % of 1375761 = 261394.59
  ASSERT_EQ(r["TotTraslado"].size(), 1u);            // folio 4: traslado interno (5)
  EXPECT_EQ(r["TotTraslado"][0]["TpoTraslado"], 5);
  EXPECT_EQ(r["TotTraslado"][0]["CantGuia"], 1);
  std::string xml = books::sign_libro_guia(in, cert());
  expect_signed_ok(xml, "EnvioLibro");

  in["Caratula"].erase("FolioNotificacion");
  EXPECT_THROW(books::normalize_libro_guia(in), DocumentError);
}

// ---- ConsumoFolios (RVD)

json rvd_caratula() {
  return {{"RutEmisor", kIssuer}, {"FchResol", "2014-08-22"}, {"NroResol", 80},
          {"FchInicio", "2024-05-10"}, {"SecEnvio", 1}};
}

TEST(BooksConsumoFolios, RangesAndTotalsFromFolios) {
  json in;
  in["Caratula"] = rvd_caratula();
  in["Documentos"] = json::array();
  for (int folio : {1, 2, 3, 5, 9}) in["Documentos"].push_back({{"TipoDTE", 39}, {"Folio", folio}, {"MntTotal", 1190}});
  in["Documentos"].push_back({{"TipoDTE", 41}, {"Folio", 7}, {"MntTotal", 500}});
  in["Anulados"] = json::array({{{"TipoDTE", 39}, {"Folio", 4}}});
  json n = books::normalize_consumo_folios(in);
  ASSERT_EQ(n["Resumen"].size(), 2u);
  const json& r39 = n["Resumen"][0];
  EXPECT_EQ(r39["TipoDocumento"], 39);
  EXPECT_EQ(r39["MntNeto"], 5000);
  EXPECT_EQ(r39["MntIva"], 950);
  EXPECT_EQ(r39["TasaIVA"], 19);
  EXPECT_EQ(r39["MntTotal"], 5950);
  EXPECT_EQ(r39["FoliosEmitidos"], 5);
  EXPECT_EQ(r39["FoliosAnulados"], 1);
  EXPECT_EQ(r39["FoliosUtilizados"], 6);
  EXPECT_EQ(r39["RangoUtilizados"],
            json::parse(R"([{"Inicial":1,"Final":3},{"Inicial":5,"Final":5},{"Inicial":9,"Final":9}])"));
  EXPECT_EQ(r39["RangoAnulados"], json::parse(R"([{"Inicial":4,"Final":4}])"));
  const json& r41 = n["Resumen"][1];
  EXPECT_EQ(r41["MntExento"], 500);
  EXPECT_FALSE(r41.contains("MntNeto"));
  std::string xml = books::sign_consumo_folios(in, cert());
  expect_signed_ok(xml, "DocumentoConsumoFolios");
}

TEST(BooksConsumoFolios, DayWithoutSales) {
  json in;
  in["Caratula"] = rvd_caratula();
  json n = books::normalize_consumo_folios(in);
  ASSERT_EQ(n["Resumen"].size(), 1u);
  EXPECT_EQ(n["Resumen"][0]["TipoDocumento"], 39);
  EXPECT_EQ(n["Resumen"][0]["MntTotal"], 0);
  EXPECT_EQ(n["Resumen"][0]["FoliosUtilizados"], 0);
  expect_signed_ok(books::sign_consumo_folios(in, cert()), "DocumentoConsumoFolios");
  in["Tipos"] = json::array({39, 41});
  EXPECT_EQ(books::normalize_consumo_folios(in)["Resumen"].size(), 2u);
  in["Documentos"] = json::array({{{"TipoDTE", 33}, {"Folio", 1}, {"MntTotal", 1}}});
  EXPECT_THROW(books::normalize_consumo_folios(in), DocumentError);
}

}  // namespace
}  // namespace dte::test
