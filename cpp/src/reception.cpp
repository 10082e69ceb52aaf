#include "dte/reception.hpp"

#include <algorithm>
#include <map>

#include "dte/errors.hpp"
#include "dte/rut.hpp"
#include "verify_internal.hpp"

namespace dte::reception {
namespace {

std::string local_name(const xmlNode* n) {
  return n && n->name ? reinterpret_cast<const char*>(n->name) : "";
}

std::string attr(const xmlNode* n, const char* name) {
  XmlCharPtr v(xmlGetNoNsProp(n, BAD_CAST name));
  return v ? reinterpret_cast<const char*>(v.get()) : "";
}

std::string norm_rut(std::string_view s) {
  auto r = Rut::try_parse(s);
  return r ? r->str() : std::string(s);
}

long long to_ll(const std::string& s) {
  try {
    std::size_t used = 0;
    long long v = std::stoll(s, &used);
    return used == s.size() ? v : 0;
  } catch (...) {
    return 0;
  }
}

std::string subject_of(int type, long long folio, const std::string& id) {
  if (type || folio) return "T" + std::to_string(type) + "F" + std::to_string(folio);
  return id.empty() ? std::string("DTE") : id;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

void join(std::string& out, const std::string& more) {
  if (more.empty()) return;
  if (!out.empty()) out += "; ";
  out += more;
}

std::string describe(const Check& c) {
  return c.name + (c.reason.empty() ? std::string(" failed") : ": " + c.reason);
}

}  // namespace

const char* to_string(XmlKind k) noexcept {
  switch (k) {
    case XmlKind::kEnvioDTE: return "EnvioDTE";
    case XmlKind::kRespuestaDTE: return "RespuestaDTE";
    case XmlKind::kEnvioRecibos: return "EnvioRecibos";
    case XmlKind::kResultadoEnvio: return "ResultadoEnvio";
    case XmlKind::kOther: return "other";
  }
  return "other";
}

Classification classify_xml(std::string_view bytes, const ParseLimits& limits) {
  Classification c;
  XmlDocPtr doc;
  try {
    doc = parse_xml(bytes, limits);
  } catch (const std::exception& e) {
    c.reason = e.what();
    return c;
  }
  xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!root) {
    c.reason = "no root element";
    return c;
  }
  c.readable = true;
  c.root = local_name(root);
  const bool sii_ns = root->ns && xmlStrEqual(root->ns->href, BAD_CAST kSiiNs);
  if (sii_ns && (c.root == "EnvioDTE" || c.root == "EnvioBOLETA")) {
    c.kind = XmlKind::kEnvioDTE;
  } else if (sii_ns && c.root == "RespuestaDTE") {
    c.kind = XmlKind::kRespuestaDTE;
  } else if (sii_ns && c.root == "EnvioRecibos") {
    c.kind = XmlKind::kEnvioRecibos;
  } else if (c.root == "RESULTADO_ENVIO" || c.root == "RECEPCIONDTE" ||
             c.root == "RESULTADO_REVISION") {
    c.kind = XmlKind::kResultadoEnvio;
  }
  return c;
}

std::string document_key(std::string_view issuer_rut, int doc_type, long long folio) {
  return norm_rut(issuer_rut) + "|" + std::to_string(doc_type) + "|" + std::to_string(folio);
}

bool ReceivedEnvelope::ok() const noexcept {
  return state == kEnvioOk &&
         std::all_of(documents.begin(), documents.end(), [](const ReceivedDocument& d) { return d.ok(); });
}

ReceivedEnvelope verify_received(std::string_view bytes, const ReceptionOptions& options) {
  ReceivedEnvelope env;
  VerifyOptions vo;
  vo.keyring = options.keyring;
  vo.schemas = options.schemas;
  vo.check_cert_validity = options.check_cert_validity;
  vo.limits = options.limits;
  // One streaming pass gives the checks and, for an EnvioDTE in the common shape, the facts read
  // below; otherwise the DOM verifier reports and the envelope is parsed for the facts.
  VerifyReport report;
  detail::EnvelopeFacts facts;
  if (!detail::stream_verify(bytes, vo, &report, &facts)) {
    facts = detail::EnvelopeFacts{};
    vo.streaming = false;
    report = verify_document(bytes, vo);
  }
  env.kind = report.kind;

  // Reception is stricter than a general verification: what could not be checked is not
  // trusted. A CAF whose IDK no trusted SII key covers, or no schema at hand, is a failure.
  for (Check& c : report.checks) {
    if (c.status != CheckStatus::kSkip) continue;
    if (c.name == "schema" || starts_with(c.name, "ted.")) {
      c.status = CheckStatus::kFail;
      c.reason = (c.name == "ted.caf" ? "CAF not signed by a trusted SII key: " : "not checked: ") +
                 c.reason;
    }
  }

  auto xml_failed = std::find_if(report.checks.begin(), report.checks.end(), [](const Check& c) {
    return c.name == "xml" && c.status == CheckStatus::kFail;
  });
  if (xml_failed != report.checks.end()) {
    env.checks = report.checks;
    env.state = kEnvioUnreadable;
    env.glosa = truncate_chars("Archivo ilegible: " + xml_failed->reason, 256);
    return env;
  }
  const std::string company = norm_rut(options.company_rut);
  if (env.kind != "EnvioDTE" && env.kind != "EnvioBOLETA") {
    env.checks = report.checks;
    env.checks.push_back(Check{"kind", env.kind, CheckStatus::kFail,
                               "<" + env.kind + "> is not an EnvioDTE"});
    env.state = kEnvioOther;
    env.glosa = "El archivo no es un EnvioDTE";
    return env;
  }
  // Each DTE of the SetDTE: what the verifier read of it and its text for the archive.
  std::vector<ReceivedDocument> received;
  if (facts.complete) {
    env.set_id = facts.set_id;
    env.rut_emisor = norm_rut(facts.rut_emisor);
    env.rut_envia = norm_rut(facts.rut_envia);
    env.rut_receptor = norm_rut(facts.rut_receptor);
    env.tmst_firma_env = facts.tmst_firma_env;
    env.digest = facts.digest;
    for (std::size_t i = 0; i < facts.dte_xml.size(); ++i) {
      ReceivedDocument rd;
      if (i < report.documents.size()) rd.doc = report.documents[i];
      rd.xml = std::move(facts.dte_xml[i]);
      received.push_back(std::move(rd));
    }
  } else {
    XmlDocPtr doc;
    try {
      ParseLimits limits = options.limits;
      doc = parse_xml(bytes, limits);
    } catch (const std::exception& e) {
      env.checks = report.checks;
      env.state = kEnvioUnreadable;
      env.glosa = truncate_chars(std::string("Archivo ilegible: ") + e.what(), 256);
      return env;
    }
    xmlNode* root = xmlDocGetRootElement(doc.get());
    xmlNode* set = child(root, "SetDTE");
    xmlNode* caratula = set ? child(set, "Caratula") : nullptr;
    if (set) env.set_id = attr(set, "ID");
    env.rut_emisor = norm_rut(text_at(caratula, "RutEmisor"));
    env.rut_envia = norm_rut(text_at(caratula, "RutEnvia"));
    env.rut_receptor = norm_rut(text_at(caratula, "RutReceptor"));
    env.tmst_firma_env = text_at(caratula, "TmstFirmaEnv");
    for (xmlNode* sig : children(root, "Signature")) {
      env.digest = text_at(sig, "SignedInfo/Reference/DigestValue");
      if (!env.digest.empty()) break;
    }
    std::vector<xmlNode*> dtes = set ? children(set, "DTE") : std::vector<xmlNode*>{};
    for (std::size_t i = 0; i < dtes.size(); ++i) {
      ReceivedDocument rd;
      if (i < report.documents.size()) rd.doc = report.documents[i];
      xmlNode* documento = child(dtes[i], "Documento");
      if (!documento) documento = child(dtes[i], "Exportaciones");
      if (!documento) documento = child(dtes[i], "Liquidacion");
      if (documento) {
        rd.doc.id = attr(documento, "ID");
        rd.doc.doc_type = static_cast<int>(to_ll(text_at(documento, "Encabezado/IdDoc/TipoDTE")));
        rd.doc.folio = to_ll(text_at(documento, "Encabezado/IdDoc/Folio"));
        rd.doc.issuer_rut = text_at(documento, "Encabezado/Emisor/RUTEmisor");
        rd.doc.receiver_rut = text_at(documento, "Encabezado/Receptor/RUTRecep");
        rd.doc.issue_date = text_at(documento, "Encabezado/IdDoc/FchEmis");
      }
      rd.xml = serialize_node(dtes[i]);
      received.push_back(std::move(rd));
    }
  }

  // Per document: its checks (by subject), then the receiver, issuer and duplicate checks.
  std::map<std::string, std::vector<const Check*>> by_subject;
  for (const Check& c : report.checks) by_subject[c.subject].push_back(&c);
  std::set<std::string> doc_subjects;
  std::set<std::string> seen;
  for (ReceivedDocument& rd : received) {
    const std::string subject = subject_of(rd.doc.doc_type, rd.doc.folio, rd.doc.id);
    doc_subjects.insert(subject);
    for (const Check* c : by_subject[subject]) rd.checks.push_back(*c);

    const bool issuer_ok = norm_rut(rd.doc.issuer_rut) == env.rut_emisor;
    rd.checks.push_back(Check{"issuer.rut", subject, issuer_ok ? CheckStatus::kPass : CheckStatus::kFail,
                              issuer_ok ? "" : "RUTEmisor " + rd.doc.issuer_rut +
                                                   " is not the Caratula's RutEmisor " + env.rut_emisor});
    const bool receiver_ok = norm_rut(rd.doc.receiver_rut) == company;
    rd.checks.push_back(Check{"receiver.rut", subject,
                              receiver_ok ? CheckStatus::kPass : CheckStatus::kFail,
                              receiver_ok ? "" : "RUTRecep " + rd.doc.receiver_rut +
                                                     " is not our RUT " + company});
    rd.key = document_key(rd.doc.issuer_rut, rd.doc.doc_type, rd.doc.folio);
    const bool known = options.known && options.known->count(rd.key);
    const bool repeated = !seen.insert(rd.key).second;
    rd.duplicate = known || repeated;
    rd.checks.push_back(Check{"duplicate", subject, rd.duplicate ? CheckStatus::kFail : CheckStatus::kPass,
                              known      ? "already received (" + rd.key + ")"
                              : repeated ? "appears twice in this envelope (" + rd.key + ")"
                                         : ""});

    std::string why;
    int state = kDteOk;
    auto failed = [&](const char* prefix) {
      bool any = false;
      for (const Check& c : rd.checks) {
        if (c.status == CheckStatus::kFail && starts_with(c.name, prefix)) {
          join(why, describe(c));
          any = true;
        }
      }
      return any;
    };
    // SII's order of precedence: signature, issuer, receiver, repeated, other.
    if (failed("dte.") | failed("cert.")) state = kDteSignature;
    if (failed("issuer.") && state == kDteOk) state = kDteIssuer;
    if (failed("receiver.") && state == kDteOk) state = kDteReceiver;
    if (failed("duplicate") && state == kDteOk) state = kDteRepeated;
    if (failed("ted.") && state == kDteOk) state = kDteOther;
    rd.state = state;
    rd.doc.ok = state == kDteOk;
    rd.glosa = truncate_chars(state == kDteOk ? std::string("DTE Recibido OK") : why, 256);
    env.documents.push_back(std::move(rd));
  }

  // Envelope level: the checks that are not about one document.
  env.checks = report.checks;
  const bool receiver_ok = env.rut_receptor == company;
  env.checks.push_back(Check{"receiver.rut", "Caratula", receiver_ok ? CheckStatus::kPass : CheckStatus::kFail,
                             receiver_ok ? "" : "Caratula RutReceptor " + env.rut_receptor +
                                                    " is not our RUT " + company});
  for (const auto& d : env.documents)
    for (const Check& c : d.checks)
      if (c.name == "issuer.rut" || c.name == "receiver.rut" || c.name == "duplicate") env.checks.push_back(c);

  std::string schema_why, sig_why, other_why;
  for (const Check& c : report.checks) {
    if (c.status != CheckStatus::kFail || doc_subjects.count(c.subject)) continue;
    if (c.name == "schema") join(schema_why, describe(c));
    else if (starts_with(c.name, "envelope.signature") || starts_with(c.name, "cert.") ||
             c.name == "dte.signature_target")
      join(sig_why, describe(c));
    else join(other_why, describe(c));
  }
  const bool all_dup = !env.documents.empty() &&
                       std::all_of(env.documents.begin(), env.documents.end(),
                                   [](const ReceivedDocument& d) { return d.duplicate; });
  if (env.documents.empty()) join(other_why, "the envelope holds no DTE");
  if (!schema_why.empty()) {
    env.state = kEnvioSchema;
    env.glosa = "Error de schema: " + schema_why;
  } else if (!sig_why.empty()) {
    env.state = kEnvioSignature;
    env.glosa = "Error de firma: " + sig_why;
  } else if (!receiver_ok) {
    env.state = kEnvioWrongReceiver;
    env.glosa = "RUT receptor no corresponde: " + env.rut_receptor;
  } else if (all_dup) {
    env.state = kEnvioRepeated;
    env.glosa = "Envio repetido";
  } else if (!other_why.empty()) {
    env.state = kEnvioOther;
    env.glosa = other_why;
  } else {
    env.state = kEnvioOk;
    env.glosa = "Envio recibido conforme";
  }
  env.glosa = truncate_chars(env.glosa, 256);
  return env;
}

MessageOutcome process_message(std::string_view raw, const ReceptionOptions& options,
                               const mime::MimeLimits& mime_limits) {
  MessageOutcome out;
  out.mime = mime::parse_message(raw, mime_limits);
  std::string why;
  if (!out.mime.ok) {
    out.quarantined = true;
    out.reason = out.mime.error_code + ": " + out.mime.error;
    return out;
  }
  for (const auto& r : out.mime.refused) {
    MessageItem item;
    item.filename = r.filename;
    item.part_path = r.part_path;
    item.status = "refused";
    item.reason = r.code + ": " + r.reason;
    join(why, (r.filename.empty() ? "part " + r.part_path : r.filename) + ": " + item.reason);
    out.items.push_back(std::move(item));
  }
  std::set<std::string> known = options.known ? *options.known : std::set<std::string>{};
  ReceptionOptions opts = options;
  opts.known = &known;
  for (auto& att : out.mime.xml) {
    MessageItem item;
    item.filename = att.filename;
    item.part_path = att.part_path;
    item.xml = std::move(att.data);
    item.classification = classify_xml(item.xml, options.limits);
    const std::string name = item.filename.empty() ? "part " + item.part_path : item.filename;
    if (!item.classification.readable) {
      item.status = "unreadable";
      item.reason = item.classification.reason;
      join(why, name + ": unreadable XML: " + item.reason);
    } else if (item.classification.kind == XmlKind::kEnvioDTE) {
      item.has_envelope = true;
      item.envelope = verify_received(item.xml, opts);
      if (item.envelope.ok())
        for (const auto& d : item.envelope.documents) known.insert(d.key);
      if (item.envelope.ok()) {
        item.status = "verified";
      } else {
        item.status = "failed";
        std::string r = item.envelope.state == kEnvioOk ? std::string() : item.envelope.glosa;
        for (const auto& d : item.envelope.documents)
          if (!d.ok()) join(r, subject_of(d.doc.doc_type, d.doc.folio, d.doc.id) + ": " + d.glosa);
        item.reason = r;
        join(why, name + ": " + r);
      }
    } else if (item.classification.kind == XmlKind::kRespuestaDTE ||
               item.classification.kind == XmlKind::kEnvioRecibos) {
      VerifyOptions vo;
      vo.schemas = options.schemas;
      vo.check_cert_validity = options.check_cert_validity;
      vo.limits = options.limits;
      VerifyReport rep = verify_document(item.xml, vo);
      item.checks = rep.checks;
      std::string r;
      for (const Check& c : rep.checks)
        if (c.status == CheckStatus::kFail) join(r, describe(c));
      item.status = r.empty() ? "answer" : "failed";
      item.reason = r;
      if (!r.empty()) join(why, name + ": " + r);
    } else if (item.classification.kind == XmlKind::kResultadoEnvio) {
      item.status = "answer";
    } else {
      item.status = "ignored";
      item.reason = "not a DTE exchange document (root <" + item.classification.root + ">)";
    }
    out.items.push_back(std::move(item));
  }
  const bool useful = std::any_of(out.items.begin(), out.items.end(), [](const MessageItem& i) {
    return i.status == "verified" || i.status == "answer";
  });
  if (!why.empty()) {
    out.quarantined = true;
    out.reason = why;
  } else if (!useful) {
    out.quarantined = true;
    out.reason = out.items.empty() ? "no XML attachment" : "no DTE exchange document among the attachments";
  }
  return out;
}

}  // namespace dte::reception
