// The receiver's answers: RespuestaDTE (RecepcionEnvio / ResultadoDTE) and EnvioRecibos.
#include <algorithm>
#include <cctype>

#include "dte/errors.hpp"
#include "dte/reception.hpp"
#include "dte/rut.hpp"
#include "dte/signer.hpp"

namespace dte::reception {

// Recibos_v10.xsd, DocumentoRecibo/Declaracion/@fixed, byte for byte (the schema fixes it, so a
// single changed character makes the receipt schema-invalid).
const char* const kDeclaracionRecibo =
    "El acuse de recibo que se declara en este acto, de acuerdo a lo dispuesto en la letra b) del "
    "Art. 4, y la letra c) del Art. 5 de la Ley 19.983, acredita que la entrega de mercaderias o "
    "servicio(s) prestado(s) ha(n) sido recibido(s).";

namespace {

[[noreturn]] void invalid(const std::string& what) { throw DocumentError("respuesta.invalid", what); }

std::string rut(std::string_view value, const char* field) {
  auto r = Rut::try_parse(value);
  if (!r) invalid(std::string(field) + " '" + std::string(value) + "' is not a valid RUT");
  return r->str();
}

bool digits_at(std::string_view s, std::initializer_list<std::size_t> at) {
  for (std::size_t i : at)
    if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

std::string date(std::string_view s, const char* field) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-' || !digits_at(s, {0, 1, 2, 3, 5, 6, 8, 9}))
    invalid(std::string(field) + " '" + std::string(s) + "' is not a date YYYY-MM-DD");
  return std::string(s);
}

std::string timestamp(std::string_view s, const char* field) {
  std::string t = s.empty() ? now_timestamp() : std::string(s);
  if (t.size() != 19 || t[10] != 'T' || t[13] != ':' || t[16] != ':')
    invalid(std::string(field) + " '" + t + "' is not YYYY-MM-DDTHH:MM:SS");
  date(std::string_view(t).substr(0, 10), field);
  return t;
}

std::string positive(long long v, long long max, const char* field) {
  if (v <= 0 || v > max) invalid(std::string(field) + " " + std::to_string(v) + " is outside 1.." + std::to_string(max));
  return std::to_string(v);
}

std::string text(std::string_view s, std::size_t max) { return escape_text(truncate_chars(latin1_safe(s), max)); }

void el(std::string& out, const char* name, const std::string& escaped_value) {
  out += '<';
  out += name;
  out += '>';
  out += escaped_value;
  out += "</";
  out += name;
  out += ">\n";
}

void caratula_contact(std::string& out, const ResponseCaratula& c) {
  if (!c.nmb_contacto.empty()) el(out, "NmbContacto", text(c.nmb_contacto, 40));
  if (!c.fono_contacto.empty()) el(out, "FonoContacto", text(c.fono_contacto, 40));
  if (!c.mail_contacto.empty()) el(out, "MailContacto", text(c.mail_contacto, 80));
}

void document_fields(std::string& out, const char* type_tag, int tipo, long long folio,
                     const std::string& fch, const std::string& emisor, const std::string& recep,
                     long long total) {
  if (tipo <= 0 || tipo > 999) invalid(std::string(type_tag) + " " + std::to_string(tipo) + " is not a document type");
  el(out, type_tag, std::to_string(tipo));
  el(out, "Folio", positive(folio, 9999999999LL, "Folio"));
  el(out, "FchEmis", date(fch, "FchEmis"));
  el(out, "RUTEmisor", rut(emisor, "RUTEmisor"));
  el(out, "RUTRecep", rut(recep, "RUTRecep"));
  if (total < 0) invalid("MntTotal " + std::to_string(total) + " is negative");
  el(out, "MntTotal", std::to_string(total));
}

xmlNode* last_element(xmlNode* parent) {
  for (xmlNode* c = parent->last; c; c = c->prev)
    if (c->type == XML_ELEMENT_NODE) return c;
  return nullptr;
}

void require_key(const Certificate& cert, const std::string& when) {
  if (!cert.has_private_key())
    throw CertificateError("cert.no_private_key", "the certificate has no private key to sign with");
  cert.check_valid_at(when);
}

// Parses the unsigned text, signs `Resultado`, returns ISO-8859-1 bytes.
std::string sign_respuesta(const std::string& body, const std::string& id, const Certificate& cert) {
  XmlDocPtr doc = parse_xml(body);
  register_ids(doc.get());
  append_signature(doc.get(), xmlDocGetRootElement(doc.get()), id, cert);
  return serialize(doc.get(), "ISO-8859-1");
}

std::string respuesta_head(const ResponseCaratula& c, const std::string& id, std::size_t count,
                           const std::string& tmst) {
  // Only the default namespace on the root: the in-place canonical form of Resultado is then
  // the same as a standalone one, whichever way the supplier verifies.
  std::string out = "<RespuestaDTE xmlns=\"http://www.sii.cl/SiiDte\" version=\"1.0\">\n<Resultado ID=\"" +
                    id + "\">\n<Caratula version=\"1.0\">\n";
  el(out, "RutResponde", rut(c.rut_responde, "RutResponde"));
  el(out, "RutRecibe", rut(c.rut_recibe, "RutRecibe"));
  el(out, "IdRespuesta", positive(c.id_respuesta, 9999999999LL, "IdRespuesta"));
  el(out, "NroDetalles", positive(static_cast<long long>(count), 9999, "NroDetalles"));
  caratula_contact(out, c);
  el(out, "TmstFirmaResp", tmst);
  out += "</Caratula>\n";
  return out;
}

}  // namespace

RecepcionEnvioItem recepcion_from(const ReceivedEnvelope& env, std::string_view nmb_envio,
                                  long long cod_envio, std::string_view fch_recep) {
  RecepcionEnvioItem item;
  item.nmb_envio = std::string(nmb_envio);
  item.fch_recep = std::string(fch_recep);
  item.cod_envio = cod_envio;
  item.envio_dte_id = env.set_id.empty() ? std::string("SetDoc") : env.set_id;
  item.digest = env.digest;
  item.rut_emisor = env.rut_emisor;
  item.rut_receptor = env.rut_receptor;
  item.estado = env.state;
  item.glosa = env.glosa;
  for (const auto& d : env.documents) {
    RecepcionDteItem r;
    r.tipo_dte = d.doc.doc_type;
    r.folio = d.doc.folio;
    r.fch_emis = d.doc.issue_date;
    r.rut_emisor = d.doc.issuer_rut;
    r.rut_recep = d.doc.receiver_rut;
    r.mnt_total = d.doc.total;
    r.estado = d.state;
    r.glosa = d.glosa;
    item.documents.push_back(std::move(r));
  }
  return item;
}

std::string build_recepcion_envio(const ResponseCaratula& caratula,
                                  const std::vector<RecepcionEnvioItem>& items,
                                  const Certificate& cert) {
  if (items.empty()) invalid("a RespuestaDTE needs at least one RecepcionEnvio");
  const std::string tmst = timestamp(caratula.tmst_firma, "TmstFirmaResp");
  require_key(cert, tmst);
  const std::string id = "RecepEnv" + std::to_string(caratula.id_respuesta);
  std::string out = respuesta_head(caratula, id, items.size(), tmst);
  for (const auto& e : items) {
    out += "<RecepcionEnvio>\n";
    if (e.nmb_envio.empty()) invalid("NmbEnvio is empty");
    el(out, "NmbEnvio", text(e.nmb_envio, 80));
    el(out, "FchRecep", timestamp(e.fch_recep, "FchRecep"));
    el(out, "CodEnvio", positive(e.cod_envio, 9999999999LL, "CodEnvio"));
    if (e.envio_dte_id.empty()) invalid("EnvioDTEID is empty");
    el(out, "EnvioDTEID", text(e.envio_dte_id, 80));
    if (!e.digest.empty()) el(out, "Digest", escape_text(e.digest));
    if (!e.rut_emisor.empty() && Rut::try_parse(e.rut_emisor)) el(out, "RutEmisor", rut(e.rut_emisor, "RutEmisor"));
    if (!e.rut_receptor.empty() && Rut::try_parse(e.rut_receptor))
      el(out, "RutReceptor", rut(e.rut_receptor, "RutReceptor"));
    static const int kStates[] = {0, 1, 2, 3, 90, 91, 99};
    if (std::find(std::begin(kStates), std::end(kStates), e.estado) == std::end(kStates))
      invalid("EstadoRecepEnv " + std::to_string(e.estado) + " is not 0, 1, 2, 3, 90, 91 or 99");
    el(out, "EstadoRecepEnv", std::to_string(e.estado));
    el(out, "RecepEnvGlosa", text(e.glosa.empty() ? "Envio recibido" : e.glosa, 256));
    if (!e.documents.empty()) {
      el(out, "NroDTE", positive(static_cast<long long>(e.documents.size()), 9999, "NroDTE"));
      for (const auto& d : e.documents) {
        out += "<RecepcionDTE>\n";
        document_fields(out, "TipoDTE", d.tipo_dte, d.folio, d.fch_emis, d.rut_emisor, d.rut_recep, d.mnt_total);
        static const int kDocStates[] = {0, 1, 2, 3, 4, 99};
        if (std::find(std::begin(kDocStates), std::end(kDocStates), d.estado) == std::end(kDocStates))
          invalid("EstadoRecepDTE " + std::to_string(d.estado) + " is not 0, 1, 2, 3, 4 or 99");
        el(out, "EstadoRecepDTE", std::to_string(d.estado));
        el(out, "RecepDTEGlosa", text(d.glosa.empty() ? "DTE Recibido OK" : d.glosa, 256));
        out += "</RecepcionDTE>\n";
      }
    }
    out += "</RecepcionEnvio>\n";
  }
  out += "</Resultado>\n</RespuestaDTE>\n";
  return sign_respuesta(out, id, cert);
}

std::string build_resultado_dte(const ResponseCaratula& caratula,
                                const std::vector<ResultadoDteItem>& items,
                                const Certificate& cert) {
  if (items.empty()) invalid("a RespuestaDTE needs at least one ResultadoDTE");
  const std::string tmst = timestamp(caratula.tmst_firma, "TmstFirmaResp");
  require_key(cert, tmst);
  const std::string id = "ResultDTE" + std::to_string(caratula.id_respuesta);
  std::string out = respuesta_head(caratula, id, items.size(), tmst);
  for (const auto& r : items) {
    out += "<ResultadoDTE>\n";
    document_fields(out, "TipoDTE", r.tipo_dte, r.folio, r.fch_emis, r.rut_emisor, r.rut_recep, r.mnt_total);
    el(out, "CodEnvio", positive(r.cod_envio, 9999999999LL, "CodEnvio"));
    if (r.estado < 0 || r.estado > 2) invalid("EstadoDTE " + std::to_string(r.estado) + " is not 0, 1 or 2");
    if (r.estado != 0 && r.glosa.empty())
      invalid("a rejection or discrepancy must state its reason (EstadoDTEGlosa)");
    el(out, "EstadoDTE", std::to_string(r.estado));
    el(out, "EstadoDTEGlosa", text(r.glosa.empty() ? "DTE Aceptado OK" : r.glosa, 256));
    if (r.cod_rch_dsc != 0) {
      if (r.cod_rch_dsc > 0 || r.cod_rch_dsc < -999) invalid("CodRchDsc must be -1..-999");
      el(out, "CodRchDsc", std::to_string(r.cod_rch_dsc));
    }
    out += "</ResultadoDTE>\n";
  }
  out += "</Resultado>\n</RespuestaDTE>\n";
  return sign_respuesta(out, id, cert);
}

std::string build_envio_recibos(const ResponseCaratula& caratula, const std::vector<ReciboItem>& items,
                                const Certificate& cert) {
  if (items.empty()) invalid("an EnvioRecibos needs at least one Recibo");
  const std::string tmst = timestamp(caratula.tmst_firma, "TmstFirmaEnv");
  require_key(cert, tmst);
  const std::string signer = cert.info().signer_rut;
  std::string out =
      "<EnvioRecibos xmlns=\"http://www.sii.cl/SiiDte\" version=\"1.0\">\n<SetRecibos ID=\"SetRecibos\">\n"
      "<Caratula version=\"1.0\">\n";
  el(out, "RutResponde", rut(caratula.rut_responde, "RutResponde"));
  el(out, "RutRecibe", rut(caratula.rut_recibe, "RutRecibe"));
  caratula_contact(out, caratula);
  el(out, "TmstFirmaEnv", tmst);
  out += "</Caratula>\n";
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& r = items[i];
    std::string id = "R" + std::to_string(i + 1) + "T" + std::to_string(r.tipo_doc) + "F" + std::to_string(r.folio);
    ids.push_back(id);
    out += "<Recibo version=\"1.0\">\n<DocumentoRecibo ID=\"" + id + "\">\n";
    document_fields(out, "TipoDoc", r.tipo_doc, r.folio, r.fch_emis, r.rut_emisor, r.rut_recep, r.mnt_total);
    if (r.recinto.empty()) invalid("Recinto (where the goods or services were received) is empty");
    el(out, "Recinto", text(r.recinto, 80));
    std::string firma = r.rut_firma.empty() ? signer : r.rut_firma;
    if (firma.empty()) invalid("RutFirma is empty and the certificate carries no RUT");
    el(out, "RutFirma", rut(firma, "RutFirma"));
    el(out, "Declaracion", kDeclaracionRecibo);
    el(out, "TmstFirmaRecibo", timestamp(r.tmst_firma, "TmstFirmaRecibo"));
    out += "</DocumentoRecibo>\n</Recibo>\n";
  }
  out += "</SetRecibos>\n</EnvioRecibos>\n";

  XmlDocPtr doc = parse_xml(out);
  register_ids(doc.get());
  xmlNode* root = xmlDocGetRootElement(doc.get());
  xmlNode* set = child(root, "SetRecibos");
  std::vector<xmlNode*> recibos = children(set, "Recibo");
  // Each receipt first: SetRecibos' digest must cover the receipts' signatures.
  for (std::size_t i = 0; i < recibos.size(); ++i) append_signature(doc.get(), recibos[i], ids[i], cert);
  append_signature(doc.get(), root, "SetRecibos", cert);
  if (!last_element(root) || !xmlStrEqual(last_element(root)->name, BAD_CAST "Signature"))
    throw SignatureError("sign.failed", "the SetRecibos signature was not appended");
  return serialize(doc.get(), "ISO-8859-1");
}

}  // namespace dte::reception
