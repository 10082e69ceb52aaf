// The tolerant CSV reader, value parsers, and CSV -> book entries.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>

#include "books_internal.hpp"
#include "dte/books.hpp"
#include "dte/rut.hpp"

namespace dte::books {
namespace detail {

std::vector<CsvRecord> read_csv(std::string_view text, char separator) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<CsvRecord> out;
  CsvRecord rec;
  std::string cell;
  bool quoted = false;
  bool any = false;  // the record has a non-empty cell or a separator
  int line = 1;
  rec.line = 1;
  auto end_cell = [&] {
    rec.cells.push_back(std::move(cell));
    cell.clear();
  };
  auto end_record = [&] {
    end_cell();
    if (any) out.push_back(std::move(rec));
    rec = CsvRecord{};
    any = false;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          cell += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        cell += c;
      }
      continue;
    }
    if (c == '"' && cell.find_first_not_of(" \t") == std::string::npos) {
      quoted = true;
      cell.clear();
      any = true;
    } else if (c == separator) {
      end_cell();
      any = true;
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      // CRLF: the LF ends the record
    } else if (c == '\n') {
      end_record();
      ++line;
      rec.line = line;
    } else {
      cell += c;
      if (c != ' ' && c != '\t') any = true;
    }
  }
  if (any || !cell.empty()) end_record();
  return out;
}

std::string trim(std::string_view s) {
  auto sp = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\xA0'; };
  while (!s.empty() && sp(s.front())) s.remove_prefix(1);
  while (!s.empty() && sp(s.back())) s.remove_suffix(1);
  return std::string(s);
}

std::string column_key(std::string_view header) {
  std::string out;
  for (char c : header) {
    auto u = static_cast<unsigned char>(c);
    if (u < 128 && std::isalnum(u)) out += static_cast<char>(std::tolower(u));
  }
  return out;
}

bool is_blank(std::string_view cell) {
  std::string t = trim(cell);
  return t.empty() || t == "-" || t == "null" || t == "NULL" || t == "\"\"";
}

std::optional<long long> parse_int(std::string_view cell, int max_digits) {
  std::string t = trim(cell);
  if (t.empty()) return std::nullopt;
  std::size_t start = (t[0] == '-' || t[0] == '+') ? 1 : 0;
  if (start == t.size() || t.size() - start > static_cast<std::size_t>(max_digits)) return std::nullopt;
  for (std::size_t i = start; i < t.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(t[i]))) return std::nullopt;
  return std::stoll(t);
}

std::optional<double> parse_decimal(std::string_view cell) {
  std::string t = trim(cell);
  if (t.empty() || t.size() > 32) return std::nullopt;
  std::replace(t.begin(), t.end(), ',', '.');
  int dots = 0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (c == '.') {
      ++dots;
    } else if (!(std::isdigit(static_cast<unsigned char>(c)) || (i == 0 && c == '-'))) {
      return std::nullopt;
    }
  }
  if (dots > 1 || t == "." || t == "-") return std::nullopt;
  return std::strtod(t.c_str(), nullptr);
}

namespace {

bool valid_ymd(int y, int m, int d) {
  if (y < 1900 || y > 2100 || m < 1 || m > 12 || d < 1) return false;
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int max = days[m - 1];
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) max = 29;
  return d <= max;
}

bool digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::string two(int v) { return (v < 10 ? "0" : "") + std::to_string(v); }

}  // namespace

std::optional<std::string> parse_date(std::string_view cell) {
  std::string t = trim(cell);
  int y = 0, m = 0, d = 0;
  if (t.size() == 10 && t[2] == '/' && t[5] == '/' && digits(t.substr(0, 2)) &&
      digits(t.substr(3, 2)) && digits(t.substr(6, 4))) {
    d = std::stoi(t.substr(0, 2));
    m = std::stoi(t.substr(3, 2));
    y = std::stoi(t.substr(6, 4));
  } else if (t.size() == 10 && t[4] == '-' && t[7] == '-' && digits(t.substr(0, 4)) &&
             digits(t.substr(5, 2)) && digits(t.substr(8, 2))) {
    y = std::stoi(t.substr(0, 4));
    m = std::stoi(t.substr(5, 2));
    d = std::stoi(t.substr(8, 2));
  } else {
    return std::nullopt;
  }
  if (!valid_ymd(y, m, d)) return std::nullopt;
  return std::to_string(y) + "-" + two(m) + "-" + two(d);
}

std::optional<std::string> parse_datetime(std::string_view cell) {
  std::string t = trim(cell);
  if (t.size() < 10) return std::nullopt;
  auto date = parse_date(t.substr(0, 10));
  if (!date) return std::nullopt;
  std::string rest = trim(t.substr(10));
  if (!rest.empty() && rest[0] == 'T') rest = rest.substr(1);
  if (rest.empty()) return *date + "T00:00:00";
  if (rest.size() == 5) rest += ":00";
  if (rest.size() != 8 || rest[2] != ':' || rest[5] != ':' || !digits(rest.substr(0, 2)) ||
      !digits(rest.substr(3, 2)) || !digits(rest.substr(6, 2)))
    return std::nullopt;
  if (std::stoi(rest.substr(0, 2)) > 23 || std::stoi(rest.substr(3, 2)) > 59 ||
      std::stoi(rest.substr(6, 2)) > 59)
    return std::nullopt;
  return *date + "T" + rest;
}

bool is_iso_date(std::string_view s) {
  return s.size() == 10 && s[4] == '-' && parse_date(s).has_value();
}

long long percent_of(long long amount, double rate) {
  const long long hundredths = std::llround(rate * 100.0);
  const long long scaled = amount * hundredths;  // amount x rate x 100
  // Half up (away from zero for credits), exact in integers: SII rounds 0.5 up.
  return scaled >= 0 ? (scaled + 5000) / 10000 : -((-scaled + 5000) / 10000);
}

}  // namespace detail

namespace {

using detail::is_blank;
using detail::trim;

enum class Kind { kInt, kDecimal, kText, kDate, kRut };

struct ColumnSpec {
  const char* path;  // "MntNeto", "OtrosImp.TasaImp", "IVANoRec.CodIVANoRec", "@FctProp"
  Kind kind;
};

// LibreDTE's purchase-book CSV: positional columns with Spanish names.
const ColumnSpec kLibreDteCompras[] = {
    {"TpoDoc", Kind::kInt},           {"NroDoc", Kind::kInt},
    {"RUTDoc", Kind::kRut},           {"TasaImp", Kind::kDecimal},
    {"RznSoc", Kind::kText},          {"TpoImp", Kind::kInt},
    {"FchDoc", Kind::kDate},          {"Anulado", Kind::kText},
    {"MntExe", Kind::kInt},           {"MntNeto", Kind::kInt},
    {"MntIVA", Kind::kInt},           {"IVANoRec.CodIVANoRec", Kind::kInt},
    {"IVANoRec.MntIVANoRec", Kind::kInt}, {"IVAUsoComun", Kind::kInt},
    {"OtrosImp.CodImp", Kind::kInt},  {"OtrosImp.TasaImp", Kind::kDecimal},
    {"OtrosImp.MntImp", Kind::kInt},  {"MntSinCred", Kind::kInt},
    {"MntActivoFijo", Kind::kInt},    {"MntIVAActivoFijo", Kind::kInt},
    {"IVANoRetenido", Kind::kInt},    {"TabPuros", Kind::kInt},
    {"TabCigarrillos", Kind::kInt},   {"TabElaborado", Kind::kInt},
    {"ImpVehiculo", Kind::kInt},      {"CdgSIISucur", Kind::kInt},
    {"NumInt", Kind::kText},          {"Emisor", Kind::kInt},
    {"MntTotal", Kind::kInt},         {"@FctProp", Kind::kDecimal},
};

// XSD-named columns (IECV detail) and where they go.
const std::map<std::string, ColumnSpec>& xsd_cv_columns() {
  static const std::map<std::string, ColumnSpec> m = {
      {"TpoDoc", {"TpoDoc", Kind::kInt}},
      {"Emisor", {"Emisor", Kind::kInt}},
      {"IndFactCompra", {"IndFactCompra", Kind::kInt}},
      {"NroDoc", {"NroDoc", Kind::kInt}},
      {"Anulado", {"Anulado", Kind::kText}},
      {"Operacion", {"Operacion", Kind::kInt}},
      {"TpoImp", {"TpoImp", Kind::kInt}},
      {"TasaImp", {"TasaImp", Kind::kDecimal}},
      {"NumInt", {"NumInt", Kind::kText}},
      {"IndServicio", {"IndServicio", Kind::kInt}},
      {"IndSinCosto", {"IndSinCosto", Kind::kInt}},
      {"FchDoc", {"FchDoc", Kind::kDate}},
      {"CdgSIISucur", {"CdgSIISucur", Kind::kInt}},
      {"RUTDoc", {"RUTDoc", Kind::kRut}},
      {"RznSoc", {"RznSoc", Kind::kText}},
      {"NumId", {"Extranjero.NumId", Kind::kText}},
      {"Nacionalidad", {"Extranjero.Nacionalidad", Kind::kText}},
      {"TpoDocRef", {"TpoDocRef", Kind::kInt}},
      {"FolioDocRef", {"FolioDocRef", Kind::kInt}},
      {"MntExe", {"MntExe", Kind::kInt}},
      {"MntNeto", {"MntNeto", Kind::kInt}},
      {"MntIVA", {"MntIVA", Kind::kInt}},
      {"MntActivoFijo", {"MntActivoFijo", Kind::kInt}},
      {"MntIVAActivoFijo", {"MntIVAActivoFijo", Kind::kInt}},
      {"CodIVANoRec", {"IVANoRec.CodIVANoRec", Kind::kInt}},
      {"MntIVANoRec", {"IVANoRec.MntIVANoRec", Kind::kInt}},
      {"IVAUsoComun", {"IVAUsoComun", Kind::kInt}},
      {"IVAFueraPlazo", {"IVAFueraPlazo", Kind::kInt}},
      {"IVAPropio", {"IVAPropio", Kind::kInt}},
      {"IVATerceros", {"IVATerceros", Kind::kInt}},
      {"Ley18211", {"Ley18211", Kind::kInt}},
      {"CodImp", {"OtrosImp.CodImp", Kind::kInt}},
      {"MntImp", {"OtrosImp.MntImp", Kind::kInt}},
      {"MntSinCred", {"MntSinCred", Kind::kInt}},
      {"IVARetTotal", {"IVARetTotal", Kind::kInt}},
      {"IVARetParcial", {"IVARetParcial", Kind::kInt}},
      {"CredEC", {"CredEC", Kind::kInt}},
      {"DepEnvase", {"DepEnvase", Kind::kInt}},
      {"RutEmisor", {"Liquidaciones.RutEmisor", Kind::kRut}},
      {"ValComNeto", {"Liquidaciones.ValComNeto", Kind::kInt}},
      {"ValComExe", {"Liquidaciones.ValComExe", Kind::kInt}},
      {"ValComIVA", {"Liquidaciones.ValComIVA", Kind::kInt}},
      {"MntTotal", {"MntTotal", Kind::kInt}},
      {"IVANoRetenido", {"IVANoRetenido", Kind::kInt}},
      {"MntNoFact", {"MntNoFact", Kind::kInt}},
      {"MntPeriodo", {"MntPeriodo", Kind::kInt}},
      {"PsjNac", {"PsjNac", Kind::kInt}},
      {"PsjInt", {"PsjInt", Kind::kInt}},
      {"TabPuros", {"TabPuros", Kind::kInt}},
      {"TabCigarrillos", {"TabCigarrillos", Kind::kInt}},
      {"TabElaborado", {"TabElaborado", Kind::kInt}},
      {"ImpVehiculo", {"ImpVehiculo", Kind::kInt}},
      {"FctProp", {"@FctProp", Kind::kDecimal}},
  };
  return m;
}

const std::map<std::string, ColumnSpec>& xsd_guia_columns() {
  static const std::map<std::string, ColumnSpec> m = {
      {"Folio", {"Folio", Kind::kInt}},         {"Anulado", {"Anulado", Kind::kInt}},
      {"Operacion", {"Operacion", Kind::kInt}}, {"TpoOper", {"TpoOper", Kind::kInt}},
      {"FchDoc", {"FchDoc", Kind::kDate}},      {"RUTDoc", {"RUTDoc", Kind::kRut}},
      {"RznSoc", {"RznSoc", Kind::kText}},      {"MntNeto", {"MntNeto", Kind::kInt}},
      {"TasaImp", {"TasaImp", Kind::kDecimal}}, {"IVA", {"IVA", Kind::kInt}},
      {"MntTotal", {"MntTotal", Kind::kInt}},   {"MntModificado", {"MntModificado", Kind::kInt}},
      {"TpoDocRef", {"TpoDocRef", Kind::kInt}}, {"FolioDocRef", {"FolioDocRef", Kind::kInt}},
      {"FchDocRef", {"FchDocRef", Kind::kDate}},
  };
  return m;
}

// Stores `value` at `path` in the entry: "A.B" puts B in the object A, or in the single element
// of the list A for the repeated groups (IVANoRec, OtrosImp).
void put(json& entry, json& extra, const std::string& path, json value) {
  if (path[0] == '@') {
    extra[path.substr(1)] = std::move(value);
    return;
  }
  auto dot = path.find('.');
  if (dot == std::string::npos) {
    entry[path] = std::move(value);
    return;
  }
  std::string group = path.substr(0, dot);
  std::string field = path.substr(dot + 1);
  if (group == "IVANoRec" || group == "OtrosImp") {
    if (!entry.contains(group)) entry[group] = json::array({json::object()});
    entry[group][0][field] = std::move(value);
  } else {
    entry[group][field] = std::move(value);
  }
}

}  // namespace

CsvEntries entries_from_csv(std::string_view csv, std::string_view kind) {
  CsvEntries out;
  const bool guia = kind == "guia";
  if (!guia && kind != "cv") {
    out.issues.push_back({0, "", "unknown book kind '" + std::string(kind) + "' (cv or guia)"});
    return out;
  }
  auto records = detail::read_csv(csv);
  if (records.empty()) return out;
  const auto& header = records.front().cells;
  std::vector<std::optional<ColumnSpec>> specs(header.size());
  const bool libredte_compras = !guia && header.size() >= 29 && trim(header[0]) == "Tipo Doc" &&
                                trim(header[1]) == "Folio";
  const auto& named = guia ? xsd_guia_columns() : xsd_cv_columns();
  bool after_codimp = false;
  for (std::size_t i = 0; i < header.size(); ++i) {
    std::string name = trim(header[i]);
    if (libredte_compras) {
      if (i < std::size(kLibreDteCompras)) specs[i] = kLibreDteCompras[i];
    } else if (!guia && name == "TasaImp" && after_codimp) {
      specs[i] = ColumnSpec{"OtrosImp.TasaImp", Kind::kDecimal};  // the rate of the other tax
    } else if (auto it = named.find(name); it != named.end()) {
      specs[i] = it->second;
    }
    if (name == "CodImp") after_codimp = true;
    if (!specs[i] && !name.empty()) {
      out.issues.push_back({records.front().line, name, "unknown column, ignored"});
    }
  }

  for (std::size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    json entry = json::object();
    json extra = json::object();
    bool bad = false;
    for (std::size_t i = 0; i < rec.cells.size(); ++i) {
      const std::string cell = trim(rec.cells[i]);
      if (is_blank(cell)) continue;
      if (i >= specs.size()) {
        out.issues.push_back({rec.line, "", "cell " + std::to_string(i + 1) +
                                                " is beyond the header's " +
                                                std::to_string(header.size()) + " columns"});
        bad = true;
        continue;
      }
      if (!specs[i]) continue;
      const ColumnSpec& spec = *specs[i];
      const std::string column = trim(header[i]);
      auto fail = [&](const std::string& why) {
        out.issues.push_back({rec.line, column, "'" + cell + "' " + why});
        bad = true;
      };
      switch (spec.kind) {
        case Kind::kInt: {
          auto v = detail::parse_int(cell);
          if (!v) fail("is not a whole number");
          else put(entry, extra, spec.path, *v);
          break;
        }
        case Kind::kDecimal: {
          auto v = detail::parse_decimal(cell);
          if (!v) fail("is not a number");
          else if (*v == std::floor(*v)) put(entry, extra, spec.path, static_cast<long long>(*v));
          else put(entry, extra, spec.path, *v);
          break;
        }
        case Kind::kDate: {
          auto v = detail::parse_date(cell);
          if (!v) fail("is not a date (YYYY-MM-DD or DD/MM/YYYY)");
          else put(entry, extra, spec.path, *v);
          break;
        }
        case Kind::kRut: {
          auto v = Rut::try_parse(cell);
          if (!v) fail("is not a valid RUT");
          else put(entry, extra, spec.path, v->str());
          break;
        }
        case Kind::kText:
          put(entry, extra, spec.path, cell);
          break;
      }
    }
    if (entry.empty() && !bad) continue;
    const char* key = guia ? "Folio" : "NroDoc";
    if (!bad && !guia && !entry.contains("TpoDoc")) {
      out.issues.push_back({rec.line, "TpoDoc", "missing document type"});
      bad = true;
    }
    if (!bad && !entry.contains(key)) {
      out.issues.push_back({rec.line, key, "missing folio"});
      bad = true;
    }
    if (bad) continue;
    for (auto& [k, v] : extra.items()) out.extra[k] = v;
    out.detalle.push_back(std::move(entry));
  }
  return out;
}

}  // namespace dte::books
