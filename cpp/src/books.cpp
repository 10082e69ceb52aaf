// IECV (LibroCompraVenta), Libro de Guías and ConsumoFolios: normalise the detail, compute the
// summaries from it, write the XML in XSD order, sign over the inner ID element.
#include "dte/books.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "books_internal.hpp"
#include "dte/errors.hpp"
#include "dte/rut.hpp"
#include "dte/signer.hpp"
#include "dte/xml.hpp"

namespace dte::books {
namespace {

using detail::is_iso_date;
using detail::percent_of;

// ---------------------------------------------------------------- input access

[[noreturn]] void field_error(const std::string& where, const std::string& why) {
  throw DocumentError("libro.field", where + ": " + why);
}

bool present(const json& o, const std::string& key) {
  if (!o.is_object() || !o.contains(key)) return false;
  const json& v = o[key];
  return !(v.is_null() || (v.is_string() && v.get<std::string>().empty()));
}

long long as_int(const json& v, const std::string& where) {
  if (v.is_number_integer()) return v.get<long long>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == std::floor(d) && std::fabs(d) < 1e18) return static_cast<long long>(d);
  }
  if (v.is_string()) {
    auto p = detail::parse_int(v.get<std::string>());
    if (p) return *p;
  }
  field_error(where, "expected a whole number, got " + v.dump());
}

double as_decimal(const json& v, const std::string& where) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    auto p = detail::parse_decimal(v.get<std::string>());
    if (p) return *p;
  }
  field_error(where, "expected a number, got " + v.dump());
}

std::string as_text(const json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return v.dump();
  field_error(where, "expected text, got " + v.dump());
}

long long get_int(const json& o, const std::string& key, const std::string& where, long long fallback = 0) {
  return present(o, key) ? as_int(o[key], where + "." + key) : fallback;
}

std::string rut_of(const json& v, const std::string& where) {
  auto r = Rut::try_parse(as_text(v, where));
  if (!r) field_error(where, "'" + as_text(v, where) + "' is not a valid RUT");
  return r->str();
}

std::string date_of(const json& v, const std::string& where) {
  auto d = detail::parse_date(as_text(v, where));
  if (!d) field_error(where, "'" + as_text(v, where) + "' is not a date YYYY-MM-DD");
  return *d;
}

// A rate as JSON: whole numbers stay integers ("19", not "19.0").
json rate_json(double r) {
  if (r == std::floor(r)) return static_cast<long long>(r);
  return std::round(r * 100.0) / 100.0;
}

std::string rate_text(const json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v.get<double>());
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return rate_text(v);
  return v.dump();
}

json as_list(const json& v) {
  if (v.is_null()) return json::array();
  if (v.is_array()) return v;
  return json::array({v});
}

// ---------------------------------------------------------------- XML text

void el(std::string& out, const std::string& name, const std::string& value) {
  out += "<" + name + ">" + escape_text(value) + "</" + name + ">\n";
}

void el(std::string& out, const std::string& name, const json& value) { el(out, name, text(value)); }

// Writes the listed keys of `o` that are present, in the given (XSD) order.
void fields(std::string& out, const json& o, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (present(o, k)) el(out, k, o[k]);
}

const std::set<std::string> kTipoOperacion = {"COMPRA", "VENTA"};
const std::set<std::string> kTipoLibro = {"MENSUAL", "ESPECIAL", "RECTIFICA"};

// TipoEnvio and NroSegmento of a book's Caratula: TOTAL (one complete send), or PARCIAL / FINAL
// segments numbered from 1 (PROTOCOL.md section 11; Formato IECV). AJUSTE is not supported.
std::string envio_of(const json& cin, json& c) {
  std::string envio = present(cin, "TipoEnvio") ? as_text(cin["TipoEnvio"], "Caratula.TipoEnvio") : "TOTAL";
  if (envio != "TOTAL" && envio != "PARCIAL" && envio != "FINAL")
    throw DocumentError("libro.unsupported", "Caratula.TipoEnvio '" + envio +
                                                 "': TOTAL, or PARCIAL/FINAL segments, are supported");
  c["TipoEnvio"] = envio;
  if (envio == "TOTAL") {
    if (present(cin, "NroSegmento"))
      throw DocumentError("libro.caratula", "Caratula.NroSegmento only goes with TipoEnvio PARCIAL or FINAL");
    return envio;
  }
  long long nro = present(cin, "NroSegmento") ? as_int(cin["NroSegmento"], "Caratula.NroSegmento") : 0;
  if (nro < 1 || nro > 999999)
    throw DocumentError("libro.caratula", "Caratula.NroSegmento (1..999999) is required for TipoEnvio " + envio);
  c["NroSegmento"] = nro;
  return envio;
}

struct Caratula {
  json out = json::object();
};

std::string require_text(const json& c, const char* key) {
  if (!present(c, key))
    throw DocumentError("libro.caratula", std::string("Caratula.") + key + " is required");
  return as_text(c[key], std::string("Caratula.") + key);
}

void check_cert(const Certificate& cert, const std::string& tmst) {
  if (!cert.has_private_key())
    throw CertificateError("cert.no_private_key", "the certificate has no private key to sign with");
  cert.check_valid_at(tmst);
}

std::string rut_envia(const json& c, const Certificate& cert) {
  std::string value = present(c, "RutEnvia") ? as_text(c["RutEnvia"], "Caratula.RutEnvia")
                                             : cert.info().signer_rut;
  if (value.empty())
    throw DocumentError("libro.caratula",
                        "Caratula.RutEnvia is empty and the certificate carries no RUT");
  auto r = Rut::try_parse(value);
  if (!r) throw DocumentError("libro.caratula", "Caratula.RutEnvia '" + value + "' is not a valid RUT");
  return r->str();
}

bool is_timestamp(std::string_view s) {
  return s.size() == 19 && is_iso_date(s.substr(0, 10)) && s[10] == 'T' && s[13] == ':' && s[16] == ':';
}

std::string timestamp(const SignOptions& options) {
  std::string t = options.tmst.empty() ? now_timestamp() : options.tmst;
  if (!is_timestamp(t))
    throw DocumentError("libro.caratula", "timestamp '" + t + "' is not YYYY-MM-DDTHH:MM:SS");
  return t;
}

// `body_utf8` is the document up to (not including) the root's closing tag. Signs the element
// with `id` and puts the Signature last in the root; the rest stays the bytes that were digested.
std::string sign_text(const std::string& body_utf8, const std::string& root_name,
                      const std::string& id, const Certificate& cert, const SignOptions& options) {
  std::string text = to_latin1(body_utf8);
  const std::size_t signature_at = text.size();
  text += "</" + root_name + ">\n";
  ParseLimits limits;
  limits.max_bytes = std::max(limits.max_bytes, text.size() + 1);
  XmlDocPtr doc = parse_xml(text, limits);
  register_ids(doc.get());
  xmlNode* root = xmlDocGetRootElement(doc.get());
  append_signature(doc.get(), root, id, cert);
  xmlNode* signature = nullptr;
  for (xmlNode* c = root->last; c; c = c->prev) {
    if (c->type == XML_ELEMENT_NODE) {
      signature = c;
      break;
    }
  }
  if (!signature || !xmlStrEqual(signature->name, BAD_CAST "Signature"))
    throw SignatureError("sign.failed", "the signature was not appended to " + root_name);
  text.insert(signature_at, serialize_node(signature) + "\n");
  if (options.schemas) {
    ValidationResult v = options.schemas->validate_bytes(text, limits);
    if (!v.valid) {
      std::string why;
      for (std::size_t i = 0; i < v.errors.size() && i < 5; ++i)
        why += (why.empty() ? "" : "; ") + std::string("line ") +
               std::to_string(v.errors[i].line) + ": " + v.errors[i].message;
      throw DocumentError("libro.schema", root_name + " does not validate against " + v.schema +
                                              ": " + why);
    }
  }
  return text;
}

std::string clean_name(const json& v, const std::string& where, std::size_t max) {
  return truncate_chars(latin1_safe(detail::trim(as_text(v, where))), max);
}

// ---------------------------------------------------------------- IECV

// Detail fields in XSD order; the groups are handled where they fall.
const char* const kCvHead[] = {"TpoDoc", "Emisor", "IndFactCompra", "NroDoc", "Anulado",
                               "Operacion", "TpoImp", "TasaImp", "NumInt", "IndServicio",
                               "IndSinCosto", "FchDoc", "CdgSIISucur", "RUTDoc", "RznSoc"};
const char* const kCvAmountsA[] = {"TpoDocRef", "FolioDocRef", "MntExe", "MntNeto", "MntIVA",
                                   "MntActivoFijo", "MntIVAActivoFijo"};
const char* const kCvAmountsB[] = {"IVAUsoComun", "IVAFueraPlazo", "IVAPropio", "IVATerceros",
                                   "Ley18211"};
const char* const kCvAmountsC[] = {"MntSinCred", "IVARetTotal", "IVARetParcial", "CredEC",
                                   "DepEnvase"};
const char* const kCvTail[] = {"MntTotal", "IVANoRetenido", "MntNoFact", "MntPeriodo", "PsjNac",
                               "PsjInt", "TabPuros", "TabCigarrillos", "TabElaborado",
                               "ImpVehiculo"};

const std::set<std::string>& cv_known_fields() {
  static const std::set<std::string> s = [] {
    std::set<std::string> k;
    for (auto* f : kCvHead) k.insert(f);
    for (auto* f : kCvAmountsA) k.insert(f);
    for (auto* f : kCvAmountsB) k.insert(f);
    for (auto* f : kCvAmountsC) k.insert(f);
    for (auto* f : kCvTail) k.insert(f);
    k.insert({"Extranjero", "IVANoRec", "OtrosImp", "Liquidaciones"});
    return k;
  }();
  return s;
}

// Other-tax codes that SII's formats treat as retentions: they are withheld by the buyer, so they
// reduce the amount payable instead of adding to it (15 = IVA retenido total, the rest are the
// partial retentions of Res. 55 / 3 and their kind).
bool is_retention(long long code) {
  static const std::set<long long> r = {15, 30, 31, 32, 33, 34, 36, 37, 38, 39, 41, 47, 48};
  return r.count(code) > 0;
}

json normalize_cv_caratula(const json& in) {
  if (!in.is_object()) throw DocumentError("libro.caratula", "Caratula must be an object");
  json c = json::object();
  const std::string emisor = require_text(in, "RutEmisorLibro");
  auto rut = Rut::try_parse(emisor);
  if (!rut)
    throw DocumentError("libro.caratula", "Caratula.RutEmisorLibro '" + emisor + "' is not a valid RUT");
  c["RutEmisorLibro"] = rut->str();
  if (present(in, "RutEnvia")) c["RutEnvia"] = in["RutEnvia"];
  std::string periodo = require_text(in, "PeriodoTributario");
  if (!is_iso_date(periodo + "-01"))
    throw DocumentError("libro.caratula", "Caratula.PeriodoTributario '" + periodo + "' is not YYYY-MM");
  c["PeriodoTributario"] = periodo;
  std::string fch = require_text(in, "FchResol");
  if (!is_iso_date(fch))
    throw DocumentError("libro.caratula", "Caratula.FchResol '" + fch + "' is not YYYY-MM-DD");
  c["FchResol"] = fch;
  long long nro = present(in, "NroResol") ? as_int(in["NroResol"], "Caratula.NroResol") : -1;
  if (nro < 0 || nro > 999999)
    throw DocumentError("libro.caratula", "Caratula.NroResol is required (0..999999)");
  c["NroResol"] = nro;
  return c;
}

json normalize_cv_entry(const json& in, std::size_t index, bool compra) {
  const std::string where = "Detalle[" + std::to_string(index) + "]";
  if (!in.is_object()) field_error(where, "must be an object");
  for (auto& [k, v] : in.items()) {
    (void)v;
    if (!cv_known_fields().count(k)) field_error(where + "." + k, "is not a Detalle field of LibroCV");
  }
  json d = json::object();
  if (!present(in, "TpoDoc")) field_error(where + ".TpoDoc", "is required");
  if (!present(in, "NroDoc")) field_error(where + ".NroDoc", "is required");
  d["TpoDoc"] = as_int(in["TpoDoc"], where + ".TpoDoc");
  long long nro = as_int(in["NroDoc"], where + ".NroDoc");
  if (nro <= 0 || nro > 9999999999LL) field_error(where + ".NroDoc", "must be 1..9999999999");
  d["NroDoc"] = nro;
  if (present(in, "Anulado")) {
    std::string a = as_text(in["Anulado"], where + ".Anulado");
    if (a != "A") field_error(where + ".Anulado", "must be \"A\"");
    // An annulled document carries only its identity: SII rejects amounts on it.
    for (const char* k : {"Emisor", "IndFactCompra"})
      if (present(in, k)) d[k] = as_int(in[k], where + "." + k);
    d["Anulado"] = "A";
    return d;
  }
  for (const char* k : {"Emisor", "IndFactCompra", "Operacion", "TpoImp", "IndServicio",
                        "IndSinCosto", "CdgSIISucur", "TpoDocRef", "FolioDocRef"})
    if (present(in, k)) d[k] = as_int(in[k], where + "." + k);
  if (present(in, "NumInt")) d["NumInt"] = clean_name(in["NumInt"], where + ".NumInt", 10);
  if (present(in, "FchDoc")) d["FchDoc"] = date_of(in["FchDoc"], where + ".FchDoc");
  if (present(in, "RUTDoc")) d["RUTDoc"] = rut_of(in["RUTDoc"], where + ".RUTDoc");
  if (present(in, "RznSoc")) d["RznSoc"] = clean_name(in["RznSoc"], where + ".RznSoc", 50);
  if (present(in, "Extranjero")) {
    const json& e = in["Extranjero"];
    json x = json::object();
    if (present(e, "NumId")) x["NumId"] = clean_name(e["NumId"], where + ".Extranjero.NumId", 20);
    if (present(e, "Nacionalidad"))
      x["Nacionalidad"] = clean_name(e["Nacionalidad"], where + ".Extranjero.Nacionalidad", 3);
    if (!x.empty()) d["Extranjero"] = x;
  }
  auto copy_amount = [&](const char* k) {
    if (present(in, k)) d[k] = as_int(in[k], where + "." + k);
  };
  for (const char* k : kCvAmountsA) copy_amount(k);
  for (const char* k : kCvAmountsB) copy_amount(k);
  for (const char* k : kCvAmountsC) copy_amount(k);
  for (const char* k : kCvTail) copy_amount(k);

  const long long neto = d.value("MntNeto", 0LL);
  double tasa = present(in, "TasaImp") ? as_decimal(in["TasaImp"], where + ".TasaImp") : -1;
  if (tasa < 0 && neto != 0) tasa = 19;  // SII's IVA rate is the default for a taxed amount
  if (tasa >= 0) d["TasaImp"] = rate_json(tasa);
  const long long iva = tasa > 0 ? percent_of(neto, tasa) : 0;

  // The document's IVA is split: IVA de uso común and stated non-recoverable amounts are not part
  // of the recoverable MntIVA; a non-recoverable code without amount takes what is left of it
  // (Formato IECV). MntIVA stated in the input is kept as given.
  long long rest = iva - d.value("IVAUsoComun", 0LL);
  bool iva_moved = false;
  if (present(in, "IVANoRec")) {
    json list = json::array();
    std::size_t i = 0;
    const json entries = as_list(in["IVANoRec"]);
    for (const json& e : entries)
      if (present(e, "MntIVANoRec")) rest -= as_int(e["MntIVANoRec"], where + ".IVANoRec.MntIVANoRec");
    for (const json& e : entries) {
      const std::string w = where + ".IVANoRec[" + std::to_string(i++) + "]";
      if (!present(e, "CodIVANoRec")) field_error(w + ".CodIVANoRec", "is required");
      json x = json::object();
      const long long code = as_int(e["CodIVANoRec"], w + ".CodIVANoRec");
      if (code < 1 || (code > 4 && code != 9))
        field_error(w + ".CodIVANoRec", "must be 1, 2, 3, 4 or 9 (LibroCV_v10.xsd), not " + std::to_string(code));
      x["CodIVANoRec"] = code;
      if (present(e, "MntIVANoRec")) {
        x["MntIVANoRec"] = as_int(e["MntIVANoRec"], w + ".MntIVANoRec");
      } else {
        x["MntIVANoRec"] = iva_moved ? 0LL : std::max(rest, 0LL);
        iva_moved = true;
      }
      list.push_back(x);
    }
    if (list.size() > 5) field_error(where + ".IVANoRec", "at most 5 entries");
    d["IVANoRec"] = list;
  }
  if (!d.contains("MntIVA") && (neto != 0 || tasa >= 0)) d["MntIVA"] = iva_moved ? 0 : std::max(rest, 0LL);

  if (present(in, "OtrosImp")) {
    json list = json::array();
    std::size_t i = 0;
    for (const json& e : as_list(in["OtrosImp"])) {
      const std::string w = where + ".OtrosImp[" + std::to_string(i++) + "]";
      if (!present(e, "CodImp")) field_error(w + ".CodImp", "is required");
      json x = json::object();
      x["CodImp"] = as_int(e["CodImp"], w + ".CodImp");
      double rate = present(e, "TasaImp") ? as_decimal(e["TasaImp"], w + ".TasaImp") : -1;
      if (rate >= 0) x["TasaImp"] = rate_json(rate);
      if (present(e, "MntImp")) x["MntImp"] = as_int(e["MntImp"], w + ".MntImp");
      else if (rate >= 0) x["MntImp"] = percent_of(neto, rate);
      else field_error(w + ".MntImp", "is required when TasaImp is not given");
      list.push_back(x);
    }
    if (list.size() > 20) field_error(where + ".OtrosImp", "at most 20 entries");
    d["OtrosImp"] = list;
  }
  if (present(in, "Liquidaciones")) {
    const json& l = in["Liquidaciones"];
    json x = json::object();
    if (!present(l, "RutEmisor")) field_error(where + ".Liquidaciones.RutEmisor", "is required");
    x["RutEmisor"] = rut_of(l["RutEmisor"], where + ".Liquidaciones.RutEmisor");
    for (const char* k : {"ValComNeto", "ValComExe", "ValComIVA"})
      if (present(l, k)) x[k] = as_int(l[k], where + ".Liquidaciones." + k);
    d["Liquidaciones"] = x;
  }

  if (!d.contains("MntTotal")) {
    long long total = d.value("MntExe", 0LL) + neto + d.value("MntIVA", 0LL);
    if (d.contains("IVANoRec"))
      for (const json& e : d["IVANoRec"]) total += e["MntIVANoRec"].get<long long>();
    total += d.value("IVAUsoComun", 0LL) + d.value("MntSinCred", 0LL) + d.value("Ley18211", 0LL);
    if (d.contains("OtrosImp")) {
      for (const json& e : d["OtrosImp"]) {
        long long code = e["CodImp"].get<long long>();
        long long amount = e["MntImp"].get<long long>();
        // A retention is shown as a tax and withheld at once: it leaves the total unchanged.
        if (!is_retention(code)) total += amount;
      }
    }
    total -= d.value("IVARetTotal", 0LL) + d.value("IVARetParcial", 0LL) + d.value("CredEC", 0LL);
    total += d.value("DepEnvase", 0LL);
    d["MntTotal"] = total;
  }
  (void)compra;
  // Order the keys as the XSD wants them, so the normalised JSON reads like the XML.
  json ordered = json::object();
  auto take = [&](const char* k) {
    if (d.contains(k)) ordered[k] = d[k];
  };
  for (auto* k : kCvHead) take(k);
  take("Extranjero");
  for (auto* k : kCvAmountsA) take(k);
  take("IVANoRec");
  for (auto* k : kCvAmountsB) take(k);
  take("OtrosImp");
  for (auto* k : kCvAmountsC) take(k);
  take("Liquidaciones");
  for (auto* k : kCvTail) take(k);
  return ordered;
}

struct Sum {
  bool seen = false;
  long long total = 0;
  long long ops = 0;
  void add(long long v) {
    seen = true;
    total += v;
    if (v != 0) ++ops;
  }
};

json totals_for(int tpo, const std::vector<const json*>& docs, bool compra, double fct_prop) {
  long long tot_doc = 0, tot_anulado = 0;
  std::map<std::string, Sum> s;
  std::map<long long, Sum> no_rec;
  std::map<long long, Sum> otros;
  Sum liq_neto, liq_exe, liq_iva;
  bool liq = false;
  for (const json* p : docs) {
    const json& d = *p;
    if (d.contains("Anulado")) {
      ++tot_anulado;
      continue;
    }
    ++tot_doc;
    for (const char* k : {"MntExe", "MntNeto", "MntIVA", "MntActivoFijo", "MntIVAActivoFijo",
                          "IVAUsoComun", "IVAFueraPlazo", "IVAPropio", "IVATerceros", "Ley18211",
                          "MntSinCred", "IVARetTotal", "IVARetParcial", "CredEC", "DepEnvase",
                          "MntTotal", "IVANoRetenido", "MntNoFact", "MntPeriodo", "PsjNac",
                          "PsjInt", "TabPuros", "TabCigarrillos", "TabElaborado", "ImpVehiculo"})
      if (d.contains(k)) s[k].add(d[k].get<long long>());
    if (d.contains("IVANoRec"))
      for (const json& e : d["IVANoRec"])
        no_rec[e["CodIVANoRec"].get<long long>()].add(e["MntIVANoRec"].get<long long>());
    if (d.contains("OtrosImp"))
      for (const json& e : d["OtrosImp"]) otros[e["CodImp"].get<long long>()].add(e["MntImp"].get<long long>());
    if (d.contains("Liquidaciones")) {
      liq = true;
      const json& l = d["Liquidaciones"];
      if (l.contains("ValComNeto")) liq_neto.add(l["ValComNeto"].get<long long>());
      if (l.contains("ValComExe")) liq_exe.add(l["ValComExe"].get<long long>());
      if (l.contains("ValComIVA")) liq_iva.add(l["ValComIVA"].get<long long>());
    }
  }
  auto total = [&](const char* k) { return s.count(k) ? s[k].total : 0LL; };
  auto ops = [&](const char* k) { return s.count(k) ? s[k].ops : 0LL; };
  auto seen = [&](const char* k) { return s.count(k) && s[k].seen; };

  json t = json::object();
  t["TpoDoc"] = tpo;
  t["TotDoc"] = tot_doc;
  if (tot_anulado > 0) t["TotAnulado"] = tot_anulado;
  // Operation counts are positiveInteger in the XSD: written only when there is one.
  if (compra && ops("MntExe") > 0) t["TotOpExe"] = ops("MntExe");
  t["TotMntExe"] = total("MntExe");
  t["TotMntNeto"] = total("MntNeto");
  if (compra && ops("MntIVA") > 0) t["TotOpIVARec"] = ops("MntIVA");
  t["TotMntIVA"] = total("MntIVA");
  if (ops("MntActivoFijo") > 0 || ops("MntIVAActivoFijo") > 0) {
    t["TotOpActivoFijo"] = std::max(ops("MntActivoFijo"), ops("MntIVAActivoFijo"));
    t["TotMntActivoFijo"] = total("MntActivoFijo");
    t["TotMntIVAActivoFijo"] = total("MntIVAActivoFijo");
  }
  if (!no_rec.empty()) {
    json list = json::array();
    for (auto& [code, sum] : no_rec) {
      json x = json::object();
      x["CodIVANoRec"] = code;
      if (sum.ops > 0) x["TotOpIVANoRec"] = sum.ops;
      x["TotMntIVANoRec"] = sum.total;
      list.push_back(x);
    }
    t["TotIVANoRec"] = list;
  }
  if (ops("IVAUsoComun") > 0) {
    t["TotOpIVAUsoComun"] = ops("IVAUsoComun");
    t["TotIVAUsoComun"] = total("IVAUsoComun");
    if (fct_prop > 0) {
      t["FctProp"] = fct_prop;
      t["TotCredIVAUsoComun"] = percent_of(total("IVAUsoComun"), fct_prop);
    }
  }
  for (const char* k : {"IVAFueraPlazo", "IVAPropio", "IVATerceros", "Ley18211"})
    if (seen(k)) t[std::string("Tot") + k] = total(k);
  if (!otros.empty()) {
    json list = json::array();
    for (auto& [code, sum] : otros) {
      json x = json::object();
      x["CodImp"] = code;
      x["TotMntImp"] = sum.total;
      list.push_back(x);
    }
    t["TotOtrosImp"] = list;
  }
  if (seen("MntSinCred")) t["TotImpSinCredito"] = total("MntSinCred");
  if (ops("IVARetTotal") > 0) {
    t["TotOpIVARetTotal"] = ops("IVARetTotal");
    t["TotIVARetTotal"] = total("IVARetTotal");
  }
  if (ops("IVARetParcial") > 0) {
    t["TotOpIVARetParcial"] = ops("IVARetParcial");
    t["TotIVARetParcial"] = total("IVARetParcial");
  }
  if (seen("CredEC")) t["TotCredEC"] = total("CredEC");
  if (seen("DepEnvase")) t["TotDepEnvase"] = total("DepEnvase");
  if (liq) {
    json l = json::object();
    if (liq_neto.seen) l["TotValComNeto"] = liq_neto.total;
    if (liq_exe.seen) l["TotValComExe"] = liq_exe.total;
    if (liq_iva.seen) l["TotValComIVA"] = liq_iva.total;
    t["TotLiquidaciones"] = l;
  }
  t["TotMntTotal"] = total("MntTotal");
  if (ops("IVANoRetenido") > 0) {
    t["TotOpIVANoRetenido"] = ops("IVANoRetenido");
    t["TotIVANoRetenido"] = total("IVANoRetenido");
  }
  for (const char* k : {"MntNoFact", "MntPeriodo", "PsjNac", "PsjInt", "TabPuros",
                        "TabCigarrillos", "TabElaborado", "ImpVehiculo"}) {
    if (!seen(k)) continue;
    std::string name = k;
    if (name.rfind("Mnt", 0) == 0) name = "TotMnt" + name.substr(3);
    else name = "Tot" + name;
    t[name] = total(k);
  }
  return t;
}

void write_cv_detail(std::string& out, const json& d) {
  out += "<Detalle>\n";
  for (auto* k : kCvHead)
    if (d.contains(k)) el(out, k, k == std::string("TasaImp") ? rate_text(d[k]) : text(d[k]));
  if (d.contains("Extranjero")) {
    out += "<Extranjero>\n";
    fields(out, d["Extranjero"], {"NumId", "Nacionalidad"});
    out += "</Extranjero>\n";
  }
  for (auto* k : kCvAmountsA)
    if (d.contains(k)) el(out, k, d[k]);
  if (d.contains("IVANoRec"))
    for (const json& e : d["IVANoRec"]) {
      out += "<IVANoRec>\n";
      fields(out, e, {"CodIVANoRec", "MntIVANoRec"});
      out += "</IVANoRec>\n";
    }
  for (auto* k : kCvAmountsB)
    if (d.contains(k)) el(out, k, d[k]);
  if (d.contains("OtrosImp"))
    for (const json& e : d["OtrosImp"]) {
      out += "<OtrosImp>\n";
      el(out, "CodImp", e["CodImp"]);
      if (e.contains("TasaImp")) el(out, "TasaImp", rate_text(e["TasaImp"]));
      el(out, "MntImp", e["MntImp"]);
      out += "</OtrosImp>\n";
    }
  for (auto* k : kCvAmountsC)
    if (d.contains(k)) el(out, k, d[k]);
  if (d.contains("Liquidaciones")) {
    out += "<Liquidaciones>\n";
    fields(out, d["Liquidaciones"], {"RutEmisor", "ValComNeto", "ValComExe", "ValComIVA"});
    out += "</Liquidaciones>\n";
  }
  for (auto* k : kCvTail)
    if (d.contains(k)) el(out, k, d[k]);
  out += "</Detalle>\n";
}

void write_cv_totals(std::string& out, const json& t, const char* element = "TotalesPeriodo") {
  out += std::string("<") + element + ">\n";
  fields(out, t, {"TpoDoc", "TpoImp", "TotDoc", "TotAnulado", "TotOpExe", "TotMntExe",
                  "TotMntNeto", "TotOpIVARec", "TotMntIVA", "TotOpActivoFijo",
                  "TotMntActivoFijo", "TotMntIVAActivoFijo"});
  if (t.contains("TotIVANoRec"))
    for (const json& e : t["TotIVANoRec"]) {
      out += "<TotIVANoRec>\n";
      fields(out, e, {"CodIVANoRec", "TotOpIVANoRec", "TotMntIVANoRec"});
      out += "</TotIVANoRec>\n";
    }
  fields(out, t, {"TotOpIVAUsoComun", "TotIVAUsoComun"});
  if (t.contains("FctProp")) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", t["FctProp"].get<double>());
    el(out, "FctProp", std::string(buf));
  }
  fields(out, t, {"TotCredIVAUsoComun", "TotIVAFueraPlazo", "TotIVAPropio", "TotIVATerceros",
                  "TotLey18211"});
  if (t.contains("TotOtrosImp"))
    for (const json& e : t["TotOtrosImp"]) {
      out += "<TotOtrosImp>\n";
      fields(out, e, {"CodImp", "TotMntImp"});
      out += "</TotOtrosImp>\n";
    }
  fields(out, t, {"TotImpSinCredito", "TotOpIVARetTotal", "TotIVARetTotal", "TotOpIVARetParcial",
                  "TotIVARetParcial", "TotCredEC", "TotDepEnvase"});
  if (t.contains("TotLiquidaciones")) {
    out += "<TotLiquidaciones>\n";
    fields(out, t["TotLiquidaciones"], {"TotValComNeto", "TotValComExe", "TotValComIVA"});
    out += "</TotLiquidaciones>\n";
  }
  fields(out, t, {"TotMntTotal", "TotOpIVANoRetenido", "TotIVANoRetenido", "TotMntNoFact",
                  "TotMntPeriodo", "TotPsjNac", "TotPsjInt", "TotTabPuros", "TotTabCigarrillos",
                  "TotTabElaborado", "TotImpVehiculo"});
  out += std::string("</") + element + ">\n";
}

std::string libro_id(const std::string& prefix, const std::string& periodo, const json& caratula) {
  std::string id = prefix + "_" + periodo;
  if (caratula.contains("NroSegmento")) id += "_S" + std::to_string(caratula["NroSegmento"].get<long long>());
  return id;
}

// ---------------------------------------------------------------- Libro de Guías

json normalize_guia_entry(const json& in, std::size_t index) {
  const std::string where = "Detalle[" + std::to_string(index) + "]";
  static const std::set<std::string> known = {
      "Folio", "Anulado", "Operacion", "TpoOper", "FchDoc", "RUTDoc", "RznSoc", "MntNeto",
      "TasaImp", "IVA", "MntTotal", "MntModificado", "TpoDocRef", "FolioDocRef", "FchDocRef"};
  if (!in.is_object()) field_error(where, "must be an object");
  for (auto& [k, v] : in.items()) {
    (void)v;
    if (!known.count(k)) field_error(where + "." + k, "is not a Detalle field of LibroGuia");
  }
  json d = json::object();
  if (!present(in, "Folio")) field_error(where + ".Folio", "is required");
  long long folio = as_int(in["Folio"], where + ".Folio");
  if (folio <= 0 || folio > 9999999999LL) field_error(where + ".Folio", "must be 1..9999999999");
  d["Folio"] = folio;
  if (present(in, "Anulado")) {
    long long a = as_int(in["Anulado"], where + ".Anulado");
    if (a < 1 || a > 3) field_error(where + ".Anulado", "must be 1 (folio anulado), 2 (guía anulada) or 3");
    d["Anulado"] = a;
  }
  for (const char* k : {"Operacion", "TpoOper"})
    if (present(in, k)) d[k] = as_int(in[k], where + "." + k);
  if (present(in, "FchDoc")) d["FchDoc"] = date_of(in["FchDoc"], where + ".FchDoc");
  if (present(in, "RUTDoc")) d["RUTDoc"] = rut_of(in["RUTDoc"], where + ".RUTDoc");
  if (present(in, "RznSoc")) d["RznSoc"] = clean_name(in["RznSoc"], where + ".RznSoc", 50);
  const bool annulled_folio = d.value("Anulado", 0LL) == 1;
  if (!annulled_folio) {
    long long neto = get_int(in, "MntNeto", where);
    if (present(in, "MntNeto")) d["MntNeto"] = neto;
    double tasa = present(in, "TasaImp") ? as_decimal(in["TasaImp"], where + ".TasaImp") : -1;
    if (tasa < 0 && neto != 0) tasa = 19;
    if (tasa >= 0) d["TasaImp"] = rate_json(tasa);
    long long iva = present(in, "IVA") ? as_int(in["IVA"], where + ".IVA") : (tasa > 0 ? percent_of(neto, tasa) : 0);
    if (present(in, "IVA") || neto != 0) d["IVA"] = iva;
    d["MntTotal"] = present(in, "MntTotal") ? as_int(in["MntTotal"], where + ".MntTotal") : neto + iva;
    if (present(in, "MntModificado")) d["MntModificado"] = as_int(in["MntModificado"], where + ".MntModificado");
  }
  if (present(in, "TpoDocRef")) d["TpoDocRef"] = as_int(in["TpoDocRef"], where + ".TpoDocRef");
  if (present(in, "FolioDocRef")) d["FolioDocRef"] = as_int(in["FolioDocRef"], where + ".FolioDocRef");
  if (present(in, "FchDocRef")) d["FchDocRef"] = date_of(in["FchDocRef"], where + ".FchDocRef");
  return d;
}

// ---------------------------------------------------------------- ConsumoFolios

json ranges(std::vector<long long> folios) {
  std::sort(folios.begin(), folios.end());
  folios.erase(std::unique(folios.begin(), folios.end()), folios.end());
  json out = json::array();
  for (std::size_t i = 0; i < folios.size();) {
    std::size_t j = i;
    while (j + 1 < folios.size() && folios[j + 1] == folios[j] + 1) ++j;
    json r = json::object();
    r["Inicial"] = folios[i];
    r["Final"] = folios[j];
    out.push_back(r);
    i = j + 1;
  }
  return out;
}

}  // namespace

// ================================================================ IECV

json normalize_libro_cv(const json& input) {
  if (!input.is_object()) throw DocumentError("libro.input", "the book input must be a JSON object");
  const json& cin = input.contains("Caratula") ? input["Caratula"] : json();
  json c = normalize_cv_caratula(cin);
  std::string op = present(cin, "TipoOperacion") ? as_text(cin["TipoOperacion"], "Caratula.TipoOperacion") : "";
  if (!kTipoOperacion.count(op))
    throw DocumentError("libro.caratula", "Caratula.TipoOperacion must be COMPRA or VENTA");
  std::string tipo = present(cin, "TipoLibro") ? as_text(cin["TipoLibro"], "Caratula.TipoLibro") : "MENSUAL";
  if (!kTipoLibro.count(tipo))
    throw DocumentError("libro.caratula", "Caratula.TipoLibro must be MENSUAL, ESPECIAL or RECTIFICA");
  c["TipoOperacion"] = op;
  c["TipoLibro"] = tipo;
  const std::string envio = envio_of(cin, c);
  if (present(cin, "FolioNotificacion")) {
    long long f = as_int(cin["FolioNotificacion"], "Caratula.FolioNotificacion");
    if (f <= 0) throw DocumentError("libro.caratula", "Caratula.FolioNotificacion must be positive");
    c["FolioNotificacion"] = f;
  } else if (tipo == "ESPECIAL") {
    throw DocumentError("libro.caratula",
                        "Caratula.FolioNotificacion is required for a TipoLibro ESPECIAL book "
                        "(the number of SII's notice asking for it)");
  }
  if (present(cin, "CodAutRec")) {
    std::string code = as_text(cin["CodAutRec"], "Caratula.CodAutRec");
    if (code.size() > 10) throw DocumentError("libro.caratula", "Caratula.CodAutRec is at most 10 characters");
    c["CodAutRec"] = code;
  } else if (tipo == "RECTIFICA") {
    throw DocumentError("libro.caratula",
                        "Caratula.CodAutRec (SII's authorisation code to rectify) is required for "
                        "TipoLibro RECTIFICA");
  }
  const bool compra = op == "COMPRA";
  double fct = present(input, "FctProp") ? as_decimal(input["FctProp"], "FctProp") : 0;
  if (fct < 0 || fct >= 100) throw DocumentError("libro.field", "FctProp must be a percent 0..99.999");

  json detalle = json::array();
  std::vector<int> order;
  std::map<int, std::vector<const json*>> by_type;
  std::set<std::pair<long long, long long>> seen;
  const json list = input.contains("Detalle") ? as_list(input["Detalle"]) : json::array();
  for (std::size_t i = 0; i < list.size(); ++i) {
    json d = normalize_cv_entry(list[i], i, compra);
    auto key = std::make_pair(d["TpoDoc"].get<long long>(), d["NroDoc"].get<long long>());
    if (!seen.insert(key).second)
      field_error("Detalle[" + std::to_string(i) + "]",
                  "document " + std::to_string(key.first) + "/" + std::to_string(key.second) +
                      " appears twice");
    detalle.push_back(std::move(d));
  }
  for (const json& d : detalle) {
    int t = d["TpoDoc"].get<int>();
    if (!by_type.count(t)) order.push_back(t);
    by_type[t].push_back(&d);
  }
  if (order.size() > 40) throw DocumentError("libro.field", "at most 40 document types per book");
  json resumen = json::array();
  for (int t : order) resumen.push_back(totals_for(t, by_type[t], compra, fct));

  json out = json::object();
  out["Caratula"] = c;
  if (fct > 0) out["FctProp"] = rate_json(fct);
  if (envio == "TOTAL") {
    out["ResumenPeriodo"] = resumen;
  } else {
    // A segment: its own totals; the FINAL one also the whole period's (segment_libro_cv computes
    // them from every segment's detail and passes them in).
    for (json& t : resumen) {
      t.erase("FctProp");
      t.erase("TotCredIVAUsoComun");
      t.erase("TotImpVehiculo");
    }
    out["ResumenSegmento"] = resumen;
    if (envio == "FINAL") {
      if (!input.contains("ResumenPeriodo") || !input["ResumenPeriodo"].is_array() ||
          input["ResumenPeriodo"].empty())
        throw DocumentError("libro.caratula",
                            "the FINAL segment needs ResumenPeriodo: the totals of the whole period "
                            "(segment_libro_cv computes them)");
      for (const json& t : input["ResumenPeriodo"])
        if (!t.is_object() || !t.contains("TpoDoc"))
          throw DocumentError("libro.field", "ResumenPeriodo entries need TpoDoc");
      if (input["ResumenPeriodo"].size() > 40)
        throw DocumentError("libro.field", "at most 40 document types per book");
      out["ResumenPeriodo"] = input["ResumenPeriodo"];
    }
  }
  out["Detalle"] = detalle;
  return out;
}

namespace {

// One book cut into PARCIAL..FINAL segments of at most max_detail Detalle entries each (TOTAL
// when it fits in one); only the FINAL segment carries the period's summary, computed from the
// whole book (`whole`, the normalised input).
std::vector<json> split_book(const json& input, const json& whole, std::size_t max_detail) {
  if (max_detail == 0) throw DocumentError("libro.field", "a segment holds at least one Detalle entry");
  const json list = input.contains("Detalle") ? as_list(input["Detalle"]) : json::array();
  std::vector<json> out;
  if (list.size() <= max_detail) {
    json one = input;
    one["Caratula"]["TipoEnvio"] = "TOTAL";
    one["Caratula"].erase("NroSegmento");
    out.push_back(std::move(one));
    return out;
  }
  const std::size_t n = (list.size() + max_detail - 1) / max_detail;
  for (std::size_t i = 0; i < n; ++i) {
    json seg = input;
    seg.erase("ResumenPeriodo");
    seg["Caratula"]["TipoEnvio"] = i + 1 == n ? "FINAL" : "PARCIAL";
    seg["Caratula"]["NroSegmento"] = static_cast<long long>(i + 1);
    json part = json::array();
    for (std::size_t k = i * max_detail; k < std::min(list.size(), (i + 1) * max_detail); ++k) part.push_back(list[k]);
    seg["Detalle"] = std::move(part);
    if (i + 1 == n) seg["ResumenPeriodo"] = whole["ResumenPeriodo"];
    out.push_back(std::move(seg));
  }
  return out;
}

}  // namespace

std::vector<json> segment_libro_cv(const json& input, std::size_t max_detail) {
  if (max_detail == 0) throw DocumentError("libro.field", "a segment holds at least one Detalle entry");
  return split_book(input, normalize_libro_cv(input), max_detail);  // validates everything once
}

std::vector<std::string> sign_libro_cv_segments(const json& input, const Certificate& cert,
                                                std::size_t max_detail, const SignOptions& options) {
  std::vector<std::string> out;
  for (const json& seg : segment_libro_cv(input, max_detail)) out.push_back(sign_libro_cv(seg, cert, options));
  return out;
}

std::string sign_libro_cv(const json& input, const Certificate& cert, const SignOptions& options) {
  json n = normalize_libro_cv(input);
  const json& c = n["Caratula"];
  const std::string tmst = timestamp(options);
  check_cert(cert, tmst);
  const std::string envia = rut_envia(c, cert);
  const std::string id = libro_id(c["TipoOperacion"].get<std::string>() == "COMPRA" ? "LC" : "LV",
                                  c["PeriodoTributario"].get<std::string>(), c);
  std::string out;
  out.reserve(4096 + n["Detalle"].size() * 400);
  out += "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n"
         "<LibroCompraVenta xmlns=\"http://www.sii.cl/SiiDte\" "
         "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
         "xsi:schemaLocation=\"http://www.sii.cl/SiiDte LibroCV_v10.xsd\" version=\"1.0\">\n"
         "<EnvioLibro ID=\"" + id + "\">\n<Caratula>\n";
  el(out, "RutEmisorLibro", c["RutEmisorLibro"]);
  el(out, "RutEnvia", envia);
  fields(out, c, {"PeriodoTributario", "FchResol", "NroResol", "TipoOperacion", "TipoLibro",
                  "TipoEnvio", "NroSegmento", "FolioNotificacion", "CodAutRec"});
  out += "</Caratula>\n";
  if (n.contains("ResumenSegmento") && !n["ResumenSegmento"].empty()) {
    out += "<ResumenSegmento>\n";
    for (const json& t : n["ResumenSegmento"]) write_cv_totals(out, t, "TotalesSegmento");
    out += "</ResumenSegmento>\n";
  }
  if (n.contains("ResumenPeriodo") && !n["ResumenPeriodo"].empty()) {
    out += "<ResumenPeriodo>\n";
    for (const json& t : n["ResumenPeriodo"]) write_cv_totals(out, t);
    out += "</ResumenPeriodo>\n";
  }
  for (const json& d : n["Detalle"]) write_cv_detail(out, d);
  el(out, "TmstFirma", tmst);
  out += "</EnvioLibro>\n";
  return sign_text(out, "LibroCompraVenta", id, cert, options);
}

// ================================================================ Libro de Guías

json normalize_libro_guia(const json& input) {
  if (!input.is_object()) throw DocumentError("libro.input", "the book input must be a JSON object");
  const json& cin = input.contains("Caratula") ? input["Caratula"] : json();
  json c = normalize_cv_caratula(cin);
  std::string tipo = present(cin, "TipoLibro") ? as_text(cin["TipoLibro"], "Caratula.TipoLibro") : "ESPECIAL";
  if (tipo != "ESPECIAL")
    throw DocumentError("libro.caratula",
                        "Caratula.TipoLibro of a Libro de Guías can only be ESPECIAL (SII asks for it)");
  c["TipoLibro"] = tipo;
  const std::string envio = envio_of(cin, c);
  if (!present(cin, "FolioNotificacion"))
    throw DocumentError("libro.caratula", "Caratula.FolioNotificacion is required for a Libro de Guías");
  long long f = as_int(cin["FolioNotificacion"], "Caratula.FolioNotificacion");
  if (f <= 0) throw DocumentError("libro.caratula", "Caratula.FolioNotificacion must be positive");
  c["FolioNotificacion"] = f;

  json detalle = json::array();
  std::set<long long> seen;
  const json list = input.contains("Detalle") ? as_list(input["Detalle"]) : json::array();
  long long fol_anulado = 0, guia_anulada = 0, guia_venta = 0, mnt_venta = 0, mnt_mod = 0;
  bool any_mod = false;
  std::map<long long, std::pair<long long, long long>> traslados;  // TpoOper -> (count, amount)
  for (std::size_t i = 0; i < list.size(); ++i) {
    json d = normalize_guia_entry(list[i], i);
    if (!seen.insert(d["Folio"].get<long long>()).second)
      field_error("Detalle[" + std::to_string(i) + "]", "folio " + d["Folio"].dump() + " appears twice");
    const long long anulado = d.value("Anulado", 0LL);
    if (anulado == 1) {
      ++fol_anulado;
    } else if (anulado == 2) {
      ++guia_anulada;
    } else {
      const long long tpo = d.value("TpoOper", 1LL);
      const long long total = d.value("MntTotal", 0LL);
      if (tpo == 1) {
        ++guia_venta;
        mnt_venta += total;
      } else {
        auto& [n, amount] = traslados[tpo];
        ++n;
        amount += total;
      }
      if (d.contains("MntModificado")) {
        any_mod = true;
        mnt_mod += d["MntModificado"].get<long long>();
      }
    }
    detalle.push_back(std::move(d));
  }
  json r = json::object();
  if (fol_anulado > 0) r["TotFolAnulado"] = fol_anulado;
  if (guia_anulada > 0) r["TotGuiaAnulada"] = guia_anulada;
  r["TotGuiaVenta"] = guia_venta;
  r["TotMntGuiaVta"] = mnt_venta;
  if (any_mod) r["TotMntModificado"] = mnt_mod;
  if (!traslados.empty()) {
    json list_t = json::array();
    for (auto& [tpo, v] : traslados) {
      if (tpo < 2 || tpo > 9) throw DocumentError("libro.field", "TpoOper " + std::to_string(tpo) + " is not 1..9");
      json x = json::object();
      x["TpoTraslado"] = tpo;
      x["CantGuia"] = v.first;
      x["MntGuia"] = v.second;
      list_t.push_back(x);
    }
    r["TotTraslado"] = list_t;
  }
  json out = json::object();
  out["Caratula"] = c;
  if (envio == "TOTAL") {
    out["ResumenPeriodo"] = r;
  } else {
    out["ResumenSegmento"] = r;
    if (envio == "FINAL") {
      if (!input.contains("ResumenPeriodo") || !input["ResumenPeriodo"].is_object() ||
          !input["ResumenPeriodo"].contains("TotGuiaVenta"))
        throw DocumentError("libro.caratula",
                            "the FINAL segment needs ResumenPeriodo: the totals of the whole period "
                            "(segment_libro_guia computes them)");
      out["ResumenPeriodo"] = input["ResumenPeriodo"];
    }
  }
  out["Detalle"] = detalle;
  return out;
}

std::vector<json> segment_libro_guia(const json& input, std::size_t max_detail) {
  if (max_detail == 0) throw DocumentError("libro.field", "a segment holds at least one Detalle entry");
  return split_book(input, normalize_libro_guia(input), max_detail);
}

std::vector<std::string> sign_libro_guia_segments(const json& input, const Certificate& cert,
                                                  std::size_t max_detail, const SignOptions& options) {
  std::vector<std::string> out;
  for (const json& seg : segment_libro_guia(input, max_detail)) out.push_back(sign_libro_guia(seg, cert, options));
  return out;
}

std::string sign_libro_guia(const json& input, const Certificate& cert, const SignOptions& options) {
  json n = normalize_libro_guia(input);
  const json& c = n["Caratula"];
  const std::string tmst = timestamp(options);
  check_cert(cert, tmst);
  const std::string envia = rut_envia(c, cert);
  const std::string id = libro_id("LG", c["PeriodoTributario"].get<std::string>(), c);
  std::string out;
  out += "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n"
         "<LibroGuia xmlns=\"http://www.sii.cl/SiiDte\" "
         "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
         "xsi:schemaLocation=\"http://www.sii.cl/SiiDte LibroGuia_v10.xsd\" version=\"1.0\">\n"
         "<EnvioLibro ID=\"" + id + "\">\n<Caratula>\n";
  el(out, "RutEmisorLibro", c["RutEmisorLibro"]);
  el(out, "RutEnvia", envia);
  fields(out, c, {"PeriodoTributario", "FchResol", "NroResol", "TipoLibro", "TipoEnvio", "NroSegmento",
                  "FolioNotificacion"});
  out += "</Caratula>\n";
  for (const char* element : {"ResumenSegmento", "ResumenPeriodo"}) {
    if (!n.contains(element)) continue;
    const json& r = n[element];
    out += std::string("<") + element + ">\n";
    fields(out, r, {"TotFolAnulado", "TotGuiaAnulada", "TotGuiaVenta", "TotMntGuiaVta", "TotMntModificado"});
    if (r.contains("TotTraslado"))
      for (const json& t : r["TotTraslado"]) {
        out += "<TotTraslado>\n";
        fields(out, t, {"TpoTraslado", "CantGuia", "MntGuia"});
        out += "</TotTraslado>\n";
      }
    out += std::string("</") + element + ">\n";
  }
  for (const json& d : n["Detalle"]) {
    out += "<Detalle>\n";
    for (const char* k : {"Folio", "Anulado", "Operacion", "TpoOper", "FchDoc", "RUTDoc", "RznSoc",
                          "MntNeto", "TasaImp", "IVA", "MntTotal", "MntModificado", "TpoDocRef",
                          "FolioDocRef", "FchDocRef"})
      if (d.contains(k)) el(out, k, k == std::string("TasaImp") ? rate_text(d[k]) : text(d[k]));
    out += "</Detalle>\n";
  }
  el(out, "TmstFirma", tmst);
  out += "</EnvioLibro>\n";
  return sign_text(out, "LibroGuia", id, cert, options);
}

// ================================================================ ConsumoFolios

json normalize_consumo_folios(const json& input) {
  if (!input.is_object()) throw DocumentError("libro.input", "the ConsumoFolios input must be a JSON object");
  const json& cin = input.contains("Caratula") ? input["Caratula"] : json();
  if (!cin.is_object()) throw DocumentError("libro.caratula", "Caratula must be an object");
  json c = json::object();
  std::string emisor = require_text(cin, "RutEmisor");
  auto rut = Rut::try_parse(emisor);
  if (!rut) throw DocumentError("libro.caratula", "Caratula.RutEmisor '" + emisor + "' is not a valid RUT");
  c["RutEmisor"] = rut->str();
  if (present(cin, "RutEnvia")) c["RutEnvia"] = cin["RutEnvia"];
  for (const char* k : {"FchResol", "FchInicio"}) {
    std::string v = require_text(cin, k);
    if (!is_iso_date(v)) throw DocumentError("libro.caratula", std::string("Caratula.") + k + " '" + v + "' is not YYYY-MM-DD");
    c[k] = v;
  }
  long long nro = present(cin, "NroResol") ? as_int(cin["NroResol"], "Caratula.NroResol") : -1;
  if (nro < 0 || nro > 999999) throw DocumentError("libro.caratula", "Caratula.NroResol is required (0..999999)");
  c["NroResol"] = nro;
  std::string final_date = present(cin, "FchFinal") ? as_text(cin["FchFinal"], "Caratula.FchFinal")
                                                    : c["FchInicio"].get<std::string>();
  if (!is_iso_date(final_date) || final_date < c["FchInicio"].get<std::string>())
    throw DocumentError("libro.caratula", "Caratula.FchFinal '" + final_date + "' is not a date on or after FchInicio");
  c["FchFinal"] = final_date;
  if (present(cin, "Correlativo")) c["Correlativo"] = as_int(cin["Correlativo"], "Caratula.Correlativo");
  long long sec = present(cin, "SecEnvio") ? as_int(cin["SecEnvio"], "Caratula.SecEnvio") : 1;
  if (sec < 0 || sec > 999) throw DocumentError("libro.caratula", "Caratula.SecEnvio must be 0..999");
  c["SecEnvio"] = sec;

  struct PerType {
    long long neto = 0, iva = 0, exe = 0, total = 0;
    std::vector<long long> used, annulled;
    double tasa = 19;
  };
  std::map<long long, PerType> per;
  auto type_ok = [](long long t) { return t == 39 || t == 41 || t == 61; };
  std::set<std::pair<long long, long long>> seen;
  const json docs = input.contains("Documentos") ? as_list(input["Documentos"]) : json::array();
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const json& d = docs[i];
    const std::string w = "Documentos[" + std::to_string(i) + "]";
    if (!d.is_object()) field_error(w, "must be an object");
    long long t = get_int(d, "TipoDTE", w);
    if (!type_ok(t)) field_error(w + ".TipoDTE", "must be 39, 41 or 61");
    long long folio = get_int(d, "Folio", w);
    if (folio <= 0) field_error(w + ".Folio", "is required and positive");
    if (!seen.insert({t, folio}).second) field_error(w, "folio " + std::to_string(folio) + " appears twice");
    PerType& p = per[t];
    long long total = get_int(d, "MntTotal", w);
    long long exe = get_int(d, "MntExe", w);
    double tasa = present(d, "TasaIVA") ? as_decimal(d["TasaIVA"], w + ".TasaIVA") : 19;
    long long neto, iva;
    if (present(d, "MntNeto")) {
      neto = as_int(d["MntNeto"], w + ".MntNeto");
      iva = present(d, "MntIVA") ? as_int(d["MntIVA"], w + ".MntIVA") : percent_of(neto, tasa);
    } else if (t == 41) {
      neto = 0;
      iva = 0;
      exe = present(d, "MntExe") ? exe : total;  // a boleta exenta is all exempt
    } else {
      // Boletas state gross amounts: the net is the taxed part divided by (1 + rate).
      const long long gross = total - exe;
      neto = std::llround(static_cast<double>(gross) / (1.0 + tasa / 100.0));
      iva = present(d, "MntIVA") ? as_int(d["MntIVA"], w + ".MntIVA") : gross - neto;
    }
    if (!present(d, "MntTotal")) total = neto + iva + exe;
    p.neto += neto;
    p.iva += iva;
    p.exe += exe;
    p.total += total;
    p.tasa = tasa;
    p.used.push_back(folio);
  }
  const json annulled = input.contains("Anulados") ? as_list(input["Anulados"]) : json::array();
  for (std::size_t i = 0; i < annulled.size(); ++i) {
    const json& d = annulled[i];
    const std::string w = "Anulados[" + std::to_string(i) + "]";
    long long t = get_int(d, "TipoDTE", w);
    if (!type_ok(t)) field_error(w + ".TipoDTE", "must be 39, 41 or 61");
    long long folio = get_int(d, "Folio", w);
    if (folio <= 0) field_error(w + ".Folio", "is required and positive");
    if (!seen.insert({t, folio}).second) field_error(w, "folio " + std::to_string(folio) + " is also issued or listed twice");
    per[t].annulled.push_back(folio);
  }
  // A day without sales still reports the types SII expects, with zeros.
  json tipos = input.contains("Tipos") ? as_list(input["Tipos"]) : json::array();
  if (tipos.empty() && per.empty()) tipos.push_back(39);
  for (std::size_t i = 0; i < tipos.size(); ++i) {
    long long t = as_int(tipos[i], "Tipos[" + std::to_string(i) + "]");
    if (!type_ok(t)) field_error("Tipos[" + std::to_string(i) + "]", "must be 39, 41 or 61");
    per[t];
  }
  json resumen = json::array();
  for (auto& [t, p] : per) {
    json r = json::object();
    r["TipoDocumento"] = t;
    if (p.neto != 0 || p.iva != 0) {
      r["MntNeto"] = p.neto;
      r["MntIva"] = p.iva;
      r["TasaIVA"] = rate_json(p.tasa);
    }
    if (p.exe != 0) r["MntExento"] = p.exe;
    r["MntTotal"] = p.total;
    const long long emitted = static_cast<long long>(p.used.size());
    const long long anul = static_cast<long long>(p.annulled.size());
    r["FoliosEmitidos"] = emitted;
    r["FoliosAnulados"] = anul;
    r["FoliosUtilizados"] = emitted + anul;
    json ru = ranges(p.used);
    if (!ru.empty()) r["RangoUtilizados"] = ru;
    json ra = ranges(p.annulled);
    if (!ra.empty()) r["RangoAnulados"] = ra;
    resumen.push_back(r);
  }
  json out = json::object();
  out["Caratula"] = c;
  out["Resumen"] = resumen;
  return out;
}

std::string sign_consumo_folios(const json& input, const Certificate& cert, const SignOptions& options) {
  json n = normalize_consumo_folios(input);
  const json& c = n["Caratula"];
  const std::string tmst = timestamp(options);
  check_cert(cert, tmst);
  const std::string envia = rut_envia(c, cert);
  std::string id = "RVD_" + c["RutEmisor"].get<std::string>() + "_" + c["FchInicio"].get<std::string>() +
                   "_" + std::to_string(c["SecEnvio"].get<long long>());
  std::string out;
  out += "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n"
         "<ConsumoFolios xmlns=\"http://www.sii.cl/SiiDte\" "
         "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
         "xsi:schemaLocation=\"http://www.sii.cl/SiiDte ConsumoFolio_v10.xsd\" version=\"1.0\">\n"
         "<DocumentoConsumoFolios ID=\"" + id + "\">\n<Caratula version=\"1.0\">\n";
  el(out, "RutEmisor", c["RutEmisor"]);
  el(out, "RutEnvia", envia);
  fields(out, c, {"FchResol", "NroResol", "FchInicio", "FchFinal", "Correlativo", "SecEnvio"});
  el(out, "TmstFirmaEnv", tmst);
  out += "</Caratula>\n";
  for (const json& r : n["Resumen"]) {
    out += "<Resumen>\n";
    el(out, "TipoDocumento", r["TipoDocumento"]);
    fields(out, r, {"MntNeto", "MntIva"});
    if (r.contains("TasaIVA")) el(out, "TasaIVA", rate_text(r["TasaIVA"]));
    fields(out, r, {"MntExento", "MntTotal", "FoliosEmitidos", "FoliosAnulados", "FoliosUtilizados"});
    for (const char* group : {"RangoUtilizados", "RangoAnulados"})
      if (r.contains(group))
        for (const json& x : r[group]) {
          out += std::string("<") + group + ">\n";
          fields(out, x, {"Inicial", "Final"});
          out += std::string("</") + group + ">\n";
        }
    out += "</Resumen>\n";
  }
  out += "</DocumentoConsumoFolios>\n";
  return sign_text(out, "ConsumoFolios", id, cert, options);
}

}  // namespace dte::books
