// Segmented books (TipoEnvio PARCIAL/FINAL, NroSegmento): each segment totals its own detail in
// ResumenSegmento, the segments add up to the period, only FINAL carries ResumenPeriodo, and every
// signed segment validates against SII's XSD and verifies.
#include <gtest/gtest.h>

#include "dte/books.hpp"
#include "dte/errors.hpp"
#include "dte/verify.hpp"
#include "signing_material.hpp"

namespace dte::test {
namespace {

using books::json;

json big_book(int n) {
  json in;
  in["Caratula"] = {{"RutEmisorLibro", kIssuer}, {"RutEnvia", kSigner}, {"PeriodoTributario", "2024-05"},
                    {"FchResol", "2014-08-22"},  {"NroResol", 80},       {"TipoOperacion", "VENTA"},
                    {"TipoLibro", "MENSUAL"},    {"TipoEnvio", "TOTAL"}};
  in["Detalle"] = json::array();
  for (int i = 1; i <= n; ++i)
    in["Detalle"].push_back({{"TpoDoc", i % 5 == 0 ? 34 : 33}, {"NroDoc", i}, {"FchDoc", "2024-05-02"},
                             {"RUTDoc", "12345678-5"}, {"RznSoc", "Cliente"},
                             {i % 5 == 0 ? "MntExe" : "MntNeto", 1000 * i}});
  return in;
}

long long total_of(const json& resumen, int type, const char* key) {
  for (const json& t : resumen)
    if (t["TpoDoc"] == type) return t.value(key, 0LL);
  return 0;
}

TEST(BooksSegments, SegmentsAddUpToThePeriod) {
  json book = big_book(23);
  json whole = books::normalize_libro_cv(book)["ResumenPeriodo"];
  std::vector<json> segs = books::segment_libro_cv(book, 10);
  ASSERT_EQ(segs.size(), 3u);
  long long net33 = 0, exe34 = 0, docs = 0;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    EXPECT_EQ(segs[i]["Caratula"]["TipoEnvio"], i + 1 == segs.size() ? "FINAL" : "PARCIAL");
    EXPECT_EQ(segs[i]["Caratula"]["NroSegmento"], static_cast<long long>(i + 1));
    json n = books::normalize_libro_cv(segs[i]);
    EXPECT_EQ(n.contains("ResumenPeriodo"), i + 1 == segs.size());
    net33 += total_of(n["ResumenSegmento"], 33, "TotMntNeto");
    exe34 += total_of(n["ResumenSegmento"], 34, "TotMntExe");
    docs += total_of(n["ResumenSegmento"], 33, "TotDoc") + total_of(n["ResumenSegmento"], 34, "TotDoc");
    if (i + 1 == segs.size()) {
      EXPECT_EQ(n["ResumenPeriodo"], whole);
    }
  }
  // By hand: 1..23, multiples of 5 are exempt (34), the rest net (33), 1000 x folio each.
  long long hand33 = 0, hand34 = 0;
  for (int i = 1; i <= 23; ++i) (i % 5 == 0 ? hand34 : hand33) += 1000LL * i;
  EXPECT_EQ(net33, hand33);
  EXPECT_EQ(exe34, hand34);
  EXPECT_EQ(docs, 23);
  EXPECT_EQ(total_of(whole, 33, "TotMntNeto"), hand33);
  EXPECT_EQ(books::segment_libro_cv(book, 100).size(), 1u);
  EXPECT_EQ(books::segment_libro_cv(book, 100)[0]["Caratula"]["TipoEnvio"], "TOTAL");
}

TEST(BooksSegments, SignedSegmentsValidateAndVerify) {
  std::vector<std::string> xml = books::sign_libro_cv_segments(big_book(12), cert(), 5);
  ASSERT_EQ(xml.size(), 3u);
  for (std::size_t i = 0; i < xml.size(); ++i) {
    EXPECT_NE(xml[i].find("ID=\"LV_2024-05_S" + std::to_string(i + 1) + "\""), std::string::npos);
    EXPECT_NE(xml[i].find("<TotalesSegmento>"), std::string::npos);
    if (const SchemaSet* s = schemas()) {
      ValidationResult v = s->validate_bytes(xml[i]);
      EXPECT_TRUE(v.valid) << issues_text(v);
    }
    VerifyOptions options;
    options.schemas = schemas();
    EXPECT_TRUE(verify_document(xml[i], options).ok());
  }
}

TEST(BooksSegments, RefusesIncompleteSegments) {
  json book = big_book(4);
  book["Caratula"]["TipoEnvio"] = "PARCIAL";
  EXPECT_THROW(books::normalize_libro_cv(book), DocumentError);  // no NroSegmento
  book["Caratula"]["NroSegmento"] = 1;
  EXPECT_NO_THROW(books::normalize_libro_cv(book));
  book["Caratula"]["TipoEnvio"] = "FINAL";
  EXPECT_THROW(books::normalize_libro_cv(book), DocumentError);  // no ResumenPeriodo
  book["Caratula"]["TipoEnvio"] = "AJUSTE";
  EXPECT_THROW(books::normalize_libro_cv(book), DocumentError);
  EXPECT_THROW(books::segment_libro_cv(big_book(3), 0), DocumentError);
}

}  // namespace
}  // namespace dte::test
