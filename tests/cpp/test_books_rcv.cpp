// RCV CSV parsing over every shared sample (with the quirk each one carries) and reconciliation.
#include <gtest/gtest.h>

#include <algorithm>

#include "dte/rcv.hpp"
#include "dte/sii_client.hpp"
#include "signing_material.hpp"

namespace dte::test {
namespace {

fs::path rcv_dir() { return fs::path(DTE_SHARED_DIR) / "books" / "rcv"; }

rcv::ParseResult parse_sample(const std::string& name) {
  return rcv::parse_csv(read_file(rcv_dir() / name));
}

#define NEED_RCV_SAMPLES()                                                              \
  if (!fs::exists(rcv_dir())) GTEST_SKIP() << "no RCV samples in " << rcv_dir().string()

bool has_error(const rcv::ParseResult& r, int line, const std::string& column) {
  return std::any_of(r.errors.begin(), r.errors.end(), [&](const books::RowIssue& e) {
    return e.row == line && (column.empty() || e.column == column);
  });
}

TEST(BooksRcv, EverySampleParsesWithoutThrowing) {
  NEED_RCV_SAMPLES();
  int files = 0;
  for (const auto& entry : fs::directory_iterator(rcv_dir())) {
    if (entry.path().extension() != ".csv") continue;
    ++files;
    rcv::ParseResult r = rcv::parse_csv(read_file(entry.path()));
    const std::string name = entry.path().filename().string();
    EXPECT_FALSE(r.rows.empty()) << name;
    const bool venta = name.find("venta") != std::string::npos;
    EXPECT_EQ(r.register_kind, venta ? "venta" : "compra") << name;
    for (const auto& row : r.rows) {
      // Whitespace around the razón social never survives.
      if (!row.counterpart_name.empty()) {
        EXPECT_NE(row.counterpart_name.front(), ' ') << name;
        EXPECT_NE(row.counterpart_name.back(), ' ') << name;
      }
      EXPECT_EQ(row.issue_date.size(), 10u) << name;
      EXPECT_GT(row.folio, 0) << name;
    }
  }
  EXPECT_EQ(files, 10);
}

TEST(BooksRcv, WhitespaceAroundRazonSocialIsTrimmed) {
  NEED_RCV_SAMPLES();
  for (const char* name : {"RCV-venta-rz_leading_trailing_whitespace.csv",
                           "RCV-compra-registro-rz_leading_trailing_whitespace.csv",
                           "RCV-compra-no_incluir-rz_leading_trailing_whitespace.csv",
                           "RCV-compra-pendiente-rz_leading_trailing_whitespace.csv",
                           "RCV-compra-reclamado-rz_leading_trailing_whitespace.csv"}) {
    auto r = parse_sample(name);
    ASSERT_EQ(r.rows.size(), 2u) << name;
    EXPECT_TRUE(r.errors.empty()) << name << ": " << r.errors[0].message;
    EXPECT_EQ(r.rows[0].counterpart_name, "Fake Company S.A.") << name;
    EXPECT_EQ(r.rows[1].counterpart_name, "Fake Company S.A.") << name;
  }
  auto v = parse_sample("RCV-venta-rz_leading_trailing_whitespace.csv");
  EXPECT_EQ(v.state, "REGISTRO");
  EXPECT_EQ(v.rows[0].doc_type, 33);
  EXPECT_EQ(v.rows[0].folio, 506);
  EXPECT_EQ(v.rows[0].issue_date, "2019-06-04");
  EXPECT_EQ(v.rows[0].received_at, "2019-06-18T17:01:06");
  EXPECT_EQ(v.rows[0].net, 1750181);
  EXPECT_EQ(v.rows[0].vat, 332534);
  EXPECT_EQ(v.rows[0].total, 2082715);
  EXPECT_EQ(v.rows[0].counterpart_rut, "12345678-5");
  EXPECT_EQ(v.rows[1].nro, 23);
  // "-" in RUT Emisor Liquid. Factura is nothing, not a value.
  EXPECT_EQ(v.rows[0].cells.count("RUT Emisor Liquid. Factura"), 0u);
}

TEST(BooksRcv, CompraStatesAreGuessedFromTheColumns) {
  NEED_RCV_SAMPLES();
  EXPECT_EQ(parse_sample("RCV-compra-pendiente-rz_leading_trailing_whitespace.csv").state, "PENDIENTE");
  EXPECT_EQ(parse_sample("RCV-compra-reclamado-rz_leading_trailing_whitespace.csv").state, "RECLAMADO");
  EXPECT_EQ(parse_sample("RCV-compra-registro-rz_leading_trailing_whitespace.csv").state, "REGISTRO");
  // NO_INCLUIR has the same columns as REGISTRO: only the caller knows.
  auto ni = rcv::parse_csv(read_file(rcv_dir() / "RCV-compra-no_incluir-rz_leading_trailing_whitespace.csv"),
                           "no_incluir");
  EXPECT_EQ(ni.state, "NO_INCLUIR");
  EXPECT_EQ(ni.rows[0].vat_non_recoverable, 16663);
  EXPECT_EQ(ni.rows[0].vat_non_recoverable_code, 9);
  EXPECT_EQ(ni.rows[0].issuer_rut, "12345678-5");
  auto rec = parse_sample("RCV-compra-reclamado-rz_leading_trailing_whitespace.csv");
  EXPECT_EQ(rec.rows[0].claimed_at, "2019-06-12T09:47:23");
  EXPECT_EQ(rec.rows[1].claimed_at, "");  // "null"
}

TEST(BooksRcv, ExtraEmptyImpuestosRowsMergeIntoTheirDocument) {
  NEED_RCV_SAMPLES();
  auto r = parse_sample("RCV-venta-extra-empty-impuestos-rows.csv");
  EXPECT_TRUE(r.errors.empty()) << r.errors[0].message;
  ASSERT_EQ(r.rows.size(), 5u);  // 7 lines, 2 of them continuation rows
  const auto& first = r.rows[0];
  EXPECT_EQ(first.folio, 6541);
  ASSERT_EQ(first.other_taxes.size(), 2u);
  EXPECT_EQ(first.other_taxes[0].code, "27");
  EXPECT_EQ(first.other_taxes[0].amount, 275904);
  EXPECT_EQ(first.other_taxes[1].code, "271");
  EXPECT_EQ(first.other_taxes[1].amount, 701395);
  EXPECT_DOUBLE_EQ(first.other_taxes[1].rate, 18);
  EXPECT_EQ(r.rows[1].other_taxes.size(), 1u);
  EXPECT_DOUBLE_EQ(r.rows[1].other_taxes[0].rate, 31.5);
  EXPECT_EQ(r.rows[4].other_taxes.size(), 2u);
}

TEST(BooksRcv, MultipleReferencesAreSplit) {
  NEED_RCV_SAMPLES();
  auto r = parse_sample("RCV-venta-multiple-dte-referencias.csv");
  EXPECT_TRUE(r.errors.empty());
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_TRUE(r.rows[0].references.empty());
  ASSERT_EQ(r.rows[1].references.size(), 2u);
  EXPECT_EQ(r.rows[1].references[0].doc_type, 52);
  EXPECT_EQ(r.rows[1].references[0].folio, 10370);
  EXPECT_EQ(r.rows[1].references[1].folio, 10371);
  ASSERT_EQ(r.rows[2].references.size(), 3u);
  EXPECT_EQ(r.rows[2].references[2].folio, 400);
  EXPECT_EQ(r.rows[2].other_taxes.size(), 2u);
}

TEST(BooksRcv, ValidationErrorsAreRowLevel) {
  NEED_RCV_SAMPLES();
  auto r = parse_sample("RCV-venta-validation-errors.csv");
  // Kept: line 2 (+ its continuation), line 4 ("10489 " trimmed); rejected: a reference type
  // without folio (5), a non-numeric reference folio (6), an 11-digit folio (7), an 11-digit
  // reference folio (8).
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0].references.size(), 3u);
  EXPECT_EQ(r.rows[1].folio, 14395);
  ASSERT_EQ(r.rows[1].references.size(), 1u);
  EXPECT_EQ(r.rows[1].references[0].folio, 10489);
  EXPECT_TRUE(has_error(r, 5, "Tipo Docto. Referencia"));
  EXPECT_TRUE(has_error(r, 6, "Folio Docto. Referencia"));
  EXPECT_TRUE(has_error(r, 7, "Folio"));
  EXPECT_TRUE(has_error(r, 8, "Folio Docto. Referencia"));
  EXPECT_EQ(r.errors.size(), 4u);

  auto m = parse_sample("RCV-venta-missing-required-fields.csv");
  EXPECT_TRUE(has_error(m, 2, "Tipo Doc"));  // Tipo Doc is "" (quoted empty)
  ASSERT_EQ(m.rows.size(), 2u);
  EXPECT_EQ(m.rows[1].doc_type, 30);
  EXPECT_EQ(m.rows[1].exempt, 0);  // empty amount

  auto c = parse_sample("RCV-compra-reclamado.csv");
  ASSERT_EQ(c.rows.size(), 3u);
  EXPECT_EQ(c.rows[0].other_taxes.size(), 1u);
  EXPECT_EQ(c.rows[0].other_taxes[0].code, "23");
  EXPECT_TRUE(has_error(c, 5, "RUT Proveedor"));
  EXPECT_TRUE(has_error(c, 5, "Folio"));
  EXPECT_TRUE(has_error(c, 5, "Fecha Docto"));
  EXPECT_TRUE(has_error(c, 5, "Monto Total"));
  EXPECT_TRUE(has_error(c, 6, ""));  // a row with nothing but its number
}

TEST(BooksRcv, UnknownColumnsAreKeptWithAWarning) {
  std::string csv =
      "Nro;Tipo Doc;Tipo Venta;Rut cliente;Razon Social;Folio;Fecha Docto;Monto Neto;Monto IVA;"
      "Monto total;Columna Nueva\n"
      "1;33;Del Giro;12345678-5;  ACME ;10;01/05/2024;1000;190;1190;abc\n"
      "2;33;Del Giro;12345678-5;ACME;11;2024-05-32;1000;190;1190;\n";
  auto r = rcv::parse_csv(csv);
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0].cells.at("Columna Nueva"), "abc");
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("Columna Nueva"), std::string::npos);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].row, 3);
  EXPECT_EQ(r.errors[0].column, "Fecha Docto");

  auto bad = rcv::parse_csv("a;b;c\n1;2;3\n");
  EXPECT_TRUE(bad.rows.empty());
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0].row, 1);
}

TEST(BooksRcv, Latin1ExportIsDecoded) {
  std::string csv =
      "Nro;Tipo Doc;Tipo Compra;RUT Proveedor;Razon Social;Folio;Fecha Docto;Fecha Recepcion;"
      "Fecha Acuse;Monto Exento;Monto Neto;Monto IVA Recuperable;Monto Total\r\n"
      "1;33;Del Giro;12345678-5;Compa\xF1\xED" "a;10;01/05/2024;02/05/2024 10:00:00;;0;1000;190;1190\r\n";
  auto r = rcv::parse_csv(csv);
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0].counterpart_name, "Compa\xC3\xB1\xC3\xAD" "a");
}

// ---- reconciliation

rcv::Row sale(int type, long long folio, long long net, long long vat, long long total) {
  rcv::Row r;
  r.register_kind = "venta";
  r.state = "REGISTRO";
  r.doc_type = type;
  r.folio = folio;
  r.net = net;
  r.vat = vat;
  r.total = total;
  r.line = static_cast<int>(folio);
  return r;
}

TEST(BooksRcv, ReconcileFindsEachKind) {
  std::vector<rcv::Row> rows = {sale(33, 1, 1000, 190, 1190), sale(33, 2, 1000, 190, 1190),
                                sale(33, 3, 1000, 190, 1190), sale(33, 4, 2000, 380, 2380)};
  rows[2].state = "RECLAMADO";
  std::vector<rcv::LocalDocument> ours;
  auto doc = [](long long folio, long long net, long long vat, long long total, std::string state = {}) {
    rcv::LocalDocument d;
    d.issuer_rut = "76543210-3";
    d.doc_type = 33;
    d.folio = folio;
    d.net = net;
    d.vat = vat;
    d.total = total;
    d.state = std::move(state);
    d.reference = "move-" + std::to_string(folio);
    return d;
  };
  ours.push_back(doc(1, 1000, 190, 1190));            // equal
  ours.push_back(doc(2, 1000, 191, 1191));            // tax and total differ
  ours.push_back(doc(3, 1000, 190, 1190, "registro"));  // SII says RECLAMADO
  ours.push_back(doc(5, 1, 0, 1));                    // not in SII
  rcv::ReconcileOptions options;
  options.owner_rut = "76.543.210-3";
  auto found = rcv::reconcile(rows, ours, options);
  std::vector<std::string> kinds;
  for (const auto& f : found) kinds.push_back(f.kind + ":" + std::to_string(f.folio) + ":" + f.field);
  std::vector<std::string> expected = {"tax_mismatch:2:MntIVA", "amount_mismatch:2:MntTotal",
                                       "state_mismatch:3:state", "missing_locally:4:",
                                       "missing_in_rcv:5:"};
  std::sort(kinds.begin(), kinds.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(kinds, expected);
  for (const auto& f : found)
    if (f.kind == "tax_mismatch") {
      EXPECT_EQ(f.ours, "191");
      EXPECT_EQ(f.sii, "190");
      EXPECT_EQ(f.reference, "move-2");
      EXPECT_EQ(f.rcv_line, 2);
    }
  options.tolerance = 1;
  EXPECT_EQ(rcv::reconcile(rows, ours, options).size(), 3u);  // 1-peso differences accepted
}

TEST(BooksRcv, ReconcilePurchasesKeyOnTheSupplier) {
  NEED_RCV_SAMPLES();
  auto r = parse_sample("RCV-compra-reclamado.csv");
  rcv::LocalDocument d;
  d.issuer_rut = "12345678-5";
  d.doc_type = 33;
  d.folio = 1000055;
  d.total = 1155364;
  d.state = "RECLAMADO";
  rcv::LocalDocument other = d;
  other.issuer_rut = "11111111-1";  // same type and folio, another supplier: not the same document
  auto found = rcv::reconcile(r.rows, {d, other});
  int missing_locally = 0, missing_in_rcv = 0;
  for (const auto& f : found) {
    EXPECT_NE(f.kind, "amount_mismatch");
    EXPECT_NE(f.kind, "state_mismatch");
    missing_locally += f.kind == "missing_locally";
    missing_in_rcv += f.kind == "missing_in_rcv";
  }
  EXPECT_EQ(missing_locally, 2);  // 61/70013 and 33/789456
  EXPECT_EQ(missing_in_rcv, 1);
  auto dup = rcv::reconcile(r.rows, {d, d});
  EXPECT_TRUE(std::any_of(dup.begin(), dup.end(), [](const auto& f) { return f.kind == "duplicate"; }));
}

}  // namespace
}  // namespace dte::test

// The RCV download's checks before anything is sent, and a transport failure surfacing as the
// client's error (the download itself runs against the simulator in tests/python/test_books.py).
TEST(RcvDownload, RefusesBadRequestsAndSurfacesTransportErrors) {
  using namespace dte::sii;
  ClientConfig cfg;
  cfg.environment = Environment::kSimulator;
  cfg.endpoints = default_endpoints(Environment::kSimulator, "http://127.0.0.1:9");
  cfg.retry.max_attempts = 2;
  cfg.retry.base_delay_s = 0.01;
  cfg.connect_timeout_s = 2;
  Client client(cfg, std::make_shared<const dte::Certificate>(dte::test::make_cert()));
  EXPECT_EQ(dte::rcv::default_facade_base(client),
            "http://127.0.0.1:9/consdcvinternetui/services/data/facadeService");
  auto refused = [&](dte::rcv::DownloadRequest r) {
    try {
      dte::rcv::download(client, r);
    } catch (const dte::DteError& e) {
      return std::string(e.code());
    }
    return std::string("no error");
  };
  EXPECT_EQ(refused({"76543210-3", "2025-13", "compras", "", {}, ""}), "rcv.bad_request");
  EXPECT_EQ(refused({"76543210-3", "25-03", "compras", "", {}, ""}), "rcv.bad_request");
  EXPECT_EQ(refused({"76543210-3", "2025-03", "boletas", "", {}, ""}), "rcv.bad_request");
  EXPECT_EQ(refused({"76543210-3", "2025-03", "ventas", "PENDIENTE", {}, ""}), "rcv.bad_request");
  EXPECT_EQ(refused({"76543210-3", "2025-03", "compras", "ARCHIVADO", {}, ""}), "rcv.bad_request");
  EXPECT_EQ(refused({"76543210-4", "2025-03", "compras", "", {}, ""}), "rcv.bad_request");
  // Nothing listens on port 9: the token fetch fails as a transport error, never a crash.
  EXPECT_THROW(dte::rcv::download(client, {"76543210-3", "2025-03", "compras", "pending", {}, ""}),
               dte::SiiTransportError);
}
