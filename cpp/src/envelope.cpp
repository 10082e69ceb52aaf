#include "dte/envelope.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "dte/errors.hpp"
#include "dte/rut.hpp"
#include "dte/signer.hpp"
#include "dte/xml.hpp"

namespace dte {
namespace {

constexpr std::size_t kMaxDtes = 2000;
constexpr std::size_t kMaxBoletas = 500;
constexpr std::size_t kMaxTypes = 20;
constexpr std::size_t kMaxBoletaTypes = 2;

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// The DTE element's bytes as they go into SetDTE: declaration and surrounding blanks cut,
// Latin-1. A DTE that came as UTF-8 is re-encoded; that changes bytes, not characters, so its
// canonical form (UTF-8 by definition) and with it the signature stay the same.
std::string dte_body(const std::string& bytes, std::size_t index) {
  std::string_view view(bytes);
  bool bom = view.substr(0, 3) == "\xEF\xBB\xBF";
  if (bom) view.remove_prefix(3);
  std::string encoding = bom ? std::string("utf-8") : declared_encoding(view);
  if (view.substr(0, 5) == "<?xml") {
    auto end = view.find("?>");
    view.remove_prefix(end + 2);
  }
  while (!view.empty() && is_space(view.front())) view.remove_prefix(1);
  while (!view.empty() && is_space(view.back())) view.remove_suffix(1);
  if (view.substr(0, 4) != "<DTE") {
    throw DocumentError("envelope.not_dte", "document " + std::to_string(index + 1) +
                                                " of the envelope does not start with <DTE>");
  }
  if (encoding == "utf-8" || encoding == "utf8") return to_latin1(view, /*strict=*/true);
  return std::string(view);
}

struct DteFacts {
  int type = 0;
  std::string issuer;
  std::string id;
};

DteFacts read_facts(const std::string& bytes, std::size_t index) {
  ParseLimits limits;
  XmlDocPtr doc = parse_xml(bytes, limits);
  xmlNode* root = xmlDocGetRootElement(doc.get());
  const std::string where = "document " + std::to_string(index + 1) + " of the envelope";
  if (!xmlStrEqual(root->name, BAD_CAST "DTE") || !root->ns ||
      !xmlStrEqual(root->ns->href, BAD_CAST kSiiNs)) {
    throw DocumentError("envelope.not_dte",
                        where + " is not a <DTE> of namespace " + std::string(kSiiNs));
  }
  xmlNode* body = child(root, "Documento");
  if (!body) body = child(root, "Liquidacion");
  if (!body) body = child(root, "Exportaciones");
  if (!body) throw DocumentError("envelope.not_dte", where + " has no Documento");
  if (!child(root, "Signature")) {
    throw DocumentError("envelope.unsigned", where + " is not signed");
  }
  DteFacts facts;
  std::string tipo = text_at(body, "Encabezado/IdDoc/TipoDTE");
  try {
    std::size_t used = 0;
    facts.type = std::stoi(tipo, &used);
    if (used != tipo.size()) facts.type = 0;
  } catch (...) {
    facts.type = 0;
  }
  if (facts.type <= 0) throw DocumentError("envelope.not_dte", where + " has no valid TipoDTE");
  std::string rut = text_at(body, "Encabezado/Emisor/RUTEmisor");
  auto parsed = Rut::try_parse(rut);
  if (!parsed) throw DocumentError("envelope.issuer", where + " has an invalid RUTEmisor '" + rut + "'");
  facts.issuer = parsed->str();
  XmlCharPtr id(xmlGetNoNsProp(body, BAD_CAST "ID"));
  if (id) facts.id = reinterpret_cast<const char*>(id.get());
  return facts;
}

bool is_boleta_type(int t) { return t == 39 || t == 41; }

bool is_ncname(std::string_view s) {
  if (s.empty()) return false;
  auto ok_first = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; };
  auto ok_rest = [&](char c) {
    return ok_first(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  };
  if (!ok_first(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(), ok_rest);
}

bool is_date(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

bool is_timestamp(std::string_view s) {
  return s.size() == 19 && is_date(s.substr(0, 10)) && s[10] == 'T' && s[13] == ':' &&
         s[16] == ':';
}

std::string caratula_rut(std::string_view value, const char* field) {
  auto rut = Rut::try_parse(value);
  if (!rut) {
    throw DocumentError("envelope.caratula", std::string("Caratula ") + field + " '" +
                                                 std::string(value) + "' is not a valid RUT");
  }
  return rut->str();
}

void element(std::string& out, const char* name, const std::string& text) {
  out += "<";
  out += name;
  out += ">";
  out += escape_text(text);
  out += "</";
  out += name;
  out += ">";
}

}  // namespace

std::string build_envelope(const std::vector<std::string>& signed_dtes, const Caratula& caratula,
                           const Certificate& cert, bool boleta, std::string_view set_id) {
  if (signed_dtes.empty()) throw DocumentError("envelope.empty", "an envelope needs at least one DTE");
  const std::size_t max_docs = boleta ? kMaxBoletas : kMaxDtes;
  if (signed_dtes.size() > max_docs) {
    throw DocumentError("envelope.too_many",
                        std::to_string(signed_dtes.size()) + " documents exceed the limit of " +
                            std::to_string(max_docs) + (boleta ? " boletas" : " DTEs") +
                            " per envelope");
  }
  if (!is_ncname(set_id)) {
    throw DocumentError("envelope.caratula", "SetDTE ID '" + std::string(set_id) +
                                                 "' is not a valid XML ID");
  }

  // Caratula first: a wrong field is cheaper to report than after parsing 2000 DTEs.
  const std::string rut_emisor = caratula_rut(caratula.rut_emisor, "RutEmisor");
  std::string rut_envia_text = caratula.rut_envia.empty() ? cert.info().signer_rut : caratula.rut_envia;
  if (rut_envia_text.empty()) {
    throw DocumentError("envelope.caratula",
                        "Caratula RutEnvia is empty and the certificate carries no RUT");
  }
  const std::string rut_envia = caratula_rut(rut_envia_text, "RutEnvia");
  const std::string rut_receptor = caratula_rut(caratula.rut_receptor, "RutReceptor");
  if (!is_date(caratula.fch_resol)) {
    throw DocumentError("envelope.caratula", "Caratula FchResol '" + caratula.fch_resol +
                                                 "' is not a date YYYY-MM-DD");
  }
  if (caratula.nro_resol < 0 || caratula.nro_resol > 999999) {
    throw DocumentError("envelope.caratula", "Caratula NroResol " +
                                                 std::to_string(caratula.nro_resol) +
                                                 " is outside 0..999999");
  }
  const std::string tmst = caratula.tmst_firma_env.empty() ? now_timestamp() : caratula.tmst_firma_env;
  if (!is_timestamp(tmst)) {
    throw DocumentError("envelope.caratula",
                        "Caratula TmstFirmaEnv '" + tmst + "' is not YYYY-MM-DDTHH:MM:SS");
  }

  // SII checks the signer's certificate at TmstFirmaEnv: refuse now what it would reject later.
  if (!cert.has_private_key()) {
    throw CertificateError("cert.no_private_key", "the certificate has no private key to sign with");
  }
  cert.check_valid_at(tmst);

  std::map<int, std::size_t> per_type;
  std::set<std::string> ids{std::string(set_id)};
  std::vector<std::string> bodies;
  bodies.reserve(signed_dtes.size());
  std::size_t total_bytes = 0;
  for (std::size_t i = 0; i < signed_dtes.size(); ++i) {
    DteFacts facts = read_facts(signed_dtes[i], i);
    const std::string where = "document " + std::to_string(i + 1) + " (" +
                              (facts.id.empty() ? "no ID" : facts.id) + ")";
    if (is_boleta_type(facts.type) != boleta) {
      throw DocumentError("envelope.mixed",
                          where + " is of type " + std::to_string(facts.type) + ", which cannot go in " +
                              (boleta ? "an EnvioBOLETA (boletas 39/41 only)"
                                      : "an EnvioDTE (boletas go in an EnvioBOLETA)"));
    }
    if (facts.issuer != rut_emisor) {
      throw DocumentError("envelope.issuer", where + " was issued by " + facts.issuer +
                                                 ", not by the Caratula's RutEmisor " + rut_emisor);
    }
    if (!facts.id.empty() && !ids.insert(facts.id).second) {
      throw DocumentError("envelope.duplicate",
                          where + ": the ID '" + facts.id + "' appears twice in the envelope");
    }
    ++per_type[facts.type];
    bodies.push_back(dte_body(signed_dtes[i], i));
    total_bytes += bodies.back().size();
  }
  const std::size_t max_types = boleta ? kMaxBoletaTypes : kMaxTypes;
  if (per_type.size() > max_types) {
    throw DocumentError("envelope.too_many_types",
                        std::to_string(per_type.size()) + " document types exceed the limit of " +
                            std::to_string(max_types) + " per envelope");
  }

  const char* root_name = boleta ? "EnvioBOLETA" : "EnvioDTE";
  const char* xsd = boleta ? "EnvioBOLETA_v11.xsd" : "EnvioDTE_v10.xsd";
  std::string text;
  text.reserve(total_bytes + 4096 + bodies.size() * 2);
  text += "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<";
  text += root_name;
  text += " xmlns=\"http://www.sii.cl/SiiDte\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
          "xsi:schemaLocation=\"http://www.sii.cl/SiiDte ";
  text += xsd;
  text += "\" version=\"1.0\">\n<SetDTE ID=\"";
  text += set_id;
  text += "\">\n<Caratula version=\"1.0\">\n";
  element(text, "RutEmisor", rut_emisor);
  text += "\n";
  element(text, "RutEnvia", rut_envia);
  text += "\n";
  element(text, "RutReceptor", rut_receptor);
  text += "\n";
  element(text, "FchResol", caratula.fch_resol);
  text += "\n";
  element(text, "NroResol", std::to_string(caratula.nro_resol));
  text += "\n";
  element(text, "TmstFirmaEnv", tmst);
  text += "\n";
  for (const auto& [type, count] : per_type) {
    text += "<SubTotDTE>\n";
    element(text, "TpoDTE", std::to_string(type));
    text += "\n";
    element(text, "NroDTE", std::to_string(count));
    text += "\n</SubTotDTE>\n";
  }
  text += "</Caratula>\n";
  for (const auto& body : bodies) {
    text += body;
    text += "\n";
  }
  text += "</SetDTE>\n";
  const std::size_t signature_at = text.size();
  text += "</";
  text += root_name;
  text += ">\n";

  // Sign the tree parsed from exactly these bytes, then carry only the new Signature back into
  // the text: the DTEs stay the bytes their issuer signed, and SetDTE is what was digested.
  ParseLimits limits;
  limits.max_bytes = std::max(limits.max_bytes, text.size() + 1);
  XmlDocPtr doc = parse_xml(text, limits);
  register_ids(doc.get());
  xmlNode* root = xmlDocGetRootElement(doc.get());
  append_signature(doc.get(), root, set_id, cert);
  xmlNode* signature = nullptr;
  for (xmlNode* c = root->last; c; c = c->prev) {
    if (c->type == XML_ELEMENT_NODE) {
      signature = c;
      break;
    }
  }
  if (!signature || !xmlStrEqual(signature->name, BAD_CAST "Signature")) {
    throw SignatureError("sign.failed", "the envelope signature was not appended to the root");
  }
  std::string signature_text = serialize_node(signature);
  // Base64, algorithm URIs and element names: ASCII, so UTF-8 from serialize_node is Latin-1 too.
  text.insert(signature_at, signature_text + "\n");
  return text;
}

}  // namespace dte
