// The rule engine: what SII is known to reject (errors) or to alter (warnings), as values.
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "document_internal.hpp"
#include "dte/errors.hpp"
#include "dte/rut.hpp"
#include "dte/xml.hpp"

namespace dte {
namespace {

using detail::as_number;
using detail::has;
using detail::int_of;
using detail::Kind;
using detail::Node;
using detail::Picked;
using detail::num;
using Sev = Finding::Severity;

// A list member as the rules read it, without a copy: an array's items, a single value as a list
// of one, nothing for null or absent.
class List {
 public:
  explicit List(const json* v) {
    if (!v) return;
    if (v->is_array())
      items_ = &v->get_ref<const json::array_t&>();
    else if (!v->is_null())
      one_ = v;
  }
  std::size_t size() const { return items_ ? items_->size() : one_ ? 1 : 0; }
  bool empty() const { return size() == 0; }
  const json* operator[](std::size_t i) const { return items_ ? &(*items_)[i] : one_; }

  struct Iterator {
    const List* list;
    std::size_t at;
    const json* operator*() const { return (*list)[at]; }
    Iterator& operator++() {
      ++at;
      return *this;
    }
    bool operator!=(const Iterator& other) const { return at != other.at; }
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, size()}; }

 private:
  const json::array_t* items_ = nullptr;
  const json* one_ = nullptr;
};

class Rules {
 public:
  // `normalized_here`: `doc` is normalize()'s output as it returned it (see totals()).
  Rules(const json& doc, const RuleContext& ctx, bool normalized_here)
      : doc_(doc), ctx_(ctx), normalized_here_(normalized_here) {}

  std::vector<Finding> run();

 private:
  void add(Sev sev, std::string code, std::string field, std::string message) {
    out_.push_back(Finding{sev, std::move(code), std::move(field), std::move(message)});
  }
  void error(std::string code, std::string field, std::string message) {
    add(Sev::kError, std::move(code), std::move(field), std::move(message));
  }
  void warn(std::string code, std::string field, std::string message) {
    add(Sev::kWarning, std::move(code), std::move(field), std::move(message));
  }

  const json& obj(const json& parent, const char* key) const {
    static const json empty = json::object();
    const json* it = detail::member(parent, key);
    return it && it->is_object() ? *it : empty;
  }
  // Lists may still be single objects when the input was not normalised.
  static List items(const json& parent, const char* key) { return List(detail::member(parent, key)); }
  std::string text(const json& o, const char* key) const {
    const json* found = detail::member(o, key);
    if (!found) return {};
    const json& v = *found;
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number()) return detail::format_number(*as_number(v), 6);
    return {};
  }
  bool filled(const json& o, const char* key) const { return filled(detail::member(o, key)); }
  static bool filled(const json* found) {
    if (!found) return false;
    const json& v = *found;
    if (v.is_string()) {
      for (char c : v.get_ref<const std::string&>())
        if (c != ' ' && c != '\t' && c != '\n') return true;
      return false;
    }
    return !v.is_null();
  }

  void require(const json& o, const char* key, const std::string& path, const char* what) {
    if (!filled(o, key)) error("field.required", path + "." + key, std::string(what) + " is required");
  }
  std::optional<Rut> rut(const json& o, const char* key, const std::string& path,
                         const char* what, bool required);
  bool check_date(const json& o, const char* key, const std::string& path, bool required);

  void id_doc();
  void issuer();
  void receiver();
  void lines();
  void discounts();
  void references();
  void totals();
  void texts(const json& value, const Node& node, const detail::FieldPath* path);
  void text_limits(const std::string& s, const Node& node, const detail::FieldPath* path);

  const json& doc_;
  const RuleContext& ctx_;
  const bool normalized_here_;
  std::vector<Finding> out_;
  int tipo_ = 0;
  bool boleta_ = false;
  bool export_ = false;
  std::string today_;
  std::string fch_emis_;
};

bool valid_date(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (s[i] < '0' || s[i] > '9') return false;
  int y = std::atoi(std::string(s.substr(0, 4)).c_str());
  int m = (s[5] - '0') * 10 + (s[6] - '0');
  int d = (s[8] - '0') * 10 + (s[9] - '0');
  if (m < 1 || m > 12 || d < 1) return false;
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int max = kDays[m - 1];
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) max = 29;
  // SII's FechaType: 2000-01-01 .. 2050-12-31.
  return d <= max && y >= 2000 && y <= 2050;
}

std::size_t utf8_chars(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

std::optional<Rut> Rules::rut(const json& o, const char* key, const std::string& path,
                              const char* what, bool required) {
  if (!filled(o, key)) {
    if (required) error("field.required", path + "." + key, std::string(what) + " is required");
    return std::nullopt;
  }
  std::string value = text(o, key);
  auto r = Rut::try_parse(value);
  if (!r) {
    error("rut.invalid", path + "." + key,
          std::string(what) + " '" + value + "' is not a valid RUT (format or check digit)");
    return std::nullopt;
  }
  if (value != r->str())
    warn("rut.format", path + "." + key,
         std::string(what) + " is written as '" + value + "'; SII's form is '" + r->str() + "'");
  return r;
}

bool Rules::check_date(const json& o, const char* key, const std::string& path, bool required) {
  if (!filled(o, key)) {
    if (required) error("field.required", path + "." + key, std::string(key) + " is required");
    return false;
  }
  std::string v = text(o, key);
  if (!valid_date(v)) {
    error("date.format", path + "." + key,
          "'" + v + "' is not a date YYYY-MM-DD between 2000-01-01 and 2050-12-31");
    return false;
  }
  return true;
}

void Rules::id_doc() {
  const json& id = obj(obj(doc_, "Encabezado"), "IdDoc");
  static const std::string p = "Encabezado.IdDoc";
  long long folio = 0;
  if (!has(id, "Folio")) {
    error("field.required", p + ".Folio", "Folio is required");
  } else {
    auto f = as_number(id["Folio"]);
    if (!f || *f != std::floor(*f) || *f < 1 || *f > 9999999999.0L) {
      error("folio.invalid", p + ".Folio", "Folio must be a whole number from 1 to 9999999999");
    } else {
      folio = static_cast<long long>(*f);
    }
  }
  if (folio > 0 && ctx_.caf_folio_from > 0 &&
      (folio < ctx_.caf_folio_from || folio > ctx_.caf_folio_to)) {
    error("caf.folio_out_of_range", p + ".Folio",
          "folio " + std::to_string(folio) + " is outside the CAF range " +
              std::to_string(ctx_.caf_folio_from) + "-" + std::to_string(ctx_.caf_folio_to));
  }
  if (ctx_.caf_doc_type != 0 && ctx_.caf_doc_type != tipo_) {
    error("caf.wrong_type", p + ".TipoDTE",
          "the CAF is for type " + std::to_string(ctx_.caf_doc_type) + ", the document is type " +
              std::to_string(tipo_));
  }
  if (!ctx_.caf_expires_on.empty() && today_ > ctx_.caf_expires_on) {
    error("caf.expired", p + ".Folio",
          "the CAF expired on " + ctx_.caf_expires_on + "; its folios can no longer be used");
  }
  if (check_date(id, "FchEmis", p, true)) {
    fch_emis_ = text(id, "FchEmis");
    if (fch_emis_ > today_)
      error("date.future", p + ".FchEmis",
            "FchEmis " + fch_emis_ + " is after today (" + today_ + "); SII rejects it");
  }
  if (check_date(id, "FchVenc", p, false) && !fch_emis_.empty() && text(id, "FchVenc") < fch_emis_)
    warn("date.due_before_issue", p + ".FchVenc", "FchVenc is before FchEmis");
  check_date(id, "FchCancel", p, false);
  check_date(id, "PeriodoDesde", p, false);
  check_date(id, "PeriodoHasta", p, false);

  if (has(id, "FmaPago")) {
    long long f = int_of(id["FmaPago"]);
    if (f < 1 || f > 3) error("field.value", p + ".FmaPago", "FmaPago must be 1 (contado), 2 (crédito) or 3 (sin costo)");
  }
  if (tipo_ == 52) {
    long long ind = has(id, "IndTraslado") ? int_of(id["IndTraslado"]) : 0;
    if (ind < 1 || ind > 9)
      error("guia.ind_traslado", p + ".IndTraslado",
            "a guía de despacho needs IndTraslado 1..9 (1 sale, 2 sale to confirm, 3 consignment, "
            "4 free delivery, 5 internal transfer, 6 other, 7 return, 8 export transfer, 9 export sale)");
    if (has(id, "TipoDespacho")) {
      long long t = int_of(id["TipoDespacho"]);
      if (t < 1 || t > 3) error("field.value", p + ".TipoDespacho", "TipoDespacho must be 1, 2 or 3");
    }
  } else if (has(id, "IndTraslado") && !export_) {
    error("field.not_allowed", p + ".IndTraslado", "IndTraslado is only for guías de despacho (52)");
  }
  if (boleta_) {
    long long s = has(id, "IndServicio") ? int_of(id["IndServicio"]) : 0;
    if (s < 1 || s > 4)
      error("boleta.ind_servicio", p + ".IndServicio",
            "a boleta needs IndServicio 1..4 (1 periodic services, 2 periodic home services, "
            "3 sales and services, 4 shows by third parties)");
  }
}

void Rules::issuer() {
  const json& em = obj(obj(doc_, "Encabezado"), "Emisor");
  static const std::string p = "Encabezado.Emisor";
  auto r = rut(em, "RUTEmisor", p, "RUTEmisor", true);
  if (r && !ctx_.caf_issuer_rut.empty()) {
    auto caf = Rut::try_parse(ctx_.caf_issuer_rut);
    if (!caf || !(*caf == *r))
      error("caf.wrong_rut", p + ".RUTEmisor",
            "the CAF belongs to " + ctx_.caf_issuer_rut + ", the issuer is " + r->str());
  }
  if (boleta_) {
    require(em, "RznSocEmisor", p, "the issuer's name (RznSocEmisor)");
    require(em, "GiroEmisor", p, "the issuer's line of business (GiroEmisor)");
  } else {
    require(em, "RznSoc", p, "the issuer's name (RznSoc)");
    require(em, "GiroEmis", p, "the issuer's line of business (GiroEmis)");
    auto actecos = items(em, "Acteco");
    if (actecos.empty()) {
      error("field.required", p + ".Acteco", "at least one Acteco (economic activity code) is required");
    } else if (actecos.size() > 4) {
      error("list.too_long", p + ".Acteco", "at most 4 Acteco codes are allowed");
    }
    for (std::size_t i = 0; i < actecos.size(); ++i) {
      auto a = as_number(*actecos[i]);
      if (!a || *a < 1 || *a > 999999 || *a != std::floor(*a))
        error("field.value", p + ".Acteco[" + std::to_string(i) + "]",
              "Acteco must be SII's numeric activity code (up to 6 digits)");
    }
  }
  require(em, "DirOrigen", p, "the issuer's address (DirOrigen)");
  require(em, "CmnaOrigen", p, "the issuer's comuna (CmnaOrigen)");
}

void Rules::receiver() {
  const json& enc = obj(doc_, "Encabezado");
  static const std::string p = "Encabezado.Receptor";
  if (!has(enc, "Receptor")) {
    error("field.required", p, boleta_ ? "Receptor with RUTRecep (66666666-6 for an anonymous buyer) is required"
                                       : "the receiver (Receptor) is required");
    return;
  }
  const json& rc = obj(enc, "Receptor");
  auto r = rut(rc, "RUTRecep", p, "RUTRecep", true);
  if (r) {
    if (r->body() == 66666666 && !boleta_)
      error("receiver.generic_rut", p + ".RUTRecep",
            "the generic RUT 66666666-6 is only accepted on boletas");
    if (r->body() == 55555555 && !export_)
      error("receiver.export_rut", p + ".RUTRecep",
            "RUT 55555555-5 (foreign receiver) is only for export documents (110, 111, 112)");
    if (export_ && r->body() != 55555555)
      warn("receiver.export_rut", p + ".RUTRecep",
           "export documents normally go to a foreign receiver with RUT 55555555-5");
  }
  if (boleta_) return;
  require(rc, "RznSocRecep", p, "the receiver's name (RznSocRecep)");
  if (export_) {
    if (r && r->body() == 55555555 && !has(rc, "Extranjero"))
      warn("receiver.extranjero", p + ".Extranjero",
           "a foreign receiver should state Extranjero (NumId and/or Nacionalidad)");
    return;
  }
  require(rc, "GiroRecep", p, "the receiver's line of business (GiroRecep)");
  require(rc, "DirRecep", p, "the receiver's address (DirRecep)");
  require(rc, "CmnaRecep", p, "the receiver's comuna (CmnaRecep)");
}

void Rules::lines() {
  auto det = items(doc_, "Detalle");
  const std::size_t limit = boleta_ ? 1000 : 60;
  if (det.empty()) error("lines.count", "Detalle", "the document needs at least one line (Detalle)");
  if (det.size() > limit)
    error("lines.count", "Detalle",
          "at most " + std::to_string(limit) + " lines are allowed, the document has " +
              std::to_string(det.size()));
  const long double tolerance = export_ ? 0.01L : 0.5L;
  // The members read below, by position in `kKeys`; the first seven are checked for sign.
  enum { kQty, kPrc, kMonto, kDescMonto, kRecMonto, kDescPct, kRecPct, kNmb, kCodImp, kIndExe };
  static constexpr std::array<std::string_view, 10> kKeys = {
      "QtyItem",      "PrcItem",    "MontoItem", "DescuentoMonto", "RecargoMonto",
      "DescuentoPct", "RecargoPct", "NmbItem",   "CodImpAdic",     "IndExe"};
  for (std::size_t i = 0; i < det.size(); ++i) {
    const json& l = *det[i];
    // The line's path, spelt out for a finding only.
    auto p = [i] { return "Detalle[" + std::to_string(i) + "]"; };
    if (!l.is_object()) {
      error("input.type", p(), "a line must be an object");
      continue;
    }
    const Picked f(l, kKeys);
    if (!filled(f[kNmb])) error("field.required", p() + ".NmbItem", "the item name (NmbItem) is required");
    for (std::size_t k = kQty; k <= kRecPct; ++k) {
      if (f.has(k) && f.num(k) < 0)
        error("amount.negative", p() + "." + std::string(kKeys[k]),
              std::string(kKeys[k]) + " must not be negative");
    }
    if (f.has(kDescPct) && f.num(kDescPct) > 100)
      error("field.value", p() + ".DescuentoPct", "DescuentoPct must be at most 100");
    if (f.has(kPrc) && f.has(kMonto)) {
      const long double qty = f.has(kQty) ? f.num(kQty) : 1;
      const long double base = export_ ? detail::round_to(qty * f.num(kPrc), 2)
                                       : static_cast<long double>(
                                             detail::round_half_up(qty * f.num(kPrc)));
      long double desc = f.num(kDescMonto);
      if (!f.has(kDescMonto) && f.has(kDescPct))
        desc = detail::round_to(base * f.num(kDescPct) / 100, export_ ? 2 : 0);
      long double rec = f.num(kRecMonto);
      if (!f.has(kRecMonto) && f.has(kRecPct))
        rec = detail::round_to(base * f.num(kRecPct) / 100, export_ ? 2 : 0);
      const long double expected = base - desc + rec;
      const long double stated_amount = f.num(kMonto);
      if (std::fabs(expected - stated_amount) > tolerance)
        error("line.monto_mismatch", p() + ".MontoItem",
              "MontoItem " + detail::format_number(stated_amount, 4) + " differs from QtyItem x PrcItem - discount + surcharge = " +
                  detail::format_number(expected, 4));
    }
    if (const json* codes = f[kCodImp]) {
      auto check = [&](const json& c) {
        long long code = int_of(c, -1);
        if (!detail::tax_code(static_cast<int>(code)))
          error("tax.unknown_code", p() + ".CodImpAdic",
                "CodImpAdic " + std::to_string(code) + " is not a code of SII's tax table");
      };
      for (const json* c : List(codes)) check(*c);
    }
    if (f.has(kIndExe)) {
      long long ind = int_of(*f[kIndExe]);
      if (ind < 1 || ind > 6) error("field.value", p() + ".IndExe", "IndExe must be 1..6");
    }
  }
}

void Rules::discounts() {
  auto drs = items(doc_, "DscRcgGlobal");
  if (drs.size() > 20)
    error("list.too_long", "DscRcgGlobal", "at most 20 global discounts/surcharges are allowed");
  for (std::size_t i = 0; i < drs.size(); ++i) {
    const json& d = *drs[i];
    const std::string p = "DscRcgGlobal[" + std::to_string(i) + "]";
    std::string mov = text(d, "TpoMov");
    if (mov != "D" && mov != "R") error("field.value", p + ".TpoMov", "TpoMov must be D (discount) or R (surcharge)");
    std::string val = text(d, "TpoValor");
    if (val != "%" && val != "$") error("field.value", p + ".TpoValor", "TpoValor must be % or $");
    if (!has(d, "ValorDR") || num(d, "ValorDR") <= 0)
      error("field.value", p + ".ValorDR", "ValorDR must be a positive amount or percentage");
    else if (val == "%" && num(d, "ValorDR") > 100)
      error("field.value", p + ".ValorDR", "a percentage above 100 is not allowed");
  }
}

void Rules::references() {
  auto refs = items(doc_, "Referencia");
  if (refs.size() > 40) error("list.too_long", "Referencia", "at most 40 references are allowed");
  int with_codref = 0;
  int single_kind = 0;  // CodRef 1 or 2 present
  long long first_codref = 0;
  for (std::size_t i = 0; i < refs.size(); ++i) {
    const json& r = *refs[i];
    const std::string p = "Referencia[" + std::to_string(i) + "]";
    if (!boleta_) {
      require(r, "TpoDocRef", p, "TpoDocRef");
      require(r, "FolioRef", p, "FolioRef");
      check_date(r, "FchRef", p, true);
    }
    if (has(r, "CodRef")) {
      long long c = int_of(r["CodRef"]);
      if (!boleta_ && (c < 1 || c > 3))
        error("field.value", p + ".CodRef", "CodRef must be 1 (annul), 2 (correct text) or 3 (correct amounts)");
      ++with_codref;
      if (c == 1 || c == 2) ++single_kind;
      if (!first_codref) first_codref = c;
    }
  }
  const bool note = tipo_ == 56 || tipo_ == 61 || tipo_ == 111 || tipo_ == 112;
  if (note && with_codref == 0)
    error("reference.required", "Referencia",
          "a debit/credit note needs a Referencia to the document it modifies, with CodRef 1 "
          "(annul), 2 (correct text) or 3 (correct amounts)");
  if (note && single_kind > 0 && with_codref > 1)
    error("reference.single", "Referencia",
          "a note that annuls (CodRef 1) or corrects text (CodRef 2) must reference exactly one document");
  if (note && first_codref == 2) {
    const json& t = obj(obj(doc_, "Encabezado"), "Totales");
    for (const char* k : {"MntNeto", "MntExe", "IVA", "MntTotal"}) {
      if (num(t, k) != 0)
        error("reference.text_correction_amounts", std::string("Encabezado.Totales.") + k,
              "a note that only corrects text (CodRef 2) must have zero amounts");
    }
  }
}

void Rules::totals() {
  const json& enc = obj(doc_, "Encabezado");
  const json& t = obj(enc, "Totales");
  static const std::string p = "Encabezado.Totales";
  // The members read below, by position in `kKeys`: the first six are checked for sign.
  enum { kNeto, kExe, kIva, kTotal, kTasa, kIvaNoRet, kMoneda };
  static constexpr std::array<std::string_view, 7> kKeys = {
      "MntNeto", "MntExe", "IVA", "MntTotal", "TasaIVA", "IVANoRet", "TpoMoneda"};
  const Picked f(t, kKeys);
  if (!f.has(kTotal)) {
    error("field.required", p + ".MntTotal", "MntTotal is required");
    return;
  }
  for (std::size_t k = kNeto; k <= kIvaNoRet; ++k) {
    if (f.has(k) && f.num(k) < 0)
      error("amount.negative", p + "." + std::string(kKeys[k]),
            std::string(kKeys[k]) + " must not be negative");
  }
  auto imps = items(t, "ImptoReten");
  if (imps.size() > 20) error("list.too_long", p + ".ImptoReten", "at most 20 ImptoReten are allowed");
  if (export_ && !filled(f[kMoneda]))
    error("export.currency", p + ".TpoMoneda", "an export document must state its currency (TpoMoneda)");
  if (is_exempt_type(tipo_) && (f.num(kNeto) != 0 || f.num(kIva) != 0))
    error("totals.exempt_has_vat", p + ".IVA", "an exempt document cannot carry MntNeto or IVA");

  // IVA against the stated net amount (SII: half-up).
  if (!is_exempt_type(tipo_) && f.has(kNeto) && !boleta_) {
    const long double tasa = f.has(kTasa) ? f.num(kTasa) : 19;
    if (f.num(kNeto) != 0 && tasa != 19)
      warn("totals.tasa_iva", p + ".TasaIVA", "TasaIVA is normally 19");
    const long long iva = detail::round_half_up(f.num(kNeto) * tasa / 100);
    if (static_cast<long long>(f.num(kIva)) != iva)
      error("totals.iva_mismatch", p + ".IVA",
            "IVA " + detail::format_number(f.num(kIva), 0) + " should be " + std::to_string(iva) +
                " (MntNeto x TasaIVA / 100, rounded half up)");
  }
  // MntTotal against its stated parts.
  long double additional = 0, retained = 0;
  for (std::size_t i = 0; i < imps.size(); ++i) {
    const json& imp = *imps[i];
    const std::string ip = p + ".ImptoReten[" + std::to_string(i) + "]";
    long long code = has(imp, "TipoImp") ? int_of(imp["TipoImp"], -1) : -1;
    const detail::TaxCode* tc = detail::tax_code(static_cast<int>(code));
    if (!tc) {
      error("tax.unknown_code", ip + ".TipoImp", "TipoImp is not a code of SII's tax table");
      continue;
    }
    if (num(imp, "MontoImp") <= 0) error("field.value", ip + ".MontoImp", "MontoImp must be positive");
    (tc->retention ? retained : additional) += num(imp, "MontoImp");
  }
  if (!export_) {
    const long double parts = f.num(kNeto) + f.num(kExe) + f.num(kIva) + additional - retained;
    if (!boleta_ && std::fabs(parts - f.num(kTotal)) > 0.5L)
      error("totals.mnt_total_mismatch", p + ".MntTotal",
            "MntTotal " + detail::format_number(f.num(kTotal), 0) +
                " does not add up: MntNeto + MntExe + IVA + additional taxes - retentions = " +
                detail::format_number(parts, 0));
    if (boleta_ && std::fabs(f.num(kNeto) + f.num(kExe) + f.num(kIva) - f.num(kTotal)) > 0.5L)
      error("totals.mnt_total_mismatch", p + ".MntTotal",
            "MntTotal does not add up: MntNeto + MntExe + IVA");
  }

  // The stated amounts against what the lines give: the document normalised again with only
  // what its lines cannot give kept in Totales. normalize()'s own output needs no second pass
  // (its shapes are already done): its totals come straight from its lines.
  json expected;
  try {
    if (normalized_here_) {
      expected = detail::totals_from_lines(doc_);
    } else {
      json fresh = doc_;
      if (fresh.contains("Encabezado") && fresh["Encabezado"].is_object()) {
        json& ft = fresh["Encabezado"]["Totales"];
        ft = detail::kept_totals(ft);
      }
      expected = obj(obj(normalize(fresh), "Encabezado"), "Totales");
    }
  } catch (const DteError& e) {
    error(e.code(), "", e.what());
    return;
  }
  const Picked et(expected, kKeys);
  const long double tolerance = export_ ? 0.01L : 0.5L;
  for (std::size_t i = kNeto; i <= kTotal; ++i) {
    const long double want = et.num(i);
    const long double have = f.num(i);
    if (std::fabs(want - have) > tolerance) {
      const std::string k(kKeys[i]);
      std::string code = std::string("totals.") + k;
      error(code == "totals.MntNeto"   ? "totals.mnt_neto_mismatch"
            : code == "totals.MntExe"  ? "totals.mnt_exe_mismatch"
            : code == "totals.IVA"     ? "totals.iva_lines_mismatch"
                                       : "totals.mnt_total_lines_mismatch",
            p + "." + k,
            std::string(k) + " " + detail::format_number(have, 4) + " differs from the lines: " +
                detail::format_number(want, 4));
    }
  }
  // Lines with a specific tax whose amount the input must state.
  for (const json* l : items(doc_, "Detalle")) {
    for (const json* c : items(*l, "CodImpAdic")) {
      const detail::TaxCode* tc = detail::tax_code(static_cast<int>(int_of(*c, -1)));
      if (!tc || tc->rate >= 0) continue;
      bool stated = false;
      for (const json* imp : imps)
        if (int_of(imp->value("TipoImp", json()), -1) == tc->code) stated = true;
      if (!stated)
        error("tax.amount_missing", p + ".ImptoReten",
              "tax code " + std::to_string(tc->code) +
                  " is a specific tax without a rate: state its amount in Totales.ImptoReten");
    }
  }
}

void Rules::texts(const json& value, const Node& node, const detail::FieldPath* path) {
  if (value.is_array()) {
    std::size_t i = 0;
    for (const json& item : value.get_ref<const json::array_t&>()) {
      const detail::FieldPath at{path, {}, i++, true};
      texts(item, node, &at);
    }
    return;
  }
  if (node.kind != Kind::kGroup) {
    if (node.kind == Kind::kText && value.is_string())
      text_limits(value.get_ref<const std::string&>(), node, path);
    return;
  }
  if (!value.is_object()) return;
  // normalize() writes the members in schema order: each is then found by going on from the
  // last one found (by name search otherwise). No group names two children alike (a test
  // checks), so that is the child find() gives.
  const Node* next = node.children.data();
  const Node* const last = next + node.children.size();
  for (const auto& m : value.get_ref<const json::object_t&>()) {
    const detail::FieldPath member{path, m.first};
    const Node* c = nullptr;
    for (const Node* n = next; n != last; ++n) {
      if (n->name_len == m.first.size() && n->name[0] == m.first[0] &&
          std::memcmp(n->name, m.first.data(), n->name_len) == 0) {
        c = n;
        next = n + 1;
        break;
      }
    }
    if (!c) c = node.find(m.first);
    if (!c) {
      error("input.unknown_field", detail::path_text(&member),
            "unknown field (not in SII's schema for this document type)");
      continue;
    }
    const json& v = m.second;
    if (c->kind == Kind::kGroup || v.is_array())
      texts(v, *c, &member);
    else if (c->kind == Kind::kText && v.is_string())
      text_limits(v.get_ref<const std::string&>(), *c, &member);
  }
}

void Rules::text_limits(const std::string& s, const Node& node, const detail::FieldPath* path) {
  // Most texts are what latin1_safe keeps as it is: no copy to compare for those.
  std::string converted;
  const bool unchanged = detail::latin1_unchanged(s);
  if (!unchanged) {
    converted = latin1_safe(s);
    if (converted != s)
      warn("text.not_latin1", detail::path_text(path),
           "characters ISO-8859-1 cannot hold (or control characters) will be removed");
  }
  const std::string& safe = unchanged ? s : converted;
  // A text no longer in bytes than the limit is within it in characters.
  const auto max_len = static_cast<std::size_t>(node.max_len);
  if (node.max_len > 0 && safe.size() > max_len && utf8_chars(safe) > max_len)
    warn("text.truncated", detail::path_text(path),
         "longer than SII's " + std::to_string(node.max_len) + " characters: it will be cut");
}

std::vector<Finding> Rules::run() {
  const json& id = obj(obj(doc_, "Encabezado"), "IdDoc");
  if (!has(id, "TipoDTE")) {
    error("type.missing", "Encabezado.IdDoc.TipoDTE", "TipoDTE is required");
    return out_;
  }
  tipo_ = static_cast<int>(int_of(id["TipoDTE"], 0));
  if (!is_supported_type(tipo_)) {
    error("type.unsupported", "Encabezado.IdDoc.TipoDTE",
          "TipoDTE " + text(id, "TipoDTE") +
              " is not supported (33, 34, 39, 41, 43, 46, 52, 56, 61, 110, 111, 112)");
    return out_;
  }
  boleta_ = is_boleta(tipo_);
  export_ = is_export(tipo_);
  today_ = ctx_.today.empty() ? today_date() : ctx_.today;
  id_doc();
  issuer();
  receiver();
  lines();
  discounts();
  references();
  totals();
  texts(doc_, detail::schema_for(tipo_), nullptr);
  return out_;
}

}  // namespace

std::vector<Finding> check_rules(const json& normalized, const RuleContext& context) {
  return Rules(normalized, context, /*normalized_here=*/false).run();
}

std::vector<Finding> detail::check_normalized_rules(const json& normalized,
                                                    const RuleContext& context) {
  return Rules(normalized, context, /*normalized_here=*/true).run();
}

}  // namespace dte
