// RCV CSV export -> typed rows. SII's dialect: ';', dd/mm/yyyy dates, "-" / "null" / "" for
// nothing, padded names, rows with more cells than the header, continuation rows (empty Nro) that
// carry a document's further "otros impuestos", several references in one cell ("200-300-400").
#include "dte/rcv.hpp"

#include <algorithm>
#include <set>

#include "books_internal.hpp"
#include "dte/rut.hpp"
#include "dte/xml.hpp"

namespace dte::rcv {
namespace {

using books::RowIssue;
using books::detail::column_key;
using books::detail::is_blank;
using books::detail::trim;

enum class Col {
  kNro, kTipoDoc, kTipoOperacion, kRut, kRazonSocial, kFolio, kFechaDocto, kFechaRecepcion,
  kFechaAcuse, kFechaReclamo, kMontoExento, kMontoNeto, kMontoIva, kMontoIvaNoRec, kCodIvaNoRec,
  kMontoTotal, kCodOtroImp, kValorOtroImp, kTasaOtroImp, kTipoDocRef, kFolioDocRef, kKnownOther
};

// Column keys (column_key of the header) SII uses in the ventas and compras exports.
const std::map<std::string, Col>& known_columns() {
  static const std::map<std::string, Col> m = {
      {"nro", Col::kNro},
      {"tipodoc", Col::kTipoDoc},
      {"tipoventa", Col::kTipoOperacion},
      {"tipocompra", Col::kTipoOperacion},
      {"rutcliente", Col::kRut},
      {"rutproveedor", Col::kRut},
      {"razonsocial", Col::kRazonSocial},
      {"folio", Col::kFolio},
      {"fechadocto", Col::kFechaDocto},
      {"fecharecepcion", Col::kFechaRecepcion},
      {"fechaacuserecibo", Col::kFechaAcuse},
      {"fechaacuse", Col::kFechaAcuse},
      {"fechareclamo", Col::kFechaReclamo},
      {"montoexento", Col::kMontoExento},
      {"montoneto", Col::kMontoNeto},
      {"montoiva", Col::kMontoIva},
      {"montoivarecuperable", Col::kMontoIva},
      {"montoivanorecuperable", Col::kMontoIvaNoRec},
      {"codigoivanorec", Col::kCodIvaNoRec},
      {"montototal", Col::kMontoTotal},
      {"codigootroimpuesto", Col::kCodOtroImp},
      {"codigootroimp", Col::kCodOtroImp},
      {"valorotroimpuesto", Col::kValorOtroImp},
      {"valorotroimp", Col::kValorOtroImp},
      {"tasaotroimpuesto", Col::kTasaOtroImp},
      {"tasaotroimp", Col::kTasaOtroImp},
      {"tipodoctoreferencia", Col::kTipoDocRef},
      {"foliodoctoreferencia", Col::kFolioDocRef},
      // Known and kept in `cells`, not typed.
      {"montonetoactivofijo", Col::kKnownOther},
      {"ivaactivofijo", Col::kKnownOther},
      {"ivausocomun", Col::kKnownOther},
      {"imptosinderechoacredito", Col::kKnownOther},
      {"ivanoretenido", Col::kKnownOther},
      {"tabacospuros", Col::kKnownOther},
      {"tabacoscigarrillos", Col::kKnownOther},
      {"tabacoselaborados", Col::kKnownOther},
      {"nceondesobrefactdecompra", Col::kKnownOther},
      {"ivaretenidototal", Col::kKnownOther},
      {"ivaretenidoparcial", Col::kKnownOther},
      {"ivapropio", Col::kKnownOther},
      {"ivaterceros", Col::kKnownOther},
      {"rutemisorliquidfactura", Col::kKnownOther},
      {"netocomisionliquidfactura", Col::kKnownOther},
      {"exentocomisionliquidfactura", Col::kKnownOther},
      {"ivacomisionliquidfactura", Col::kKnownOther},
      {"ivafueradeplazo", Col::kKnownOther},
      {"numidentreceptorextranjero", Col::kKnownOther},
      {"nacionalidadreceptorextranjero", Col::kKnownOther},
      {"creditoempresaconstructora", Col::kKnownOther},
      {"imptozonafrancaley18211", Col::kKnownOther},
      {"garantiadepenvases", Col::kKnownOther},
      {"indicadorventasincosto", Col::kKnownOther},
      {"indicadorservicioperiodico", Col::kKnownOther},
      {"montonofacturable", Col::kKnownOther},
      {"totalmontoperiodo", Col::kKnownOther},
      {"ventapasajestransportenacional", Col::kKnownOther},
      {"ventapasajestransporteinternacional", Col::kKnownOther},
      {"numerointerno", Col::kKnownOther},
      {"codigosucursal", Col::kKnownOther},
  };
  return m;
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : 9;
    if (n == 9 || i + n >= s.size() + (n == 0 ? 1 : 0)) return false;
    for (std::size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += n + 1;
  }
  return true;
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

struct RowBuilder {
  const std::vector<std::string>& header;
  const std::vector<std::optional<Col>>& cols;
  std::vector<RowIssue>& errors;
  int line;
  bool bad = false;

  void fail(std::size_t i, const std::string& why) {
    errors.push_back({line, trim(header[i]), why});
    bad = true;
  }
};

}  // namespace

ParseResult parse_csv(std::string_view input, std::string_view state) {
  ParseResult result;
  std::string text = valid_utf8(input) ? std::string(input) : from_latin1(input);
  auto records = books::detail::read_csv(text);
  if (records.empty()) {
    result.errors.push_back({1, "", "empty file: no RCV header"});
    return result;
  }
  const auto& header_cells = records.front().cells;
  std::vector<std::string> header;
  for (const auto& h : header_cells) header.push_back(trim(h));
  // A trailing ';' on the header gives an empty last name: not a column.
  while (!header.empty() && header.back().empty()) header.pop_back();
  result.columns = header;

  std::vector<std::optional<Col>> cols(header.size());
  std::set<std::string> keys;
  for (std::size_t i = 0; i < header.size(); ++i) {
    std::string key = column_key(header[i]);
    keys.insert(key);
    auto it = known_columns().find(key);
    if (it != known_columns().end()) {
      cols[i] = it->second;
    } else {
      result.warnings.push_back("unknown column '" + header[i] + "' (column " + std::to_string(i + 1) +
                                "): kept in cells, not interpreted");
    }
  }
  if (keys.count("tipoventa") || keys.count("rutcliente")) {
    result.register_kind = "venta";
  } else if (keys.count("tipocompra") || keys.count("rutproveedor")) {
    result.register_kind = "compra";
  } else {
    result.errors.push_back({records.front().line, "",
                             "not an RCV header: neither 'Tipo Venta'/'Rut cliente' nor "
                             "'Tipo Compra'/'RUT Proveedor' is a column"});
    return result;
  }
  for (const char* required : {"tipodoc", "folio", "fechadocto", "montototal"}) {
    if (!keys.count(required)) {
      result.errors.push_back({records.front().line, required, "required RCV column is missing"});
      return result;
    }
  }
  const bool venta = result.register_kind == "venta";
  if (!state.empty()) {
    result.state = upper(std::string(state));
  } else if (venta) {
    result.state = "REGISTRO";
  } else if (keys.count("fechareclamo")) {
    result.state = "RECLAMADO";
  } else if (!keys.count("fechaacuse")) {
    result.state = "PENDIENTE";
  } else {
    result.state = "REGISTRO";
  }
  static const std::set<std::string> kStates = {"REGISTRO", "PENDIENTE", "NO_INCLUIR", "RECLAMADO"};
  if (!kStates.count(result.state)) {
    result.errors.push_back({0, "", "unknown RCV state '" + result.state +
                                        "' (REGISTRO, PENDIENTE, NO_INCLUIR, RECLAMADO)"});
    return result;
  }

  // Index of the last accepted row per (type, folio, rut) for continuation rows, and whether the
  // last document seen was rejected (its continuation rows then go with it).
  int last_key_line = 0;
  std::string last_key;
  bool last_bad = false;

  for (std::size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    RowBuilder b{header, cols, result.errors, rec.line};
    Row row;
    row.line = rec.line;
    row.register_kind = result.register_kind;
    row.state = result.state;
    std::size_t extra = 0;
    for (std::size_t i = header.size(); i < rec.cells.size(); ++i)
      if (!is_blank(rec.cells[i])) ++extra;
    if (extra > 0)
      result.warnings.push_back("line " + std::to_string(rec.line) + ": " + std::to_string(extra) +
                                " non-empty cell(s) beyond the header ignored");

    std::string tipo_ref_cell, folio_ref_cell;
    std::size_t tipo_ref_i = 0, folio_ref_i = 0;
    OtherTax tax;
    bool has_tax = false;
    bool nro_blank = true;
    for (std::size_t i = 0; i < header.size(); ++i) {
      std::string cell = i < rec.cells.size() ? trim(rec.cells[i]) : std::string();
      if (is_blank(cell)) continue;
      row.cells[header[i]] = cell;
      if (!cols[i]) continue;
      auto int_cell = [&](int digits, const char* what) -> long long {
        auto v = books::detail::parse_int(cell, digits);
        if (!v) {
          b.fail(i, "'" + cell + "' is not " + what);
          return 0;
        }
        return *v;
      };
      switch (*cols[i]) {
        case Col::kNro:
          nro_blank = false;
          row.nro = int_cell(10, "a row number");
          break;
        case Col::kTipoDoc:
          row.doc_type = static_cast<int>(int_cell(3, "a document type"));
          break;
        case Col::kTipoOperacion:
          row.operation = cell;
          break;
        case Col::kRut: {
          auto rut = Rut::try_parse(cell);
          if (!rut) b.fail(i, "'" + cell + "' is not a valid RUT");
          else row.counterpart_rut = rut->str();
          break;
        }
        case Col::kRazonSocial:
          row.counterpart_name = cell;
          break;
        case Col::kFolio: {
          row.folio = int_cell(10, "a folio (1 to 10 digits)");
          if (!b.bad && row.folio <= 0) b.fail(i, "folio must be positive");
          break;
        }
        case Col::kFechaDocto: {
          auto d = books::detail::parse_date(cell);
          if (!d) b.fail(i, "'" + cell + "' is not a date dd/mm/yyyy");
          else row.issue_date = *d;
          break;
        }
        case Col::kFechaRecepcion:
        case Col::kFechaAcuse:
        case Col::kFechaReclamo: {
          auto d = books::detail::parse_datetime(cell);
          if (!d) {
            b.fail(i, "'" + cell + "' is not a date-time dd/mm/yyyy HH:MM:SS");
            break;
          }
          if (*cols[i] == Col::kFechaRecepcion) row.received_at = *d;
          else if (*cols[i] == Col::kFechaAcuse) row.acknowledged_at = *d;
          else row.claimed_at = *d;
          break;
        }
        case Col::kMontoExento: row.exempt = int_cell(18, "an amount"); break;
        case Col::kMontoNeto: row.net = int_cell(18, "an amount"); break;
        case Col::kMontoIva: row.vat = int_cell(18, "an amount"); break;
        case Col::kMontoIvaNoRec: row.vat_non_recoverable = int_cell(18, "an amount"); break;
        case Col::kCodIvaNoRec: row.vat_non_recoverable_code = static_cast<int>(int_cell(2, "a code")); break;
        case Col::kMontoTotal: row.total = int_cell(18, "an amount"); break;
        case Col::kCodOtroImp:
          if (!books::detail::parse_int(cell, 4)) b.fail(i, "'" + cell + "' is not a tax code");
          tax.code = cell;
          has_tax = true;
          break;
        case Col::kValorOtroImp:
          tax.amount = int_cell(18, "an amount");
          has_tax = true;
          break;
        case Col::kTasaOtroImp: {
          auto v = books::detail::parse_decimal(cell);
          if (!v) b.fail(i, "'" + cell + "' is not a rate");
          else tax.rate = *v;
          has_tax = true;
          break;
        }
        case Col::kTipoDocRef:
          if (cell == "0") break;  // SII writes 0 for "no reference"
          tipo_ref_cell = cell;
          tipo_ref_i = i;
          break;
        case Col::kFolioDocRef:
          folio_ref_cell = cell;
          folio_ref_i = i;
          break;
        case Col::kKnownOther:
          break;
      }
    }
    if (has_tax && tax.code.empty() && !b.bad) {
      b.errors.push_back({rec.line, "Codigo Otro Impuesto", "an other-tax amount or rate without its code"});
      b.bad = true;
    }

    // Continuation row: no Nro, same document as the row before; it only adds other taxes.
    const std::string key = std::to_string(row.doc_type) + "/" + std::to_string(row.folio) + "/" +
                            row.counterpart_rut;
    if (nro_blank && !b.bad && row.doc_type != 0 && row.folio != 0 && key == last_key) {
      if (last_bad) continue;  // its document was rejected; the error is already reported
      auto it = std::find_if(result.rows.rbegin(), result.rows.rend(),
                             [&](const Row& x) { return x.line == last_key_line; });
      if (it != result.rows.rend() && has_tax) it->other_taxes.push_back(tax);
      continue;
    }

    // References: a type with one or more folios separated by '-'.
    if (!tipo_ref_cell.empty() || !folio_ref_cell.empty()) {
      auto ref_type = books::detail::parse_int(tipo_ref_cell, 3);
      if (!tipo_ref_cell.empty() && !ref_type) {
        b.fail(tipo_ref_i, "'" + tipo_ref_cell + "' is not a document type");
      } else if (tipo_ref_cell.empty()) {
        b.fail(folio_ref_i, "a reference folio without its document type");
      } else if (folio_ref_cell.empty()) {
        b.fail(tipo_ref_i, "reference type " + tipo_ref_cell + " without a folio");
      } else {
        std::size_t start = 0;
        while (start <= folio_ref_cell.size()) {
          auto dash = folio_ref_cell.find('-', start);
          std::string part = trim(folio_ref_cell.substr(start, dash == std::string::npos ? std::string::npos : dash - start));
          auto f = books::detail::parse_int(part, 10);
          if (!f || *f <= 0) {
            b.fail(folio_ref_i, "'" + part + "' in '" + folio_ref_cell +
                                    "' is not a folio (1 to 10 digits)");
            break;
          }
          row.references.push_back({static_cast<int>(*ref_type), *f});
          if (dash == std::string::npos) break;
          start = dash + 1;
        }
      }
    }
    if (!b.bad) {
      for (auto [col, ok, name] : {std::tuple{"Tipo Doc", row.doc_type != 0, ""},
                                   std::tuple{"Folio", row.folio != 0, ""},
                                   std::tuple{"Fecha Docto", !row.issue_date.empty(), ""},
                                   std::tuple{"RUT", !row.counterpart_rut.empty(), ""}}) {
        (void)name;
        if (!ok) {
          std::string column = col;
          if (column == "RUT") column = venta ? "Rut cliente" : "RUT Proveedor";
          result.errors.push_back({rec.line, column, "required value is missing"});
          b.bad = true;
        }
      }
    }
    if (has_tax && !b.bad) row.other_taxes.push_back(tax);
    if (!venta) row.issuer_rut = row.counterpart_rut;
    last_key = key;
    last_key_line = rec.line;
    last_bad = b.bad;
    if (!b.bad) result.rows.push_back(std::move(row));
  }
  return result;
}

}  // namespace dte::rcv
