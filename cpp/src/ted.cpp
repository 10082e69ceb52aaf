#include "dte/ted.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "dte/errors.hpp"
#include "dte/rut.hpp"
#include "document_internal.hpp"
#include "dte/xml.hpp"
#include "sign_fast.hpp"
#include "verify_internal.hpp"

namespace dte {
namespace {

std::string name_of(const xmlNode* n) { return reinterpret_cast<const char*>(n->name); }

bool is_document_element(const xmlNode* n) {
  if (!n || n->type != XML_ELEMENT_NODE) return false;
  std::string name = name_of(n);
  return name == "Documento" || name == "Exportaciones" || name == "Liquidacion";
}

// Accepts the Documento itself or its DTE parent.
const xmlNode* document_element(const xmlNode* node) {
  if (is_document_element(node)) return node;
  if (node && node->type == XML_ELEMENT_NODE && name_of(node) == "DTE") {
    for (const xmlNode* c = node->children; c; c = c->next)
      if (is_document_element(c)) return c;
  }
  return nullptr;
}

std::string_view trimmed(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  return s;
}

std::string trim(std::string_view s) { return std::string(trimmed(s)); }

double to_number(const std::string& text, const char* what) {
  if (text.empty()) return 0;
  if (const auto v = detail::plain_digits(text)) return static_cast<double>(*v);  // strtod's value
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0')
    throw DocumentError("ted.bad_field", std::string(what) + " '" + text + "' is not a number");
  return v;
}

long long to_integer(const std::string& text, const char* what) {
  return std::llround(to_number(text, what));
}

// Text for DD: SII's table (& < > escaped); the canonical form is made from the parsed tree anyway.
std::string esc(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else out.push_back(c);
  }
  return out;
}

std::string same_rut(const std::string& s) {
  if (auto r = Rut::try_parse(s)) return r->str();
  return s;
}

Check make_check(const char* name, std::string_view subject, CheckStatus status,
                 std::string reason = {}) {
  Check c;
  c.name = name;
  c.subject = std::string(subject);
  c.status = status;
  c.reason = std::move(reason);
  return c;
}

void set_ns_recursive(xmlNode* node, xmlNs* ns) {
  for (xmlNode* n = node; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE) continue;
    xmlSetNs(n, ns);
    set_ns_recursive(n->children, ns);
  }
}

}  // namespace

TedData ted_data_from_document(const xmlNode* documento, std::string tsted) {
  const xmlNode* doc = document_element(documento);
  if (!doc)
    throw DocumentError("ted.no_document",
                        "TED data needs a <Documento>, <Exportaciones> or <Liquidacion> element");
  detail::TedTexts texts;
  for (std::size_t i = 0; i < texts.size(); ++i) texts[i] = text_at(doc, detail::kTedPaths[i]);
  return detail::ted_data_from_texts(texts, std::move(tsted));
}

TedData detail::ted_data_from_texts(const TedTexts& texts, std::string tsted) {
  auto required = [&](std::size_t i) {
    std::string v(trimmed(texts[i]));
    if (v.empty())
      throw DocumentError("ted.missing_field",
                          std::string("document has no ") + kTedPaths[i] + " for the TED");
    return v;
  };
  TedData d;
  d.re = required(0);
  // Qualified: inside detail, detail::to_number (verification's) would hide these.
  d.td = static_cast<int>(dte::to_integer(required(1), "TipoDTE"));
  d.f = dte::to_integer(required(2), "Folio");
  d.fe = required(3);
  d.rr = trimmed(texts[4]);
  d.rsr = truncate_chars(trimmed(texts[5]), 40);
  // Kept as written: an export's MntTotal (and so its TED MNT, SiiDte:ValorType) has decimals.
  d.mnt = trimmed(texts[6]);
  if (d.mnt.empty()) d.mnt = "0";
  dte::to_number(d.mnt, "MntTotal");
  d.it1 = truncate_chars(trimmed(texts[7]), 40);
  d.tsted = std::move(tsted);
  return d;
}

std::string stamp_ted(const TedData& data, const Caf& caf) {
  if (!caf.info().has_private_key)
    throw CafError("caf.no_private_key",
                   "CAF has no RSASK private key (public part only): it cannot stamp documents");
  std::string tsted = data.tsted.empty() ? now_timestamp() : data.tsted;
  caf.check_fits(data.re, data.td, data.f, std::string_view(tsted).substr(0, 10));

  // Free-text fields are cut to 40 characters before escaping, and kept to what Latin-1 holds.
  std::string dd = "<DD><RE>" + esc(data.re) + "</RE><TD>" + std::to_string(data.td) +
                   "</TD><F>" + std::to_string(data.f) + "</F><FE>" + esc(data.fe) + "</FE><RR>" +
                   esc(data.rr) + "</RR><RSR>" + esc(truncate_chars(latin1_safe(data.rsr), 40)) +
                   "</RSR><MNT>" + esc(data.mnt) + "</MNT><IT1>" +
                   esc(truncate_chars(latin1_safe(data.it1), 40)) + "</IT1>" + caf.caf_xml() +
                   "<TSTED>" + esc(tsted) + "</TSTED></DD>";
  // Sign the canonical form of the parsed DD, the very function verify_ted uses.
  XmlDocPtr parsed = parse_xml(dd);
  std::string flat = flattened_element(xmlDocGetRootElement(parsed.get()));
  std::string frmt = base64_encode(caf.sign(to_latin1(flat, true)));
  return "<TED version=\"1.0\">" + flat + "<FRMT algoritmo=\"SHA1withRSA\">" + frmt + "</FRMT></TED>";
}

namespace {

// Bytes by what flat_field does with them: kStop for a control character (refused) or a byte
// with the high bit set (UTF-8, checked on its own), kSolid for all but whitespace, kEscape for
// '&', '<' and '>'.
enum : unsigned char { kStop = 1, kSolid = 2, kEscape = 4 };
constexpr std::array<unsigned char, 256> kFieldClass = [] {
  std::array<unsigned char, 256> t{};
  for (unsigned c = 0; c < 256; ++c)
    t[c] = c >= 0x80 || (c < 0x20 && c != '\t' && c != '\n') ? kStop
           : c == ' ' || c == '\t' || c == '\n'               ? 0
           : c == '&' || c == '<' || c == '>'                 ? kSolid | kEscape
                                                              : kSolid;
  return t;
}();

// One DD field as flattened_element writes it after parse_xml(esc(v)): false when the parse
// would not give `v` back (CR, control characters, malformed UTF-8, U+FFFE/U+FFFF).
bool flat_field(std::string& out, std::string_view tag, std::string_view v) {
  unsigned seen = 0;
  for (std::size_t i = 0; i < v.size();) {
    unsigned char c = static_cast<unsigned char>(v[i]);
    const unsigned k = kFieldClass[c];
    if (!(k & kStop)) {
      seen |= k;
      ++i;
      continue;
    }
    if (c < 0x80) return false;
    seen |= kSolid;
    std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || c == 0xC0 || c == 0xC1 || c > 0xF4 || i + len > v.size()) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(v[i + k]) & 0xC0) != 0x80) return false;
    if (c == 0xEF && static_cast<unsigned char>(v[i + 1]) == 0xBF &&
        static_cast<unsigned char>(v[i + 2]) >= 0xBE)
      return false;
    if ((c == 0xE0 && static_cast<unsigned char>(v[i + 1]) < 0xA0) ||
        (c == 0xED && static_cast<unsigned char>(v[i + 1]) >= 0xA0) ||
        (c == 0xF0 && static_cast<unsigned char>(v[i + 1]) < 0x90) ||
        (c == 0xF4 && static_cast<unsigned char>(v[i + 1]) >= 0x90))
      return false;
    i += len;
  }
  const bool blank = !(seen & kSolid);
  const bool escapes = (seen & kEscape) != 0;
  out.push_back('<');
  out += tag;
  out.push_back('>');
  if (!blank) {  // flatten_xml drops whitespace-only text between tags
    if (!escapes) {
      out += v;
    } else {
      for (char c : v) {
        if (c == '&') out += "&amp;";
        else if (c == '<') out += "&lt;";
        else if (c == '>') out += "&gt;";
        else out.push_back(c);
      }
    }
  }
  out += "</";
  out += tag;
  out.push_back('>');
  return true;
}

// truncate_chars(latin1_safe(text), 40) as a view of `text` when that is all of it (the usual
// case: a name of up to 40 Latin-1 characters); otherwise the cut copy, kept in `held`.
std::string_view latin1_cut40(const std::string& text, std::string& held) {
  std::size_t chars = 0;
  if (detail::latin1_unchanged(text, &chars) && chars <= 40) return text;
  held = truncate_chars(latin1_safe(text), 40);
  return held;
}

// The flattened <CAF> of a DD, as stamp_ted's parse and flatten of the whole DD write it, kept
// per CAF text: every document of a folio range carries the same one.
const std::string& flat_caf(const std::string& caf_xml) {
  // Each pool thread keeps the last one it used: a run of documents shares one CAF, and the
  // shared cache below costs a lock and a copy.
  thread_local std::string last_xml;
  thread_local std::string last_flat;
  if (!last_flat.empty() && last_xml == caf_xml) return last_flat;
  static std::mutex mu;
  static auto* cache = new std::unordered_map<std::string, std::string>;  // outlives pool threads
  std::string flat;
  {
    std::lock_guard lock(mu);
    auto it = cache->find(caf_xml);
    if (it != cache->end()) flat = it->second;
  }
  if (flat.empty()) {
    XmlDocPtr parsed = parse_xml("<DD>" + caf_xml + "</DD>");
    flat = flattened_element(xmlDocGetRootElement(parsed.get()));
    if (flat.size() < 9 || flat.compare(0, 4, "<DD>") != 0 ||
        flat.compare(flat.size() - 5, 5, "</DD>") != 0) {
      last_flat.clear();
      return last_flat;  // empty: not kept
    }
    flat = flat.substr(4, flat.size() - 9);
    std::lock_guard lock(mu);
    if (cache->size() >= 256) cache->clear();
    cache->emplace(caf_xml, flat);
  }
  last_xml = caf_xml;
  last_flat = std::move(flat);
  return last_flat;
}

// detail::formatted_c14n of a flattened CAF at a DD child's level (4), kept per thread by the
// CAF's text as flat_caf is; nullptr when that declines.
const std::string* formatted_caf(const std::string& caf_part) {
  struct Kept {
    bool valid = false;
    std::string in;
    std::optional<std::string> out;  // nullopt: formatted_c14n declines this CAF
  };
  thread_local Kept kept;
  if (!kept.valid || kept.in != caf_part) {
    kept.valid = false;
    kept.out = detail::formatted_c14n(caf_part, 4);
    kept.in = caf_part;
    kept.valid = true;
  }
  return kept.out ? &*kept.out : nullptr;
}

}  // namespace

std::optional<std::string> detail::stamp_ted_direct(const TedData& data, const Caf& caf,
                                                    std::string* c14n) {
  if (!caf.info().has_private_key || data.tsted.empty()) return std::nullopt;
  caf.check_fits(data.re, data.td, data.f, std::string_view(data.tsted).substr(0, 10));
  const std::string& caf_part = flat_caf(caf.caf_xml());
  if (caf_part.empty()) return std::nullopt;
  std::string rsr_held;
  std::string it1_held;
  char td[16];
  char f[24];
  const std::string_view td_text(td, static_cast<std::size_t>(
                                         std::to_chars(td, td + sizeof td, data.td).ptr - td));
  const std::string_view f_text(f, static_cast<std::size_t>(
                                       std::to_chars(f, f + sizeof f, data.f).ptr - f));
  // With `c14n`: the TED's formatted text as formatted_c14n writes it (TED at level 2, DD at 3,
  // its children at 4), from the same field texts.
  const std::string* caf_c14n = nullptr;
  if (c14n) {
    caf_c14n = formatted_caf(caf_part);
    if (!caf_c14n) return std::nullopt;
    c14n->reserve(c14n->size() + caf_c14n->size() + 1024);
    *c14n += "<TED version=\"1.0\">\n      <DD>";
  }
  static constexpr std::string_view kLevel4 = "\n        ";
  std::string flat;
  flat.reserve(caf_part.size() + 512);
  flat += "<DD>";
  auto field = [&](std::string_view tag, std::string_view v) {
    const std::size_t at = flat.size();
    if (!flat_field(flat, tag, v)) return false;
    if (c14n) {
      *c14n += kLevel4;
      c14n->append(flat, at, std::string::npos);
    }
    return true;
  };
  if (!field("RE", data.re) || !field("TD", td_text) || !field("F", f_text) ||
      !field("FE", data.fe) || !field("RR", data.rr) ||
      !field("RSR", latin1_cut40(data.rsr, rsr_held)) || !field("MNT", data.mnt) ||
      !field("IT1", latin1_cut40(data.it1, it1_held)))
    return std::nullopt;
  flat += caf_part;
  if (c14n) {
    *c14n += kLevel4;
    *c14n += *caf_c14n;
  }
  if (!field("TSTED", data.tsted)) return std::nullopt;
  flat += "</DD>";
  // to_latin1 of ASCII (the usual DD) is the text itself.
  const std::string frmt = base64_encode(caf.sign(
      ascii_prefix(flat) == flat.size() ? std::string_view(flat) : to_latin1(flat, true)));
  std::string ted;
  ted.reserve(flat.size() + frmt.size() + 64);
  ted += "<TED version=\"1.0\">";
  ted += flat;
  ted += "<FRMT algoritmo=\"SHA1withRSA\">";
  ted += frmt;
  ted += "</FRMT></TED>";
  if (c14n) {
    *c14n += "\n      </DD>\n      <FRMT algoritmo=\"SHA1withRSA\">";
    *c14n += frmt;
    *c14n += "</FRMT>\n    </TED>";
  }
  return ted;
}

void insert_ted(xmlDoc* dte_doc, std::string_view ted_xml, std::string_view tmst_firma) {
  xmlNode* root = xmlDocGetRootElement(dte_doc);
  xmlNode* doc = const_cast<xmlNode*>(document_element(root));
  if (!doc) {
    for (xmlNode* c = root ? root->children : nullptr; c && !doc; c = c->next)
      doc = const_cast<xmlNode*>(document_element(c));
  }
  if (!doc) throw DocumentError("ted.no_document", "no <Documento> to insert the TED into");

  XmlDocPtr ted_doc = parse_xml(ted_xml);
  xmlNode* ted_root = xmlDocGetRootElement(ted_doc.get());
  if (name_of(ted_root) != "TED")
    throw DocumentError("ted.not_ted", "expected a <TED> element, got <" + name_of(ted_root) + ">");
  xmlNode* copy = xmlDocCopyNode(ted_root, dte_doc, 1);
  if (!copy) throw DteError("xml.internal", "cannot copy the TED into the document");
  // The TED text has no namespace; inside a SiiDte document it must be in SiiDte too.
  set_ns_recursive(copy, doc->ns);

  // A re-stamp replaces the old TED rather than leaving two.
  for (xmlNode* old : children(doc, "TED")) {
    xmlUnlinkNode(old);
    xmlFreeNode(old);
  }
  xmlNode* tmst = child(doc, "TmstFirma");
  if (tmst) {
    xmlAddPrevSibling(tmst, copy);
    if (!tmst_firma.empty()) {
      std::string text(tmst_firma);
      xmlNodeSetContentLen(tmst, nullptr, 0);
      xmlNodeAddContentLen(tmst, BAD_CAST text.data(), static_cast<int>(text.size()));
    }
  } else {
    xmlAddChild(doc, copy);
    xmlNode* t = xmlNewDocNode(dte_doc, doc->ns, BAD_CAST "TmstFirma", nullptr);
    std::string text(tmst_firma.empty() ? now_timestamp() : std::string(tmst_firma));
    xmlNodeAddContentLen(t, BAD_CAST text.data(), static_cast<int>(text.size()));
    xmlAddChild(doc, t);
  }
}

namespace {

// The CAF inside a TED parsed once per distinct CAF (keyed by its exact flattened bytes): every
// document of an issuer's folio range carries the same one. Parse failures are not kept, so an
// unreadable CAF reports its reason every time.
std::shared_ptr<const Caf> parsed_caf(const std::string& flat) {
  static std::mutex mu;
  static auto* cache = new std::unordered_map<std::string, std::shared_ptr<const Caf>>;
  {
    std::lock_guard lock(mu);
    auto it = cache->find(flat);
    if (it != cache->end()) return it->second;
  }
  auto caf = std::make_shared<const Caf>(Caf::parse(flat));
  std::lock_guard lock(mu);
  if (cache->size() >= 256) cache->clear();
  cache->emplace(flat, caf);
  return caf;
}

}  // namespace

namespace detail {

TedParts ted_parts(const xmlNode* ted, const xmlNode* documento) {
  TedParts p;
  const xmlNode* dd = child(ted, "DD");
  const xmlNode* frmt = child(ted, "FRMT");
  const xmlNode* caf_node = child(dd, "CAF");
  p.has_dd = dd != nullptr;
  p.has_frmt = frmt != nullptr;
  p.has_caf = caf_node != nullptr;
  if (!dd || !frmt || !caf_node) return p;
  p.caf_flat = flattened_element(caf_node);
  p.dd_flat = flattened_element(dd);
  p.frmt = node_text(frmt);
  const char* const dd_names[] = {"RE", "TD", "F", "FE", "RR", "MNT"};
  for (int i = 0; i < 6; ++i) p.dd[i] = text_at(dd, dd_names[i]);
  if (const xmlNode* doc = document_element(documento)) {
    p.has_document = true;
    const char* const paths[] = {"Encabezado/Emisor/RUTEmisor", "Encabezado/IdDoc/TipoDTE",
                                 "Encabezado/IdDoc/Folio",       "Encabezado/IdDoc/FchEmis",
                                 "Encabezado/Receptor/RUTRecep", "Encabezado/Totales/MntTotal"};
    for (int i = 0; i < 6; ++i) p.doc[i] = text_at(doc, paths[i]);
    p.has_receiver = find_path(doc, "Encabezado/Receptor/RUTRecep") != nullptr;
  }
  return p;
}

std::vector<Check> verify_ted_parts(const TedParts& p, const SiiKeyring& keyring,
                                    std::string_view subject) {
  std::vector<Check> out;
  if (!p.has_dd || !p.has_frmt || !p.has_caf) {
    std::string why = !p.has_dd ? "TED has no DD" : !p.has_frmt ? "TED has no FRMT" : "TED DD has no CAF";
    out.push_back(make_check("ted.frmt", subject, CheckStatus::kFail, why));
    out.push_back(make_check("ted.caf", subject, CheckStatus::kFail, why));
    out.push_back(make_check("ted.consistency", subject, CheckStatus::kSkip, why));
    return out;
  }

  std::shared_ptr<const Caf> caf;
  std::string caf_error;
  try {
    caf = parsed_caf(p.caf_flat);
  } catch (const DteError& e) {
    caf_error = std::string("the CAF inside the TED is unreadable: ") + e.what();
  }
  if (!caf) {
    out.push_back(make_check("ted.frmt", subject, CheckStatus::kFail, caf_error));
    out.push_back(make_check("ted.caf", subject, CheckStatus::kFail, caf_error));
    out.push_back(make_check("ted.consistency", subject, CheckStatus::kSkip, caf_error));
    return out;
  }

  // ted.frmt
  std::string signature;
  bool b64_ok = true;
  try {
    signature = base64_decode(trim(p.frmt));
  } catch (const DteError&) {
    b64_ok = false;
  }
  if (!b64_ok) {
    out.push_back(make_check("ted.frmt", subject, CheckStatus::kFail, "FRMT is not valid base64"));
  } else if (caf->verify_signature(to_latin1(p.dd_flat), signature)) {
    out.push_back(make_check("ted.frmt", subject, CheckStatus::kPass));
  } else {
    out.push_back(make_check("ted.frmt", subject, CheckStatus::kFail,
                             "FRMT does not verify over DD with the CAF's RSAPK (timbre data "
                             "altered after stamping, or stamped with another CAF)"));
  }

  // ted.caf
  for (const Check& c : caf->check(keyring)) {
    if (c.name != "caf.sii_signature") continue;
    out.push_back(make_check("ted.caf", subject, c.status, c.reason));
  }

  // ted.consistency
  std::vector<std::string> problems;
  const CafInfo& info = caf->info();
  const std::string re = trim(p.dd[0]);
  const std::string td = trim(p.dd[1]);
  const std::string f = trim(p.dd[2]);
  if (same_rut(re) != same_rut(info.issuer_rut))
    problems.push_back("DD/RE " + re + " differs from CAF RE " + info.issuer_rut);
  if (td != std::to_string(info.doc_type))
    problems.push_back("DD/TD " + td + " differs from CAF TD " + std::to_string(info.doc_type));
  char* end = nullptr;
  long long folio = std::strtoll(f.c_str(), &end, 10);
  if (f.empty() || *end != '\0') {
    problems.push_back("DD/F '" + f + "' is not a folio number");
  } else if (folio < info.folio_from || folio > info.folio_to) {
    problems.push_back("folio " + f + " is outside the CAF range " +
                       std::to_string(info.folio_from) + "-" + std::to_string(info.folio_to));
  }
  if (p.has_document) {
    const char* const dd_names[] = {"RE", "TD", "F", "FE", "RR", "MNT"};
    const char* const paths[] = {"Encabezado/Emisor/RUTEmisor", "Encabezado/IdDoc/TipoDTE",
                                 "Encabezado/IdDoc/Folio",       "Encabezado/IdDoc/FchEmis",
                                 "Encabezado/Receptor/RUTRecep", "Encabezado/Totales/MntTotal"};
    auto compare = [&](int i, bool rut, bool number) {
      std::string a = trim(p.dd[i]);
      std::string b = trim(p.doc[i]);
      bool equal = a == b;
      if (!equal && rut) equal = same_rut(a) == same_rut(b);
      if (!equal && number && !a.empty() && !b.empty()) {
        char* ea = nullptr;
        char* eb = nullptr;
        double va = std::strtod(a.c_str(), &ea);
        double vb = std::strtod(b.c_str(), &eb);
        // Same value, however written ("100" / "100.0"); never "close enough".
        equal = *ea == '\0' && *eb == '\0' && va == vb;
      }
      if (!equal)
        problems.push_back(std::string("DD/") + dd_names[i] + " '" + a + "' differs from " +
                           paths[i] + " '" + b + "'");
    };
    compare(0, true, false);
    compare(1, false, true);
    compare(2, false, true);
    compare(3, false, false);
    if (p.has_receiver) compare(4, true, false);
    compare(5, false, true);
  }
  if (problems.empty()) {
    out.push_back(make_check("ted.consistency", subject, CheckStatus::kPass));
  } else {
    std::string reason;
    for (const auto& pr : problems) reason += (reason.empty() ? "" : "; ") + pr;
    out.push_back(make_check("ted.consistency", subject, CheckStatus::kFail, reason));
  }
  return out;
}

}  // namespace detail

std::vector<Check> verify_ted(const xmlNode* ted, const xmlNode* documento,
                              const SiiKeyring& keyring, std::string_view subject) {
  return detail::verify_ted_parts(detail::ted_parts(ted, documento), keyring, subject);
}

std::string ted_barcode_payload(const xmlNode* ted) {
  return to_latin1(flattened_element(ted));
}

std::string ted_barcode_payload(std::string_view ted_xml) {
  XmlDocPtr doc = parse_xml(ted_xml);
  auto teds = descendants(xmlDocGetRootElement(doc.get()), "TED");
  if (teds.empty()) throw DocumentError("ted.not_ted", "no <TED> element in the given XML");
  return ted_barcode_payload(teds.front());
}

}  // namespace dte
