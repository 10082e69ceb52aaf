// RCV download through the SII client: the portal's JSON facade (getResumen, then the CSV export
// per document type), the token cookie, retries and the breaker of the transport, and the
// export parsed with parse_csv. See rcv.hpp for the wire format.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <random>
#include <set>

#include "dte/rcv.hpp"
#include "dte/rut.hpp"
#include "dte/sii_client.hpp"
#include "rcv_internal.hpp"

namespace dte::rcv {
namespace {

constexpr const char* kFacadeNs = "cl.sii.sdi.lob.diii.consdcv.data.api.interfaces.FacadeService/";
constexpr const char* kPortalFacade = "https://www4.sii.cl/consdcvinternetui/services/data/facadeService";
constexpr const char* kFacadePath = "/consdcvinternetui/services/data/facadeService";

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool contains_ci(std::string_view hay, std::string_view needle) {
  std::string h = upper(std::string(hay)), n = upper(std::string(needle));
  return h.find(n) != std::string::npos;
}

[[noreturn]] void bad(const std::string& message) { throw DteError("rcv.bad_request", message); }

std::string normal_kind(std::string k) {
  k = upper(k);
  if (k == "COMPRAS" || k == "COMPRA" || k == "PURCHASES") return "compras";
  if (k == "VENTAS" || k == "VENTA" || k == "SALES") return "ventas";
  bad("kind must be 'compras' or 'ventas', not '" + k + "'");
}

std::string normal_state(const std::string& kind, std::string s) {
  s = upper(s);
  for (char& c : s)
    if (c == '-' || c == ' ') c = '_';
  if (kind == "ventas") {
    if (s.empty() || s == "REGISTRO" || s == "REGISTERED") return "REGISTRO";
    bad("the ventas register has no state '" + s + "' (only REGISTRO)");
  }
  if (s.empty() || s == "REGISTRO" || s == "REGISTERED") return "REGISTRO";
  if (s == "PENDIENTE" || s == "PENDING") return "PENDIENTE";
  if (s == "NO_INCLUIR" || s == "NOT_INCLUDED") return "NO_INCLUIR";
  if (s == "RECLAMADO" || s == "CLAIMED") return "RECLAMADO";
  bad("RCV state must be REGISTRO, PENDIENTE, NO_INCLUIR or RECLAMADO, not '" + s + "'");
}

// "YYYY-MM" (or "YYYYMM") -> "YYYYMM".
std::string ptributario(const std::string& period) {
  std::string digits;
  for (char c : period)
    if (c != '-') digits += c;
  bool ok = digits.size() == 6 && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  int month = ok ? std::stoi(digits.substr(4)) : 0;
  if (!ok || month < 1 || month > 12 || (period.size() == 7 && period[4] != '-'))
    bad("period must be YYYY-MM, not '" + period + "'");
  return digits;
}

std::string transaction_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) id += '-';
    id += hex[rng() & 15];
  }
  return id;
}

long long number(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return 0;
  const auto& v = j[key];
  if (v.is_number_integer()) return v.get<long long>();
  if (v.is_number()) return static_cast<long long>(v.get<double>());
  if (v.is_string()) {
    try {
      return std::stoll(v.get<std::string>());
    } catch (...) {
      return 0;
    }
  }
  return 0;
}

// Judges a facade answer; throws per the table in rcv.hpp.
void judge(long status, std::string_view body, const std::string& op) {
  std::string head(body.substr(0, 300));
  if (status == 401 || status == 403 || contains_ci(head, "token no es valido") ||
      contains_ci(head, "token invalido"))
    throw SiiAuthError("sii.token_expired", "RCV " + op + ": the token was refused (HTTP " + std::to_string(status) + ")");
  if (status >= 500 || status == 429)
    throw SiiTransportError("sii.http_" + std::to_string(status), "RCV " + op + ": HTTP " + std::to_string(status), status != 429);
  if (status < 200 || status >= 300)
    throw SiiRejected("sii.rcv.http_" + std::to_string(status), "RCV " + op + ": HTTP " + std::to_string(status),
                      std::to_string(status));
  std::string_view t = body;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  if (t.empty() || t.front() == '<')
    throw SiiTransportError("sii.html_answer", "RCV " + op + ": an HTML page or nothing instead of JSON", true);
}

nlohmann::json parse_answer(std::string_view body, const std::string& op) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(sii::lenient_utf8(body));
  } catch (const nlohmann::json::exception& e) {
    throw SiiTransportError("sii.garbled_answer", "RCV " + op + ": unparsable JSON: " + e.what(), true);
  }
  if (!j.is_object()) throw SiiMalformedAnswer("sii.rcv.no_object", "RCV " + op + ": the answer is not a JSON object");
  if (j.contains("respEstado") && j["respEstado"].is_object()) {
    const auto& re = j["respEstado"];
    long long code = number(re, "codRespuesta");
    std::string msg = re.contains("msgeRespuesta") && re["msgeRespuesta"].is_string()
                          ? re["msgeRespuesta"].get<std::string>() : "";
    if (code != 0) {
      if (contains_ci(msg, "token"))
        throw SiiAuthError("sii.token_expired", "RCV " + op + ": " + msg);
      throw SiiRejected("sii.rcv." + std::to_string(code), "RCV " + op + " codRespuesta " + std::to_string(code) +
                                                               (msg.empty() ? "" : ": " + msg),
                        std::to_string(code));
    }
  }
  return j;
}

// `data` of an export: a list of CSV lines, or one CSV string.
std::vector<std::string> csv_lines(const nlohmann::json& j) {
  std::vector<std::string> lines;
  if (!j.contains("data") || j["data"].is_null()) return lines;
  const auto& d = j["data"];
  auto add_text = [&](const std::string& text) {
    std::size_t start = 0;
    while (start <= text.size()) {
      std::size_t nl = text.find('\n', start);
      std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) lines.push_back(std::move(line));
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
  };
  if (d.is_string()) {
    add_text(d.get<std::string>());
  } else if (d.is_array()) {
    for (const auto& item : d) {
      if (!item.is_string())
        throw SiiMalformedAnswer("sii.rcv.not_csv", "RCV export: `data` holds something other than CSV lines");
      add_text(item.get<std::string>());
    }
  } else {
    throw SiiMalformedAnswer("sii.rcv.not_csv", "RCV export: `data` is neither CSV lines nor text");
  }
  return lines;
}

}  // namespace

namespace detail {

nlohmann::json read_answer(long status, std::string_view body, const std::string& op) {
  judge(status, body, op);
  return parse_answer(body, op);
}

std::vector<TypeSummary> summary_rows(const nlohmann::json& resumen) {
  std::vector<TypeSummary> out;
  if (!resumen.contains("data") || !resumen["data"].is_array()) return out;
  for (const auto& r : resumen["data"]) {
    if (!r.is_object()) continue;
    TypeSummary t;
    t.doc_type = static_cast<int>(number(r, "rsmnTipoDocInteger"));
    t.documents = number(r, "rsmnTotDoc");
    t.exempt = number(r, "rsmnMntExe");
    t.net = number(r, "rsmnMntNeto");
    t.vat = number(r, "rsmnMntIVA");
    t.total = number(r, "rsmnMntTotal");
    if (t.doc_type > 0) out.push_back(t);
  }
  return out;
}

std::vector<std::string> export_lines(const nlohmann::json& answer) { return csv_lines(answer); }

}  // namespace detail

std::string default_facade_base(const sii::Client& client) {
  const auto& cfg = client.config();
  if (cfg.environment == sii::Environment::kSimulator) return cfg.endpoints.soap_base + kFacadePath;
  return kPortalFacade;
}

Download download(sii::Client& client, const DownloadRequest& req) {
  Download out;
  out.kind = normal_kind(req.kind);
  out.state = normal_state(out.kind, req.state);
  const std::string pt = ptributario(req.period);
  out.period = pt.substr(0, 4) + "-" + pt.substr(4);
  auto rut = Rut::try_parse(req.company_rut);
  if (!rut) bad("company RUT '" + req.company_rut + "' is not a valid RUT");
  std::string base = req.base_url.empty() ? default_facade_base(client) : req.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  const std::string operacion = out.kind == "compras" ? "COMPRA" : "VENTA";

  auto call = [&](const std::string& op, const nlohmann::json& data) {
    ++out.requests;
    std::string body = client.post_with_token(
        "rcv", base + "/" + op, "application/json",
        [&](const std::string& token) {
          nlohmann::json j = {{"metaData", {{"namespace", std::string(kFacadeNs) + op},
                                            {"conversationId", token},
                                            {"transactionId", transaction_id()},
                                            {"page", nullptr}}},
                              {"data", data}};
          return j.dump();
        },
        [&](long status, std::string_view b) {
          judge(status, b, op);
          parse_answer(b, op);  // token and error codes surface inside the retry/renew loop
        });
    return parse_answer(body, op);
  };

  nlohmann::json base_data = {{"rutEmisor", std::to_string(rut->body())},
                              {"dvEmisor", std::string(1, rut->dv())},
                              {"ptributario", pt},
                              {"operacion", operacion},
                              {"estadoContab", out.state}};

  std::vector<int> types = req.doc_types;
  {
    nlohmann::json data = base_data;
    data["busquedaInicial"] = true;
    out.summary = detail::summary_rows(call("getResumen", data));
    if (req.doc_types.empty())
      for (const auto& t : out.summary)
        if (t.documents > 0) types.push_back(t.doc_type);
  }

  const std::string export_op = out.kind == "compras" ? "getDetalleCompraExport" : "getDetalleVentaExport";
  std::string header;
  std::vector<std::string> rows;
  std::vector<std::pair<int, std::vector<std::string>>> odd;  // parts whose header differs
  for (int type : types) {
    nlohmann::json data = base_data;
    data["codTipoDoc"] = type;
    data["accionRecaptcha"] = out.kind == "compras" ? "RCV_DDETC" : "RCV_DDETV";
    data["tokenRecaptcha"] = "t-o-k-e-n-web";  // the portal's placeholder, accepted without a captcha
    std::vector<std::string> lines = detail::export_lines(call(export_op, data));
    if (lines.empty()) continue;
    if (header.empty()) header = lines.front();
    if (lines.front() == header)
      rows.insert(rows.end(), lines.begin() + 1, lines.end());
    else
      odd.emplace_back(type, std::move(lines));
  }

  if (!header.empty()) {
    out.csv = header + "\n";
    for (const auto& r : rows) out.csv += r + "\n";
    out.parsed = parse_csv(out.csv, out.kind == "compras" ? out.state : std::string());
  } else {
    out.parsed.register_kind = out.kind == "compras" ? "compra" : "venta";
    out.parsed.state = out.state;
  }
  for (auto& [type, lines] : odd) {
    std::string part;
    for (const auto& l : lines) part += l + "\n";
    ParseResult p = parse_csv(part, out.kind == "compras" ? out.state : std::string());
    out.parsed.warnings.push_back("type " + std::to_string(type) +
                                  ": the export's header differs from the first type's; its rows are numbered "
                                  "within its own part");
    for (auto& r : p.rows) out.parsed.rows.push_back(std::move(r));
    for (auto& e : p.errors) out.parsed.errors.push_back(std::move(e));
    for (auto& w : p.warnings) out.parsed.warnings.push_back(std::move(w));
    out.csv += part.substr(part.find('\n') + 1);
  }
  return out;
}

}  // namespace dte::rcv
