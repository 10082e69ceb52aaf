// Parsing SII's answers and mapping their codes (tables in sii_client.hpp). Pure functions.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <set>

#include "dte/rut.hpp"
#include "dte/sii_client.hpp"
#include "dte/xml.hpp"

namespace dte::sii {

namespace {

bool valid_utf8(std::string_view s) {
  std::size_t i = 0, n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                                  : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// Drops a leading XML declaration: text handed over already decoded must not claim an encoding.
std::string_view strip_declaration(std::string_view s) {
  auto t = s.find_first_not_of(" \t\r\n\xEF\xBB\xBF");
  if (t == std::string_view::npos) return s;
  s.remove_prefix(t);
  if (s.substr(0, 5) == "<?xml") {
    auto end = s.find("?>");
    if (end != std::string_view::npos) s.remove_prefix(end + 2);
  }
  return s;
}

bool looks_like_html(std::string_view body) {
  std::string head = lower(body.substr(0, 512));
  return head.find("<html") != std::string::npos || head.find("<!doctype html") != std::string::npos;
}

// Parses an answer we expect to be XML; anything else is a garbled transport answer.
XmlDocPtr parse_answer(std::string_view bytes, const char* what) {
  std::string text = lenient_utf8(bytes);
  std::string_view t = trim(text).empty() ? std::string_view{} : std::string_view(text);
  if (t.empty()) throw SiiTransportError("sii.empty_answer", std::string("empty answer from ") + what);
  if (looks_like_html(t))
    throw SiiTransportError("sii.html_answer", std::string("HTML page instead of XML from ") + what);
  if (trim(t).rfind("Error 500", 0) == 0)
    throw SiiTransportError("sii.error500", std::string("'Error 500' from ") + what);
  try {
    return parse_xml(t);
  } catch (const XmlSyntaxError& e) {
    throw SiiTransportError("sii.garbled_answer",
                            std::string("unparsable answer from ") + what + ": " + e.what());
  }
}

xmlNode* root_of(const XmlDocPtr& doc) { return xmlDocGetRootElement(doc.get()); }

xmlNode* find_local(xmlNode* start, std::string_view name) {
  auto all = descendants(start, name);
  return all.empty() ? nullptr : all.front();
}

xmlNode* find_suffix(xmlNode* n, std::string_view suffix) {
  for (; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE) continue;
    std::string_view name = reinterpret_cast<const char*>(n->name);
    if (name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix) return n;
    if (auto* hit = find_suffix(n->children, suffix)) return hit;
  }
  return nullptr;
}

int to_int(std::string_view s, int fallback = 0) {
  std::string t = trim(s);
  if (t.empty()) return fallback;
  try {
    std::size_t pos = 0;
    int v = std::stoi(t, &pos);
    return pos == t.size() ? v : fallback;
  } catch (const std::exception&) {
    return fallback;
  }
}

const std::set<std::string, std::less<>> kInProgress = {"REC", "SOK", "CRT", "FOK", "PDR", "PRD",
                                                        "004", "005", "007", "106", "107", "-8"};
const std::set<std::string, std::less<>> kRejectedStates = {"RCH", "RCT", "RFR", "RSC", "RCS",
                                                            "RCO", "VOF", "RPT"};
// Book (LibroCV/LibroGuia) states: LOK [IMPL] consistent book; LRH [IMPL] rejected; LNC LRF LRS
// [UNCERTAIN] book not consistent / signature / schema.
const std::set<std::string, std::less<>> kBookRejected = {"LRH", "LNC", "LRF", "LRS"};

void classify_final(EnvelopeStatus& s) {
  const std::string& e = s.sii_state;
  if (e == "LOK") {
    s.state = EnvelopeState::kAccepted;
    s.final = true;
  } else if (kBookRejected.count(e)) {
    s.state = EnvelopeState::kRejected;
    s.final = true;
  } else if (e == "EPR" && s.counts.empty()) {
    // Books and the boleta summary have no per-type counts; interpret_est_up decides by kind.
    s.state = EnvelopeState::kAccepted;
    s.final = true;
  } else if (kInProgress.count(e)) {
    s.state = EnvelopeState::kInProgress;
    s.final = false;
  } else if (e == "EPR") {
    long long informed = 0, accepted = 0, rejected = 0, objections = 0;  // no int overflow
    for (const auto& c : s.counts) {
      informed += c.informed;
      accepted += c.accepted;
      rejected += c.rejected;
      objections += c.objections;
    }
    s.final = true;
    if (rejected > 0) s.state = EnvelopeState::kRejected;
    else if (objections > 0) s.state = EnvelopeState::kAcceptedWithObjections;
    else if (accepted == informed) s.state = EnvelopeState::kAccepted;
    else s.state = EnvelopeState::kRejected;  // counts that do not add up: do not call it accepted
  } else if (e == "RPR" || e == "RLV") {
    s.state = EnvelopeState::kAcceptedWithObjections;
    s.final = true;
  } else if (kRejectedStates.count(e)) {
    s.state = EnvelopeState::kRejected;
    s.final = true;
    s.duplicate = e == "RPT";
  } else {
    throw SiiMalformedAnswer("sii.unknown_state", "unknown envelope state '" + e + "' (" + s.glosa + ")");
  }
}

}  // namespace

std::string lenient_utf8(std::string_view bytes) {
  if (valid_utf8(bytes)) return std::string(bytes);
  std::string head = lower(bytes.substr(0, 100));
  if (head.rfind("<?xml", 0) == 0 && head.find("iso-8859-1") != std::string::npos)
    return std::string(bytes);  // declared Latin-1: libxml2 decodes it itself
  // Claims UTF-8 (or nothing) but is not: SII sends Latin-1 bytes under a UTF-8 header.
  std::string utf8 = from_latin1(bytes);
  return std::string(strip_declaration(utf8));
}

std::string Respuesta::hdr(std::string_view name) const {
  for (const auto& [k, v] : header)
    if (k == name) return v;
  return {};
}

std::string Respuesta::first(std::string_view name) const {
  for (const auto& [k, v] : body)
    if (k == name) return v;
  return {};
}

std::string to_string(EnvelopeState s) {
  switch (s) {
    case EnvelopeState::kInProgress: return "in_progress";
    case EnvelopeState::kAccepted: return "accepted";
    case EnvelopeState::kAcceptedWithObjections: return "accepted_with_objections";
    case EnvelopeState::kRejected: return "rejected";
  }
  return "?";
}

std::string to_string(DocumentState s) {
  switch (s) {
    case DocumentState::kReceived: return "received";
    case DocumentState::kDataMismatch: return "data_mismatch";
    case DocumentState::kNotReceived: return "not_received";
    case DocumentState::kFolioNotAuthorized: return "folio_not_authorized";
    case DocumentState::kFolioAnnulled: return "folio_annulled";
    case DocumentState::kCompanyNotAuthorized: return "company_not_authorized";
    case DocumentState::kModifiedByNote: return "modified_by_note";
    case DocumentState::kAnnulledByNote: return "annulled_by_note";
  }
  return "?";
}

std::optional<std::string> soap_fault_string(std::string_view soap) {
  std::string text = lenient_utf8(soap);
  if (text.find("Fault") == std::string::npos) return std::nullopt;
  try {
    auto doc = parse_xml(text);
    xmlNode* fault = find_local(root_of(doc), "Fault");
    if (!fault) return std::nullopt;
    std::string msg = text_at(fault, "faultstring");
    return msg.empty() ? std::string("SOAP Fault") : msg;
  } catch (const XmlSyntaxError&) {
    return std::nullopt;
  }
}

std::string soap_return_text(std::string_view soap) {
  auto doc = parse_answer(soap, "SOAP service");
  xmlNode* root = root_of(doc);
  if (xmlNode* fault = find_local(root, "Fault"))
    throw SiiTransportError("sii.soap_fault", "SOAP Fault: " + text_at(fault, "faultstring"));
  xmlNode* ret = find_suffix(root, "Return");
  if (!ret) throw SiiMalformedAnswer("sii.no_return", "SOAP answer without a *Return element");
  return node_text(ret);
}

Respuesta parse_respuesta(std::string_view xml) {
  std::string text = lenient_utf8(xml);
  auto doc = parse_answer(strip_declaration(text), "SII (RESPUESTA)");
  xmlNode* root = root_of(doc);
  Respuesta r;
  xmlNode* h = child(root, "RESP_HDR");
  xmlNode* b = child(root, "RESP_BODY");
  if (!h && !b) {
    // Boleta REST may answer bare ESTADO/SEMILLA/TOKEN fields: take any leaf under the root.
    if (!root) throw SiiMalformedAnswer("sii.no_header", "answer without RESP_HDR");
  }
  auto collect = [](xmlNode* parent, auto& out) {
    for (xmlNode* c = parent ? parent->children : nullptr; c; c = c->next)
      if (c->type == XML_ELEMENT_NODE)
        out.emplace_back(reinterpret_cast<const char*>(c->name), trim(node_text(c)));
  };
  collect(h, r.header);
  collect(b, r.body);
  if (!h && !b) collect(root, r.header);
  if (r.hdr("ESTADO").empty() && r.header.empty())
    throw SiiMalformedAnswer("sii.no_header", "SII answer without RESP_HDR/ESTADO");
  return r;
}

UploadAnswer parse_upload_answer(std::string_view body) {
  auto doc = parse_answer(body, "DTEUpload");
  xmlNode* root = root_of(doc);
  if (!root || std::strcmp(reinterpret_cast<const char*>(root->name), "RECEPCIONDTE") != 0)
    throw SiiMalformedAnswer("sii.upload.no_recepcion", "DTEUpload answer is not RECEPCIONDTE");
  UploadAnswer a;
  std::string st = trim(text_at(root, "STATUS"));
  if (st.empty()) throw SiiMalformedAnswer("sii.upload.no_status", "RECEPCIONDTE without STATUS");
  a.status = to_int(st, -9999);
  if (a.status == -9999) throw SiiMalformedAnswer("sii.upload.bad_status", "STATUS '" + st + "'");
  a.track_id = trim(text_at(root, "TRACKID"));
  a.timestamp = trim(text_at(root, "TIMESTAMP"));
  a.file = trim(text_at(root, "FILE"));
  a.rut_sender = trim(text_at(root, "RUTSENDER"));
  a.rut_company = trim(text_at(root, "RUTCOMPANY"));
  if (xmlNode* detail = child(root, "DETAIL"))
    for (xmlNode* e : children(detail, "ERROR")) a.errors.push_back(trim(node_text(e)));
  return a;
}

std::string upload_status_meaning(int status) {
  switch (status) {
    case 0: return "upload ok";
    case 1: return "sender not authorized to send for the company";
    case 2: return "file size error";
    case 3: return "file truncated";
    case 5: return "not authenticated (token)";
    case 6: return "company not authorized to send";
    case 7: return "invalid schema";
    case 8: return "signature error";
    case 9: return "system blocked";
    case 99: return "file already received";
    default: return "SII internal error";
  }
}

void check_upload_status(const UploadAnswer& a) {
  std::string msg = "DTEUpload STATUS " + std::to_string(a.status) + ": " + upload_status_meaning(a.status);
  for (const auto& e : a.errors) msg += "\n  " + e;
  std::string code = std::to_string(a.status);
  switch (a.status) {
    case 0:
      if (a.track_id.empty()) throw SiiMalformedAnswer("sii.upload.no_trackid", "STATUS 0 without TRACKID");
      return;
    case 99: return;
    case 5: throw SiiAuthError("sii.token_expired", msg);
    case 1: throw SiiRejected("sii.upload.sender_not_authorized", msg, code, a.errors);
    case 2: throw SiiRejected("sii.upload.size", msg, code, a.errors);
    case 6: throw SiiRejected("sii.upload.company_not_authorized", msg, code, a.errors);
    case 7: throw SiiRejected("sii.upload.schema", msg, code, a.errors);
    case 8: throw SiiRejected("sii.upload.signature", msg, code, a.errors);
    case 3: throw SiiTransportError("sii.upload.truncated", msg, false);
    case 9: throw SiiTransportError("sii.upload.blocked", msg, false);
    default: throw SiiTransportError("sii.upload.internal", msg, false);
  }
}

EnvelopeStatus interpret_est_up(const Respuesta& r) { return interpret_est_up(r, EnvelopeKind::kAuto); }

EnvelopeStatus interpret_est_up(const Respuesta& r, EnvelopeKind kind) {
  EnvelopeStatus s;
  s.track_id = r.hdr("TRACKID");
  s.sii_state = r.hdr("ESTADO");
  s.glosa = r.hdr("GLOSA");
  s.num_atencion = r.hdr("NUM_ATENCION");
  if (s.sii_state.empty()) throw SiiMalformedAnswer("sii.no_estado", "QueryEstUp answer without ESTADO");
  if (s.sii_state == "001" || s.sii_state == "002" || s.sii_state == "003")
    throw SiiAuthError("sii.token_expired", "QueryEstUp ESTADO " + s.sii_state + ": " + s.glosa);
  if (s.sii_state == "-11") {
    std::string err = r.hdr("ERR_CODE"), srv = r.hdr("SRV_CODE");
    if (err == "2" || srv == "2") {
      s.state = EnvelopeState::kInProgress;
      return s;
    }
    throw SiiRejected("sii.status.-11", "QueryEstUp -11 (ERR_CODE " + err + "): " + s.glosa, "-11");
  }
  if (!s.sii_state.empty() && s.sii_state[0] == '-' && s.sii_state != "-8")
    throw SiiRejected("sii.status." + s.sii_state, "QueryEstUp ESTADO " + s.sii_state + ": " + s.glosa,
                      s.sii_state);
  // RESP_BODY: repeated groups TIPO_DOCTO, INFORMADOS, ACEPTADOS, RECHAZADOS, REPAROS.
  for (const auto& [k, v] : r.body) {
    if (k == "TIPO_DOCTO") {
      s.counts.emplace_back();
      s.counts.back().doc_type = to_int(v);
      continue;
    }
    if (s.counts.empty()) continue;
    auto& c = s.counts.back();
    if (k == "INFORMADOS") c.informed = to_int(v);
    else if (k == "ACEPTADOS") c.accepted = to_int(v);
    else if (k == "RECHAZADOS") c.rejected = to_int(v);
    else if (k == "REPAROS") c.objections = to_int(v);
  }
  classify_final(s);
  if (s.sii_state == "EPR" && s.counts.empty() && kind == EnvelopeKind::kDocuments)
    throw SiiMalformedAnswer("sii.no_counts", "QueryEstUp EPR without document counts");
  return s;
}

EnvelopeStatus interpret_boleta_status(std::string_view json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(lenient_utf8(json_text));
  } catch (const nlohmann::json::exception& e) {
    throw SiiTransportError("sii.garbled_answer", std::string("unparsable boleta status JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("estado") || !j["estado"].is_string())
    throw SiiMalformedAnswer("sii.no_estado", "boleta status without 'estado'");
  EnvelopeStatus s;
  auto str = [](const nlohmann::json& v) -> std::string {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<long long>());
    return {};
  };
  s.track_id = j.contains("trackid") ? str(j["trackid"]) : "";
  s.sii_state = j["estado"].get<std::string>();
  s.glosa = j.contains("glosa") ? str(j["glosa"]) : "";
  auto num = [](const nlohmann::json& o, const char* k) {
    return o.contains(k) && o[k].is_number_integer() ? o[k].get<int>() : 0;
  };
  if (j.contains("estadistica") && j["estadistica"].is_array())
    for (const auto& e : j["estadistica"])
      s.counts.push_back({num(e, "tipo"), num(e, "informados"), num(e, "aceptados"),
                          num(e, "rechazados"), num(e, "reparos")});
  bool detail_null = !j.contains("detalle_rep_rech") || j["detalle_rep_rech"].is_null();
  if (!detail_null && j["detalle_rep_rech"].is_array())
    for (const auto& d : j["detalle_rep_rech"]) {
      DocumentOutcome o;
      o.doc_type = num(d, "tipo");
      o.folio = d.contains("folio") && d["folio"].is_number_integer() ? d["folio"].get<long long>() : 0;
      o.state = d.contains("estado") ? str(d["estado"]) : "";
      o.description = d.contains("descripcion") ? str(d["descripcion"]) : "";
      if (d.contains("error") && d["error"].is_array())
        for (const auto& e : d["error"])
          o.errors.push_back((e.contains("codigo") ? str(e["codigo"]) : "") + ": " +
                             (e.contains("descripcion") ? str(e["descripcion"]) : ""));
      s.details.push_back(std::move(o));
    }
  classify_final(s);
  // Odoo: a null detail while "final" means SII has not finished; ask again.
  if (s.sii_state == "EPR" && detail_null) {
    s.state = EnvelopeState::kInProgress;
    s.final = false;
  }
  return s;
}

namespace {

void classify_document(DocumentStatus& d) {
  switch (d.state) {
    case DocumentState::kReceived:
    case DocumentState::kModifiedByNote:
    case DocumentState::kAnnulledByNote:
      d.final = true;
      d.verdict = "accepted";
      break;
    case DocumentState::kDataMismatch:
      d.final = true;
      d.verdict = "accepted_with_objections";
      break;
    case DocumentState::kFolioNotAuthorized:
    case DocumentState::kFolioAnnulled:
    case DocumentState::kCompanyNotAuthorized:
      d.final = true;
      d.verdict = "rejected";
      break;
    case DocumentState::kNotReceived:
      d.final = false;
      d.verdict = "not_received";
      break;
  }
}

}  // namespace

DocumentStatus interpret_doc_state(std::string_view estado, std::string_view err_code,
                                   std::string_view glosa) {
  DocumentStatus d;
  d.sii_state = trim(estado);
  d.err_code = trim(err_code);
  d.glosa = std::string(glosa);
  const std::string& e = d.sii_state;
  if (e == "001" || e == "002" || e == "003")
    throw SiiAuthError("sii.token_expired", "document status ESTADO " + e + ": " + d.glosa);
  static const std::map<std::string, std::pair<DocumentState, const char*>, std::less<>> table = {
      {"DOK", {DocumentState::kReceived, "received by SII, data match"}},
      {"DNK", {DocumentState::kDataMismatch, "received by SII, data do not match"}},
      {"FAU", {DocumentState::kNotReceived, "not received by SII"}},
      {"FNA", {DocumentState::kFolioNotAuthorized, "folio not authorized"}},
      {"FAN", {DocumentState::kFolioAnnulled, "folio annulled"}},
      {"EMP", {DocumentState::kCompanyNotAuthorized, "company not authorized to issue DTE"}},
      {"TMD", {DocumentState::kModifiedByNote, "a debit note modifies the text"}},
      {"TMC", {DocumentState::kModifiedByNote, "a credit note modifies the text"}},
      {"MMD", {DocumentState::kModifiedByNote, "a debit note modifies amounts"}},
      {"MMC", {DocumentState::kModifiedByNote, "a credit note modifies amounts"}},
      {"AND", {DocumentState::kAnnulledByNote, "a debit note annuls the document"}},
      {"ANC", {DocumentState::kAnnulledByNote, "a credit note annuls the document"}},
  };
  if (auto it = table.find(e); it != table.end()) {
    d.state = it->second.first;
    d.description = it->second.second;
    classify_document(d);
    return d;
  }
  if (!e.empty() && e[0] == '-')
    throw SiiRejected("sii.docstatus." + e, "document status query error " + e + ": " + d.glosa, e);
  throw SiiMalformedAnswer("sii.unknown_state", "unknown document state '" + e + "' (" + d.glosa + ")");
}

namespace {

XmlDocPtr reclamo_doc(std::string_view soap, xmlNode*& ret) {
  auto doc = parse_answer(soap, "RegistroReclamoDTE");
  xmlNode* root = root_of(doc);
  if (xmlNode* fault = find_local(root, "Fault"))
    throw SiiTransportError("sii.soap_fault", "SOAP Fault: " + text_at(fault, "faultstring"));
  ret = find_local(root, "return");
  if (!ret) throw SiiMalformedAnswer("sii.no_return", "RegistroReclamoDTE answer without <return>");
  return doc;
}

int claim_code(xmlNode* ret) {
  std::string c = trim(text_at(ret, "codResp"));
  int v = to_int(c, -9999);
  if (c.empty() || v == -9999) throw SiiMalformedAnswer("sii.no_codresp", "answer without a numeric codResp");
  if (v == -1) throw SiiTransportError("sii.claims.internal", "RegistroReclamoDTE codResp -1: " +
                                                                  trim(text_at(ret, "descResp")), false);
  return v;
}

}  // namespace

ClaimResult parse_claim_answer(std::string_view soap) {
  xmlNode* ret = nullptr;
  auto doc = reclamo_doc(soap, ret);
  ClaimResult r;
  r.code = claim_code(ret);
  r.description = trim(text_at(ret, "descResp"));
  return r;
}

EventsResult parse_events_answer(std::string_view soap) {
  xmlNode* ret = nullptr;
  auto doc = reclamo_doc(soap, ret);
  EventsResult r;
  r.code = claim_code(ret);
  r.description = trim(text_at(ret, "descResp"));
  // listaEventosDoc: one element per event; a single event is the same shape (no list wrapper).
  for (xmlNode* e : children(ret, "listaEventosDoc")) {
    ClaimEvent ev;
    ev.code = trim(text_at(e, "codEvento"));
    ev.description = trim(text_at(e, "descEvento"));
    std::string rut = trim(text_at(e, "rutResponsable")), dv = trim(text_at(e, "dvResponsable"));
    ev.responsible_rut = dv.empty() ? rut : rut + "-" + dv;
    ev.date = trim(text_at(e, "fechaEvento"));
    r.events.push_back(std::move(ev));
  }
  return r;
}

std::string parse_reception_date_answer(std::string_view soap) {
  xmlNode* ret = nullptr;
  auto doc = reclamo_doc(soap, ret);
  return trim(node_text(ret));
}

MailResendResult interpret_mail_resend(const Respuesta& r) {
  MailResendResult m;
  std::string estado = r.hdr("ESTADO");
  m.glosa = r.hdr("GLOSA");
  if (estado.empty()) throw SiiMalformedAnswer("sii.no_estado", "reenvioCorreo answer without ESTADO");
  std::string msg = "reenvioCorreo ESTADO " + estado + ": " + m.glosa;
  if (estado == "104" || estado == "001" || estado == "002" || estado == "003")
    throw SiiAuthError("sii.token_expired", msg);
  static const std::map<std::string, std::pair<const char*, const char*>, std::less<>> rejected = {
      {"101", {"sii.mail.bad_rut", "error in the company RUT check digit"}},
      {"102", {"sii.mail.missing_data", "input data missing"}},
      {"105", {"sii.mail.unknown_trackid", "track id does not exist"}},
      {"106", {"sii.mail.not_authorized", "the authenticated user has no rights on the company"}},
      {"114", {"sii.mail.not_processed", "the upload has not finished its validation: no e-mail exists yet"}},
  };
  if (auto it = rejected.find(estado); it != rejected.end())
    throw SiiRejected(it->second.first, msg + " (" + it->second.second + ")", estado);
  static const std::set<std::string, std::less<>> internal = {"103", "107", "108", "110", "111", "112", "113"};
  if (internal.count(estado))
    throw SiiTransportError("sii.mail.internal", msg + " (SII internal error)", false);
  if (trim(estado) == "0" || estado == "00") {
    m.code = 0;
    m.description = "request received: SII e-mails the upload result to the company's address";
    return m;
  }
  throw SiiMalformedAnswer("sii.unknown_state", "unknown reenvioCorreo state '" + estado + "' (" + m.glosa + ")");
}

std::string to_string(EnvelopeKind k) {
  switch (k) {
    case EnvelopeKind::kAuto: return "auto";
    case EnvelopeKind::kDocuments: return "documents";
    case EnvelopeKind::kBook: return "book";
  }
  return "?";
}

EnvelopeKind envelope_kind_from_string(std::string_view s) {
  if (s == "auto" || s.empty()) return EnvelopeKind::kAuto;
  if (s == "documents") return EnvelopeKind::kDocuments;
  if (s == "book") return EnvelopeKind::kBook;
  throw DteError("sii.bad_kind", "envelope kind must be auto, documents or book, not '" + std::string(s) + "'");
}

EnvelopeKind envelope_kind_of_root(std::string_view root) {
  if (root == "EnvioDTE" || root == "EnvioBOLETA") return EnvelopeKind::kDocuments;
  if (root == "LibroCompraVenta" || root == "LibroCV" || root == "LibroGuia" || root == "LibroBoleta" ||
      root == "ConsumoFolios")
    return EnvelopeKind::kBook;
  return EnvelopeKind::kAuto;
}

const std::vector<StateInfo>& state_table() {
  static const std::vector<StateInfo> table = {
      // DTEUpload RECEPCIONDTE/STATUS (PROTOCOL §3.1)
      {"upload", "0", "upload ok, TRACKID assigned", false, "in_progress", "OFFICIAL"},
      {"upload", "1", "sender not authorized to send for the company", true, "rejected", "OFFICIAL"},
      {"upload", "2", "file size error (too big or too small)", true, "rejected", "OFFICIAL"},
      {"upload", "3", "file truncated (retried)", false, "error", "OFFICIAL"},
      {"upload", "5", "not authenticated (token renewed, upload repeated once)", false, "token", "OFFICIAL"},
      {"upload", "6", "company not authorized to send", true, "rejected", "OFFICIAL"},
      {"upload", "7", "invalid schema (DETAIL/ERROR)", true, "rejected", "OFFICIAL"},
      {"upload", "8", "signature error", true, "rejected", "OFFICIAL"},
      {"upload", "9", "system blocked (retried later)", false, "error", "OFFICIAL"},
      {"upload", "99", "file already received (duplicate = success)", false, "in_progress", "IMPL"},
      // QueryEstUp ESTADO (PROTOCOL §4.1)
      {"estup", "REC", "envelope received", false, "in_progress", "IMPL"},
      {"estup", "SOK", "schema validated", false, "in_progress", "IMPL"},
      {"estup", "CRT", "caratula ok", false, "in_progress", "IMPL"},
      {"estup", "FOK", "envelope signature validated", false, "in_progress", "IMPL"},
      {"estup", "PDR", "envelope being processed", false, "in_progress", "IMPL"},
      {"estup", "PRD", "envelope being processed (other spelling; Odoo: rejected)", false, "in_progress", "IMPL"},
      {"estup", "EPR", "envelope processed: verdict from the counts (rejected > 0 -> rejected, "
                       "objections > 0 -> accepted_with_objections, accepted == informed -> accepted); "
                       "without counts: books/RVD accepted, EnvioDTE sii.no_counts",
       true, "accepted", "IMPL"},
      {"estup", "RPR", "accepted with objections", true, "accepted_with_objections", "IMPL"},
      {"estup", "RLV", "accepted with minor objections (Odoo: rejected)", true, "accepted_with_objections", "IMPL"},
      {"estup", "RCH", "rejected (document errors)", true, "rejected", "IMPL"},
      {"estup", "RCT", "rejected: caratula error", true, "rejected", "IMPL"},
      {"estup", "RFR", "rejected: signature error", true, "rejected", "IMPL"},
      {"estup", "RSC", "rejected: schema error", true, "rejected", "IMPL"},
      {"estup", "RCS", "rejected: schema/consistency error (other spelling)", true, "rejected", "UNCERTAIN"},
      {"estup", "RCO", "rejected: consistency error", true, "rejected", "IMPL"},
      {"estup", "VOF", ".xml file not found", true, "rejected", "IMPL"},
      {"estup", "RPT", "repeated envelope (duplicate = true)", true, "rejected", "IMPL"},
      {"estup", "001", "cookie/token inactive (renew, repeat once)", false, "token", "IMPL"},
      {"estup", "002", "token inactive (renew, repeat once)", false, "token", "IMPL"},
      {"estup", "003", "token does not exist (renew, repeat once)", false, "token", "IMPL"},
      {"estup", "-11", "query error: ERR_CODE 2 / SRV_CODE 2 not processed yet (in_progress); "
                       "ERR_CODE 1 envelope not of this company (sii.status.-11)", false, "error", "IMPL"},
      {"estup", "004 005 007 106 107 -8", "undocumented, treated as in progress", false, "in_progress", "IMPL"},
      {"estup", "-1..-14", "query errors (-3 user RUT unknown, -6 user not authorized): sii.status.<code>",
       true, "error", "IMPL"},
      // Books (LibroCV/LibroGuia) through QueryEstUp
      {"estup_book", "EPR", "book/RVD processed (no per-type counts)", true, "accepted", "IMPL"},
      {"estup_book", "LOK", "book consistent (not 'set approved')", true, "accepted", "IMPL"},
      {"estup_book", "LRH", "book rejected", true, "rejected", "IMPL"},
      {"estup_book", "LNC", "book not consistent", true, "rejected", "UNCERTAIN"},
      {"estup_book", "LRF", "book rejected: signature error", true, "rejected", "UNCERTAIN"},
      {"estup_book", "LRS", "book rejected: schema error", true, "rejected", "UNCERTAIN"},
      // Boleta REST envelope (PROTOCOL §4.4): same letters as QueryEstUp; per document:
      {"boleta_envelope", "REC/EPR/RCT/RSC/RFR/RCH/RPT", "as QueryEstUp; EPR with detalle_rep_rech null = ask again",
       false, "in_progress", "IMPL"},
      {"boleta_envelope", "404", "unknown track id: sii.status.unknown_trackid", true, "error", "IMPL"},
      {"boleta_envelope", "DOK", "document accepted", true, "accepted", "IMPL"},
      {"boleta_envelope", "RPR", "document accepted with objections", true, "accepted_with_objections", "IMPL"},
      {"boleta_envelope", "RLV", "document accepted with minor objections", true, "accepted_with_objections", "IMPL"},
      {"boleta_envelope", "RCH", "document rejected", true, "rejected", "IMPL"},
      // QueryEstDte / QueryEstDteAv / boleta document status (PROTOCOL §4.2)
      {"estdte", "DOK", "received by SII, data match", true, "accepted", "IMPL"},
      {"estdte", "DNK", "received by SII, data (date/amount/receiver/signature) do not match", true,
       "accepted_with_objections", "IMPL"},
      {"estdte", "FAU", "folio not received by SII", false, "not_received", "IMPL"},
      {"estdte", "FNA", "folio not authorized (outside every CAF SII issued)", true, "rejected", "IMPL"},
      {"estdte", "FAN", "folio annulled", true, "rejected", "IMPL"},
      {"estdte", "EMP", "company not authorized to issue DTE", true, "rejected", "IMPL"},
      {"estdte", "TMD", "a debit note modifies the text", true, "accepted", "IMPL"},
      {"estdte", "TMC", "a credit note modifies the text", true, "accepted", "IMPL"},
      {"estdte", "MMD", "a debit note modifies amounts", true, "accepted", "IMPL"},
      {"estdte", "MMC", "a credit note modifies amounts", true, "accepted", "IMPL"},
      {"estdte", "AND", "a debit note annuls the document", true, "accepted", "IMPL"},
      {"estdte", "ANC", "a credit note annuls the document", true, "accepted", "IMPL"},
      {"estdte", "001/002/003", "token (renew, repeat once)", false, "token", "IMPL"},
      {"estdte", "-1..-4", "query errors: sii.docstatus.<code>", true, "error", "IMPL"},
      // wsDTECorreo.reenvioCorreo
      {"correo", "0", "request received: SII e-mails the upload result again", true, "ok", "IMPL"},
      {"correo", "101", "error in the company RUT check digit", true, "error", "IMPL"},
      {"correo", "102", "input data missing", true, "error", "IMPL"},
      {"correo", "104", "token inactive or missing (renew, repeat once)", false, "token", "IMPL"},
      {"correo", "105", "track id does not exist", true, "error", "IMPL"},
      {"correo", "106", "user has no rights on the company", true, "error", "IMPL"},
      {"correo", "114", "upload not validated yet: no e-mail exists (ask later)", false, "error", "IMPL"},
      {"correo", "103 107 108 110-113", "SII internal error (retried)", false, "error", "IMPL"},
  };
  return table;
}

std::vector<DocumentQuery> documents_of_envelope(std::string_view envelope_xml) {
  auto doc = parse_xml(envelope_xml);
  std::vector<DocumentQuery> out;
  for (xmlNode* dte : descendants(xmlDocGetRootElement(doc.get()), "DTE")) {
    xmlNode* enc = find_path(dte, "Documento/Encabezado");
    if (!enc) continue;
    DocumentQuery q;
    q.issuer_rut = trim(text_at(enc, "Emisor/RUTEmisor"));
    q.receiver_rut = trim(text_at(enc, "Receptor/RUTRecep"));
    q.doc_type = to_int(text_at(enc, "IdDoc/TipoDTE"));
    q.folio = to_int(text_at(enc, "IdDoc/Folio"));
    q.date = trim(text_at(enc, "IdDoc/FchEmis"));
    try {
      q.amount = std::stoll(trim(text_at(enc, "Totales/MntTotal")));
    } catch (const std::exception&) {
      q.amount = 0;
    }
    for (xmlNode* sig : children(dte, "Signature")) q.signature_value = trim(text_at(sig, "SignatureValue"));
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace dte::sii
