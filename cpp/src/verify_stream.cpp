// One-pass verification of SII's common documents, without building a tree.
//
// libxml2's SAX2 parser (the parser, options and well-formedness rules parse_xml uses) drives:
//   * an inclusive C14N 1.0 writer over the whole root element, in place: every element whose
//     canonical form may be signed (an element with an ID attribute, a SignedInfo) records where
//     its content starts and ends in that one buffer, plus its own start tag as an apex (all
//     namespaces in scope rendered), and, inside an embedded DTE, the start tag it has when the
//     DTE is copied out on its own, as SII checks it. Below the apex, the canonical bytes of a
//     subtree do not depend on what lies above it, so one buffer serves every digest;
//   * the fields the checks read (Encabezado, TED parts, TmstFirma*, Caratula subtotals) and a
//     small record of each Signature, with the first-child-by-name semantics of the DOM helpers;
//   * with schemas asked for, the fast XSD validator (fast_schema.hpp), or libxml2's validator
//     plugged into the stream where the XSD has no fast tables.
// ISO-8859-1 input is converted to UTF-8 here first (faster than libxml2's converter). Then the
// checks run through the very functions the DOM verifier uses (report_signature,
// verify_ted_parts). The pass only answers for documents it fully understands and whose every
// signature verifies; for anything else (other shapes, prefixes or namespace declarations where
// SII documents have none, processing instructions, entity references, duplicate IDs, a failing
// signature, a document the schema pass does not plainly accept) it declines and the DOM
// verifier decides and explains.
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlschemas.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dsig_internal.hpp"
#include "dte/errors.hpp"
#include "dte/handles.hpp"
#include "dte/schema.hpp"
#include "dte/xml.hpp"
#include "fast_schema.hpp"
#include "verify_internal.hpp"

namespace dte::detail {
namespace {

constexpr std::string_view kC14N10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
constexpr std::string_view kRsaSha1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
constexpr std::string_view kSha1Uri = "http://www.w3.org/2000/09/xmldsig#sha1";
constexpr std::string_view kSii = kSiiNs;
constexpr std::string_view kDsig = kDsigNs;

std::string_view sv(const xmlChar* s) {
  return s ? std::string_view(reinterpret_cast<const char*>(s)) : std::string_view();
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(0, p.size()) == p;
}

struct Ns {
  std::string_view prefix;  // "" = default
  std::string_view uri;
};

struct Attr {
  std::string_view local;
  std::string_view prefix;
  std::string_view uri;
  std::string value;  // decoded
};

// A region of the canonical buffer that may be digested, with its apex start tags.
struct Apex {
  std::size_t begin = 0;  // just after the start tag
  std::size_t end = 0;    // just after the end tag
  bool closed = false;
  std::string tag_in_place;
  std::string tag_standalone;  // embedded DTE only
};

// The few dsig elements of one Signature.
struct SigNode {
  std::string_view name;
  int parent = -1;
  std::vector<int> kids;
  std::string text;
  std::string algorithm;
  std::string uri;
  bool has_uri = false;
};

struct SigRec {
  std::vector<SigNode> nodes;  // nodes[0] = Signature
  int signed_info_apex = -1;
  bool own_dsig_default = false;  // Signature declares xmlns="...xmldsig#" itself
};

enum Field { kTipo, kFolio, kFchEmis, kRutEmisor, kRutRecep, kMntTotal, kTmstFirma, kSignTime, kFieldCount };

struct DteRec {
  bool embedded = false;
  int doc_count = 0;
  int doc_apex = -1;
  std::string id;
  std::string field[kFieldCount];
  bool has_field[kFieldCount] = {};
  int sig = -1;
  int sig_count = 0;
  bool has_ted = false;
  TedParts ted;
  std::string dd_canon;
  std::size_t caf_begin = 0, caf_end = 0;
};

enum Role : unsigned char {
  kOther,
  kRoot,       // EnvioDTE / EnvioBOLETA
  kSetDte,
  kCaratula,
  kSubTot,
  kDte,
  kDoc,
  kEnc,
  kIdDoc,
  kEmisor,
  kReceptor,
  kTotales,
  kTed,
  kDd,
  kInDd,       // below DD (CAF and its content)
  kSig,        // the Signature element
  kInSig,
  kLeaf,       // text captured, no element children allowed
};

struct Frame {
  Role role = kOther;
  std::size_t ns_mark = 0;  // ns_ size before this element's declarations
  std::string_view qname_prefix;
  std::string_view local;
  unsigned seen = 0;        // child names met (first-child semantics)
  std::string* text = nullptr;
  std::string* text2 = nullptr;  // a second reader of the same element's text
  int apex = -1;
  int sig_node = -1;
  bool in_dte = false;
  bool caf = false;         // this is DD/CAF
};

// The root element's name, read off the bytes before parsing (to pick its XSD); empty when the
// prolog holds anything but the declaration, comments and processing instructions, or the
// bytes are not in an ASCII-compatible encoding.
std::string_view peek_root(std::string_view b) {
  std::size_t i = 0;
  if (b.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
  for (;;) {
    i = b.find('<', i);
    if (i == std::string_view::npos || i + 1 >= b.size()) return {};
    if (b[i + 1] == '?') {
      i = b.find("?>", i);
    } else if (b.substr(i, 4) == "<!--") {
      i = b.find("-->", i);
    } else if (b[i + 1] == '!') {
      return {};
    } else {
      std::size_t end = i + 1;
      while (end < b.size() && b[end] != ' ' && b[end] != '>' && b[end] != '/' &&
             b[end] != '\t' && b[end] != '\n' && b[end] != '\r')
        ++end;
      return b.substr(i + 1, end - i - 1);
    }
    if (i == std::string_view::npos) return {};
    ++i;
  }
}

class StreamVerifier {
 public:
  // Kept per thread: the containers keep their capacity from one document to the next.
  void reset(const VerifyOptions& options) {
    options_ = &options;
    ctxt_ = nullptr;
    declined_ = false;
    depth_ = 0;
    root_.clear();
    envelope_ = false;
    canon_.clear();
    ns_.clear();
    frames_.clear();
    apexes_.clear();
    ids_.clear();
    dtes_.clear();
    sigs_.clear();
    envelope_sig_ = -1;
    envelope_sigs_ = 0;
    set_apex_ = -1;
    set_id_.clear();
    set_count_ = 0;
    has_caratula_ = false;
    set_time_.clear();
    caratula_time_.clear();
    has_set_time_ = has_caratula_time_ = false;
    subtots_.clear();
    set_dtes_.clear();
    schema_file_.clear();
    fast_validator_.reset(nullptr);
    want_facts_ = false;
    facts_ok_ = true;
    dumping_ = dump_open_ = false;
    dump_ = nullptr;
    facts_ = EnvelopeFacts{};
  }
  void want_facts() { want_facts_ = true; }
  EnvelopeFacts& facts() { return facts_; }

  bool run(std::string_view bytes, VerifyReport* report);

  // SAX2 callbacks.
  void start(const xmlChar* local, const xmlChar* prefix, const xmlChar* uri, int nb_ns,
             const xmlChar** ns, int nb_attrs, const xmlChar** attrs);
  void end();
  void chars(const xmlChar* ch, int len);
  // xmlNodeDump would write these as they are; the DTE's text for reception is then left to
  // the DOM.
  void comment_or_cdata() { not_dumpable(); }
  void decline() {
    if (!declined_) {
      declined_ = true;
      if (ctxt_) xmlStopParser(ctxt_);
    }
  }

 private:
  std::string_view lookup(std::string_view prefix, std::size_t upto) const {
    for (std::size_t i = upto; i-- > 0;)
      if (ns_[i].prefix == prefix) return ns_[i].uri;
    return {};
  }
  void start_tag(std::string& out, const Frame& f, const std::vector<Ns>& render);
  void apex_in_scope(std::vector<Ns>& out) const;
  Role child_role(Frame& parent, std::string_view local, std::string_view uri, Frame& f);
  std::string* leaf(Frame& parent, unsigned bit, std::string* target, bool* has = nullptr);
  bool digest_ok(const Apex& a, bool standalone, const std::string& expected) const;
  bool signature_ok(const SigRec& s, const Apex& signed_info, bool standalone,
                    const std::string& signature, EVP_PKEY* key) const;
  bool check_signature(const SigRec& s, const std::string& target_id, int target_apex,
                       bool standalone, SignatureResult* r) const;
  bool finish(VerifyReport* report);

  std::string schema_file_;  // the XSD validated against while parsing; empty: none asked
  // Active when the XSD has fast tables (else libxml2's validator is plugged into the stream).
  FastValidator fast_validator_;

  // Reception's facts; the DTEs of a SetDTE written as xmlNodeDump would.
  void dump_text(std::string_view text, bool plain);  // plain: nothing to escape
  void not_dumpable() {
    if (dumping_) facts_ok_ = false;
  }
  bool want_facts_ = false;
  bool facts_ok_ = true;
  bool dumping_ = false;     // inside a SetDTE/DTE, facts wanted
  bool dump_open_ = false;   // a start tag written without its '>' yet
  std::string* dump_ = nullptr;
  EnvelopeFacts facts_;

  const VerifyOptions* options_ = nullptr;
  xmlParserCtxt* ctxt_ = nullptr;
  bool declined_ = false;
  int depth_ = 0;
  std::string root_;
  bool envelope_ = false;
  std::string canon_;
  std::vector<Ns> ns_;
  std::vector<Frame> frames_;
  std::vector<Apex> apexes_;
  std::map<std::string, int, std::less<>> ids_;  // ID -> apex
  std::vector<DteRec> dtes_;
  std::vector<SigRec> sigs_;
  int envelope_sig_ = -1;
  int envelope_sigs_ = 0;
  int set_apex_ = -1;
  std::string set_id_;
  int set_count_ = 0;
  bool has_caratula_ = false;
  std::string set_time_, caratula_time_;
  bool has_set_time_ = false, has_caratula_time_ = false;
  std::vector<std::pair<std::string, std::string>> subtots_;  // TpoDTE, NroDTE
  std::vector<int> set_dtes_;                                  // DTEs that are SetDTE children
  // Scratch, reused per element.
  std::vector<Ns> render_;
  std::vector<Attr> attrs_;
};

// -------------------------------------------------------------------------------- SAX glue

StreamVerifier* self(void* ctx) {
  return static_cast<StreamVerifier*>(static_cast<xmlParserCtxt*>(ctx)->_private);
}

void on_start(void* ctx, const xmlChar* local, const xmlChar* prefix, const xmlChar* uri,
              int nb_ns, const xmlChar** ns, int nb_attrs, int /*nb_defaulted*/,
              const xmlChar** attrs) {
  self(ctx)->start(local, prefix, uri, nb_ns, ns, nb_attrs, attrs);
}
void on_end(void* ctx, const xmlChar*, const xmlChar*, const xmlChar*) { self(ctx)->end(); }
void on_chars(void* ctx, const xmlChar* ch, int len) { self(ctx)->chars(ch, len); }
void on_decline(void* ctx, const xmlChar*, const xmlChar*) { self(ctx)->decline(); }
void on_dtd(void* ctx, const xmlChar*, const xmlChar*, const xmlChar*) { self(ctx)->decline(); }
void on_reference(void* ctx, const xmlChar*) { self(ctx)->decline(); }
void on_comment(void* ctx, const xmlChar*) { self(ctx)->comment_or_cdata(); }
void on_cdata(void* ctx, const xmlChar* ch, int len) {
  self(ctx)->comment_or_cdata();
  self(ctx)->chars(ch, len);
}
void on_silent(void*, xmlErrorPtr) {}
void on_entity_decl(void* ctx, const xmlChar*, int, const xmlChar*, const xmlChar*, xmlChar*) {
  self(ctx)->decline();
}

xmlSAXHandler make_handler() {
  xmlSAXHandler h;
  std::memset(&h, 0, sizeof h);
  h.initialized = XML_SAX2_MAGIC;
  h.startElementNs = on_start;
  h.endElementNs = on_end;
  h.characters = on_chars;
  h.ignorableWhitespace = on_chars;
  h.cdataBlock = on_cdata;
  h.comment = on_comment;
  h.processingInstruction = on_decline;
  h.internalSubset = on_dtd;
  h.externalSubset = on_dtd;
  h.entityDecl = on_entity_decl;
  h.reference = on_reference;
  h.serror = on_silent;
  return h;
}

// ------------------------------------------------------------------------------ C14N writer

void StreamVerifier::start_tag(std::string& out, const Frame& f, const std::vector<Ns>& render) {
  out.push_back('<');
  if (!f.qname_prefix.empty()) {
    out.append(f.qname_prefix);
    out.push_back(':');
  }
  out.append(f.local);
  for (const Ns& n : render) {
    if (n.prefix.empty()) {
      out += " xmlns=\"";
    } else {
      out += " xmlns:";
      out.append(n.prefix);
      out += "=\"";
    }
    append_c14n_attr(out, n.uri);
    out.push_back('"');
  }
  for (const Attr& a : attrs_) {
    out.push_back(' ');
    if (!a.prefix.empty()) {
      out.append(a.prefix);
      out.push_back(':');
    }
    out.append(a.local);
    out += "=\"";
    append_c14n_attr(out, a.value);
    out.push_back('"');
  }
  out.push_back('>');
}

// Every namespace in scope (closest declaration of each prefix), sorted by prefix.
void StreamVerifier::apex_in_scope(std::vector<Ns>& out) const {
  out.clear();
  for (std::size_t i = ns_.size(); i-- > 0;) {
    const Ns& n = ns_[i];
    bool shadowed = false;
    for (const Ns& o : out)
      if (o.prefix == n.prefix) shadowed = true;
    if (!shadowed) out.push_back(n);
  }
  // An empty default declaration is never rendered on an apex.
  out.erase(std::remove_if(out.begin(), out.end(),
                           [](const Ns& n) { return n.prefix.empty() && n.uri.empty(); }),
            out.end());
  std::sort(out.begin(), out.end(), [](const Ns& a, const Ns& b) { return a.prefix < b.prefix; });
}

// --------------------------------------------------------------------------------- structure

// The child `bit` of `parent` is captured as text into `target` the first time only (the DOM
// helpers read the first child of that name).
std::string* StreamVerifier::leaf(Frame& parent, unsigned bit, std::string* target, bool* has) {
  if (parent.seen & (1u << bit)) return nullptr;
  parent.seen |= 1u << bit;
  if (has) *has = true;
  return target;
}

Role StreamVerifier::child_role(Frame& parent, std::string_view local, std::string_view uri,
                                Frame& f) {
  const bool is_sig = local == "Signature" && uri == kDsig;
  auto first = [&](unsigned bit) {
    if (parent.seen & (1u << bit)) return false;
    parent.seen |= 1u << bit;
    return true;
  };
  auto take_leaf = [&](unsigned bit, std::string* target, bool* has = nullptr) {
    f.text = leaf(parent, bit, target, has);
    return f.text ? kLeaf : kOther;
  };
  // An element named DTE anywhere else would be verified as a DTE by the DOM verifier; a field
  // read as text must be a plain leaf.
  if ((local == "DTE" && parent.role != kSetDte) || parent.text) {
    decline();
    return kOther;
  }
  switch (parent.role) {
    case kRoot:
      if (is_sig) {
        ++envelope_sigs_;
        return kSig;
      }
      if (local == "Signature") facts_ok_ = false;  // reception's digest lookup is by name
      if (local == "SetDTE") {
        if (++set_count_ > 1) decline();
        return kSetDte;
      }
      return kOther;
    case kSetDte:
      if (is_sig) break;
      if (local == "DTE") {
        dtes_.emplace_back();
        dtes_.back().embedded = true;
        set_dtes_.push_back(static_cast<int>(dtes_.size()) - 1);
        return kDte;
      }
      if (local == "Caratula" && first(0)) {
        has_caratula_ = true;
        return kCaratula;
      }
      if ((starts_with(local, "TmstFirma") || local == "TmstCesion") && first(1)) {
        has_set_time_ = true;
        f.text = &set_time_;
        return kLeaf;
      }
      return kOther;
    case kCaratula:
      if (is_sig) break;
      if (local == "SubTotDTE") {
        subtots_.emplace_back();
        return kSubTot;
      }
      {
        static constexpr std::string_view kNames[] = {"RutEmisor", "RutEnvia", "RutReceptor",
                                                      "TmstFirmaEnv"};
        std::string* const targets[] = {&facts_.rut_emisor, &facts_.rut_envia,
                                        &facts_.rut_receptor, &facts_.tmst_firma_env};
        std::string* fact = nullptr;
        for (unsigned i = 0; i < 4; ++i)
          if (local == kNames[i] && first(1 + i)) fact = targets[i];
        if ((starts_with(local, "TmstFirma") || local == "TmstCesion") && first(0)) {
          has_caratula_time_ = true;
          f.text = &caratula_time_;
          f.text2 = fact;
          return kLeaf;
        }
        if (fact) {
          f.text = fact;
          return kLeaf;
        }
      }
      return kOther;
    case kSubTot:
      if (is_sig) break;
      if (local == "TpoDTE") return take_leaf(0, &subtots_.back().first);
      if (local == "NroDTE") return take_leaf(1, &subtots_.back().second);
      return kOther;
    case kDte: {
      DteRec& d = dtes_.back();
      if (is_sig) {
        ++d.sig_count;
        return kSig;
      }
      if (local == "Documento" || local == "Exportaciones" || local == "Liquidacion") {
        if (++d.doc_count > 1) decline();
        return kDoc;
      }
      return kOther;
    }
    case kDoc: {
      if (is_sig) break;
      DteRec& d = dtes_.back();
      if (local == "Encabezado" && first(0)) return kEnc;
      if (local == "TED" && first(1)) {
        d.has_ted = true;
        return kTed;
      }
      // TmstFirma (signed_at) and the first TmstFirma*/TmstCesion (signing time) may be the
      // same element: the signing time is copied from signed_at at the end when so.
      if (local == "TmstFirma" && first(2)) {
        d.has_field[kTmstFirma] = true;
        f.text = &d.field[kTmstFirma];
        if (first(3)) {
          d.has_field[kSignTime] = true;
          f.text2 = &d.field[kSignTime];
        }
        return kLeaf;
      }
      if ((starts_with(local, "TmstFirma") || local == "TmstCesion") && first(3)) {
        d.has_field[kSignTime] = true;
        f.text = &d.field[kSignTime];
        return kLeaf;
      }
      return kOther;
    }
    case kEnc:
      if (is_sig) break;
      if (local == "IdDoc" && first(0)) return kIdDoc;
      if (local == "Emisor" && first(1)) return kEmisor;
      if (local == "Receptor" && first(2)) return kReceptor;
      if (local == "Totales" && first(3)) return kTotales;
      return kOther;
    case kIdDoc: {
      if (is_sig) break;
      DteRec& d = dtes_.back();
      if (local == "TipoDTE") return take_leaf(0, &d.field[kTipo], &d.has_field[kTipo]);
      if (local == "Folio") return take_leaf(1, &d.field[kFolio], &d.has_field[kFolio]);
      if (local == "FchEmis") return take_leaf(2, &d.field[kFchEmis], &d.has_field[kFchEmis]);
      return kOther;
    }
    case kEmisor: {
      if (is_sig) break;
      DteRec& d = dtes_.back();
      if (local == "RUTEmisor") return take_leaf(0, &d.field[kRutEmisor], &d.has_field[kRutEmisor]);
      return kOther;
    }
    case kReceptor: {
      if (is_sig) break;
      DteRec& d = dtes_.back();
      if (local == "RUTRecep") return take_leaf(0, &d.field[kRutRecep], &d.has_field[kRutRecep]);
      return kOther;
    }
    case kTotales: {
      if (is_sig) break;
      DteRec& d = dtes_.back();
      if (local == "MntTotal") return take_leaf(0, &d.field[kMntTotal], &d.has_field[kMntTotal]);
      return kOther;
    }
    case kTed: {
      if (is_sig) break;
      DteRec& d = dtes_.back();
      if (local == "DD" && first(0)) {
        d.ted.has_dd = true;
        return kDd;
      }
      if (local == "FRMT") return take_leaf(1, &d.ted.frmt, &d.ted.has_frmt);
      return kOther;
    }
    case kDd: {
      if (is_sig) break;
      DteRec& d = dtes_.back();
      static constexpr std::string_view kDdNames[] = {"RE", "TD", "F", "FE", "RR", "MNT"};
      for (unsigned i = 0; i < 6; ++i) {
        if (local == kDdNames[i]) {
          if (first(i)) f.text = &d.ted.dd[i];
          return kInDd;
        }
      }
      if (local == "CAF" && first(6)) {
        d.ted.has_caf = true;
        f.caf = true;
      }
      return kInDd;
    }
    case kInDd:
      if (is_sig) break;
      return kInDd;
    case kSig:
    case kInSig:
      if (uri != kDsig || local == "Signature") break;  // foreign content, nested signature
      return kInSig;
    case kLeaf:
      break;  // a field with element content: not a shape the pass reads
    case kOther:
      if (is_sig) break;
      return kOther;
  }
  decline();
  return kOther;
}

void StreamVerifier::start(const xmlChar* local_c, const xmlChar* prefix_c, const xmlChar* uri_c,
                           int nb_ns, const xmlChar** ns, int nb_attrs, const xmlChar** attrs) {
  if (declined_) return;
  if (++depth_ > options_->limits.max_depth) return decline();
  // Not plainly valid: stop here, the DOM verifier has libxml2 say why.
  if (fast_validator_.active() && !fast_validator_.start(local_c, uri_c, nb_attrs, attrs))
    return decline();
  const std::string_view local = sv(local_c);
  const std::string_view prefix = sv(prefix_c);
  const std::string_view uri = sv(uri_c);

  Frame f;
  f.local = local;
  f.qname_prefix = prefix;
  f.ns_mark = ns_.size();
  Frame* parent = frames_.empty() ? nullptr : &frames_.back();
  f.in_dte = parent && parent->in_dte;

  // Roles.
  if (!parent) {
    root_ = std::string(local);
    if (local == "DTE") {
      dtes_.emplace_back();
      f.role = kDte;
    } else if (local == "EnvioDTE" || local == "EnvioBOLETA") {
      envelope_ = true;
      f.role = kRoot;
    } else {
      return decline();
    }
  } else {
    f.role = child_role(*parent, local, uri, f);
    if (declined_) return;
  }
  if (f.role == kDte) f.in_dte = true;

  // Namespace declarations: anything on the root; inside a DTE only the DTE's own
  // xmlns="SiiDte" and the Signature's xmlns="xmldsig#" (what SII documents carry), so that the
  // standalone form SII checks is known exactly. No prefixes below the root.
  for (int i = 0; i < nb_ns; ++i) {
    Ns n{sv(ns[2 * i]), sv(ns[2 * i + 1])};
    if (n.uri.empty() || n.uri.find(':') == std::string_view::npos || n.prefix == "xml")
      return decline();  // undeclarations and relative URIs: libxml2's C14N territory
    if (parent) {
      const bool ok = (f.role == kDte && n.prefix.empty() && n.uri == kSii) ||
                      (f.role == kSig && n.prefix.empty() && n.uri == kDsig) ||
                      (!f.in_dte && !(f.role == kSig));
      if (!ok) return decline();
      if (f.in_dte && !n.prefix.empty()) return decline();
    }
    ns_.push_back(n);
  }
  if (parent && !prefix.empty()) return decline();
  if (f.in_dte && f.role != kSig && f.role != kInSig && !uri.empty() && uri != kSii)
    return decline();
  if ((f.role == kSig || f.role == kInSig) && (uri != kDsig || !prefix.empty())) return decline();

  // Attributes, decoded (libxml2 hands "&#38;" for '&' when entities are not substituted).
  attrs_.clear();
  std::string_view id;
  bool has_id = false;
  for (int i = 0; i < nb_attrs; ++i) {
    const xmlChar** a = attrs + 5 * i;
    Attr at;
    at.local = sv(a[0]);
    at.prefix = sv(a[1]);
    at.uri = sv(a[2]);
    if (at.prefix == "xml" || (f.in_dte && !at.uri.empty())) return decline();
    std::string_view raw(reinterpret_cast<const char*>(a[3]), static_cast<std::size_t>(a[4] - a[3]));
    std::size_t pos = 0;
    while (pos < raw.size()) {
      std::size_t amp = raw.find('&', pos);
      if (amp == std::string_view::npos) {
        at.value.append(raw.data() + pos, raw.size() - pos);
        break;
      }
      at.value.append(raw.data() + pos, amp - pos);
      if (raw.substr(amp, 5) != "&#38;") return decline();
      at.value.push_back('&');
      pos = amp + 5;
    }
    attrs_.push_back(std::move(at));
  }
  if (want_facts_ && f.role == kDte && !dtes_.empty() && dtes_.back().embedded) {
    facts_.dte_xml.emplace_back();
    dump_ = &facts_.dte_xml.back();
    dumping_ = true;
    dump_open_ = false;
  }
  if (dumping_) {
    // As xmlNodeDump: namespace declarations, then attributes, in document order.
    std::string& out = *dump_;
    if (dump_open_) out.push_back('>');
    out.push_back('<');
    out.append(local);
    for (std::size_t i = f.ns_mark; i < ns_.size(); ++i) {
      out += ns_[i].prefix.empty() ? " xmlns" : " xmlns:";
      out.append(ns_[i].prefix);
      out += "=\"";
      out.append(ns_[i].uri);
      out.push_back('"');
      if (ns_[i].uri.find('"') != std::string_view::npos) facts_ok_ = false;
    }
    for (const Attr& a : attrs_) {
      out.push_back(' ');
      out.append(a.local);
      out += "=\"";
      for (char c : a.value) {
        switch (c) {
          case '\n': out += "&#10;"; break;
          case '\r': out += "&#13;"; break;
          case '\t': out += "&#9;"; break;
          case '"': out += "&quot;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '&': out += "&amp;"; break;
          default:
            if (static_cast<unsigned char>(c) >= 0x80) facts_ok_ = false;  // depends on the encoding
            out.push_back(c);
        }
      }
      out.push_back('"');
    }
    dump_open_ = true;
  }
  std::sort(attrs_.begin(), attrs_.end(), [](const Attr& a, const Attr& b) {
    return a.uri != b.uri ? a.uri < b.uri : a.local < b.local;
  });
  for (const Attr& a : attrs_) {
    if (a.uri.empty() && a.local == "ID") {
      id = a.value;
      has_id = true;
    }
  }

  // The in-place canonical start tag: the element's own declarations that its parent does not
  // already have in scope, sorted by prefix.
  render_.clear();
  for (std::size_t i = f.ns_mark; i < ns_.size(); ++i) {
    if (lookup(ns_[i].prefix, f.ns_mark) != ns_[i].uri) render_.push_back(ns_[i]);
  }
  std::sort(render_.begin(), render_.end(),
            [](const Ns& a, const Ns& b) { return a.prefix < b.prefix; });
  start_tag(canon_, f, render_);

  // Signed-element candidates.
  const bool signed_info = (f.role == kInSig && local == "SignedInfo");
  if (has_id || signed_info) {
    Apex a;
    a.begin = canon_.size();
    apex_in_scope(render_);
    start_tag(a.tag_in_place, f, render_);
    if (f.in_dte && dtes_.back().embedded) {
      // Copied out on its own as SII checks it: the DTE gets xmlns="SiiDte", dsig keeps its own.
      render_.assign({Ns{"", signed_info ? kDsig : kSii}});
      start_tag(a.tag_standalone, f, render_);
    }
    f.apex = static_cast<int>(apexes_.size());
    apexes_.push_back(std::move(a));
    if (has_id) {
      if (!ids_.emplace(std::string(id), f.apex).second) return decline();  // duplicate ID
    }
  }

  // Role bookkeeping.
  switch (f.role) {
    case kSetDte:
      set_apex_ = f.apex;
      set_id_ = std::string(id);
      break;
    case kDoc: {
      DteRec& d = dtes_.back();
      d.doc_apex = f.apex;
      d.id = std::string(id);
      break;
    }
    case kSig: {
      sigs_.emplace_back();
      SigRec& s = sigs_.back();
      for (std::size_t i = f.ns_mark; i < ns_.size(); ++i)
        if (ns_[i].prefix.empty() && ns_[i].uri == kDsig) s.own_dsig_default = true;
      SigNode root_node;
      root_node.name = local;
      s.nodes.push_back(std::move(root_node));
      f.sig_node = 0;
      if (parent->role == kRoot) {
        envelope_sig_ = static_cast<int>(sigs_.size()) - 1;
      } else {
        dtes_.back().sig = static_cast<int>(sigs_.size()) - 1;
      }
      break;
    }
    case kInSig: {
      SigRec& s = sigs_.back();
      SigNode n;
      n.name = local;
      n.parent = parent->sig_node;
      for (const Attr& a : attrs_) {
        if (!a.uri.empty()) continue;
        if (a.local == "Algorithm") n.algorithm = a.value;
        if (a.local == "URI") {
          n.uri = a.value;
          n.has_uri = true;
        }
      }
      f.sig_node = static_cast<int>(s.nodes.size());
      s.nodes[static_cast<std::size_t>(n.parent)].kids.push_back(f.sig_node);
      s.nodes.push_back(std::move(n));
      if (signed_info) {
        if (s.signed_info_apex >= 0) return decline();
        s.signed_info_apex = f.apex;
      }
      break;
    }
    default:
      break;
  }

  // The TED's DD is also written as canonical_element() writes it (local names, attributes
  // sorted by qualified name, no namespaces), for its FRMT and its CAF.
  if (f.role == kDd || f.role == kInDd) {
    DteRec& d = dtes_.back();
    if (f.caf) d.caf_begin = d.dd_canon.size();
    std::string& out = d.dd_canon;
    out.push_back('<');
    out.append(local);
    if (attrs_.empty()) {
      out.push_back('>');
      frames_.push_back(f);
      return;
    }
    std::vector<std::pair<std::string, const std::string*>> sorted;
    for (const Attr& a : attrs_) {
      std::string name = a.prefix.empty() ? std::string(a.local)
                                          : std::string(a.prefix) + ":" + std::string(a.local);
      sorted.emplace_back(std::move(name), &a.value);
    }
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : *a.second < *b.second;
    });
    for (const auto& [name, value] : sorted) {
      out.push_back(' ');
      out += name;
      out += "=\"";
      append_c14n_attr(out, *value);
      out.push_back('"');
    }
    out.push_back('>');
  }
  frames_.push_back(f);
}

void StreamVerifier::end() {
  if (declined_ || frames_.empty()) return;
  if (fast_validator_.active() && !fast_validator_.end()) return decline();
  Frame& f = frames_.back();
  canon_ += "</";
  if (!f.qname_prefix.empty()) {
    canon_.append(f.qname_prefix);
    canon_.push_back(':');
  }
  canon_.append(f.local);
  canon_.push_back('>');
  if (f.apex >= 0) {
    Apex& a = apexes_[static_cast<std::size_t>(f.apex)];
    a.end = canon_.size();
    a.closed = true;
  }
  if (f.role == kDd || f.role == kInDd) {
    DteRec& d = dtes_.back();
    d.dd_canon += "</";
    d.dd_canon.append(f.local);
    d.dd_canon.push_back('>');
    if (f.caf) d.caf_end = d.dd_canon.size();
  }
  if (dumping_) {
    std::string& out = *dump_;
    if (dump_open_) {
      out += "/>";
      dump_open_ = false;
    } else {
      out += "</";
      out.append(f.local);
      out.push_back('>');
    }
    if (f.role == kDte) dumping_ = false;
  }
  ns_.resize(f.ns_mark);
  frames_.pop_back();
  --depth_;
}

void StreamVerifier::chars(const xmlChar* ch, int len) {
  if (declined_ || frames_.empty()) return;
  std::string_view text(reinterpret_cast<const char*>(ch), static_cast<std::size_t>(len));
  if (fast_validator_.active() && !fast_validator_.chars(text)) return decline();
  const std::size_t before = canon_.size();
  append_c14n_text(canon_, text);
  // No byte was escaped: the text holds none of & < > CR, which is also all that the dump and
  // the DD's canonical form escape, so they take it as it is.
  const bool plain = canon_.size() - before == text.size();
  Frame& f = frames_.back();
  if (f.text) f.text->append(text);
  if (f.text2) f.text2->append(text);
  if (dumping_) dump_text(text, plain);
  if (f.role == kDd || f.role == kInDd) {
    if (plain) {
      dtes_.back().dd_canon.append(text);
    } else {
      append_c14n_text(dtes_.back().dd_canon, text);
    }
    // node_text of the DD fields is their whole text; text of an element below a field is
    // refused by child_role (kLeaf has no children), so appending here is exact.
  }
  if (f.role == kSig || f.role == kInSig) {
    sigs_.back().nodes[static_cast<std::size_t>(f.sig_node)].text.append(text);
  }
}

void StreamVerifier::dump_text(std::string_view text, bool plain) {
  std::string& out = *dump_;
  if (dump_open_) {
    out.push_back('>');
    dump_open_ = false;
  }
  if (plain) {
    out.append(text);
    return;
  }
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t run = i;
    while (i < text.size() && text[i] != '<' && text[i] != '>' && text[i] != '&' && text[i] != '\r')
      ++i;
    out.append(text.data() + run, i - run);
    if (i == text.size()) return;
    switch (text[i]) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      default: out += "&#13;"; break;
    }
    ++i;
  }
}

// ---------------------------------------------------------------------------------- checks

bool StreamVerifier::digest_ok(const Apex& a, bool standalone, const std::string& expected) const {
  const std::string& tag = standalone ? a.tag_standalone : a.tag_in_place;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), sha1_md(), nullptr) == 1 &&
            EVP_DigestUpdate(ctx.get(), tag.data(), tag.size()) == 1 &&
            EVP_DigestUpdate(ctx.get(), canon_.data() + a.begin, a.end - a.begin) == 1 &&
            EVP_DigestFinal_ex(ctx.get(), digest, &len) == 1;
  ok = ok && expected.size() == len && CRYPTO_memcmp(expected.data(), digest, len) == 0;
  ERR_clear_error();
  return ok;
}

bool StreamVerifier::signature_ok(const SigRec& /*s*/, const Apex& si, bool standalone,
                                  const std::string& signature, EVP_PKEY* key) const {
  const std::string& tag = standalone ? si.tag_standalone : si.tag_in_place;
  EvpMdCtxPtr ctx = rsa_sha1_verify_context(key);
  bool ok = ctx && EVP_DigestVerifyUpdate(ctx.get(), tag.data(), tag.size()) == 1 &&
            EVP_DigestVerifyUpdate(ctx.get(), canon_.data() + si.begin, si.end - si.begin) == 1 &&
            EVP_DigestVerifyFinal(ctx.get(),
                                  reinterpret_cast<const unsigned char*>(signature.data()),
                                  signature.size()) == 1;
  ERR_clear_error();
  return ok;
}

// SII's profile exactly as the DOM fast path requires it (SignedInfo, SignatureValue, optional
// KeyInfo; C14N 1.0, RSA-SHA1, one "#ID" Reference without transforms, SHA-1), the Reference
// pointing at `target_id`, and both digest and RSA signature good. Fills keys and validity.
bool StreamVerifier::check_signature(const SigRec& s, const std::string& target_id,
                                     int target_apex, bool standalone, SignatureResult* r) const {
  const auto& N = s.nodes;
  auto node = [&](int i) -> const SigNode& { return N[static_cast<std::size_t>(i)]; };
  auto first_kid = [&](int parent, std::string_view name) {
    for (int k : node(parent).kids)
      if (node(k).name == name) return k;
    return -1;
  };
  const SigNode& sig = N[0];
  if (sig.kids.size() < 2 || sig.kids.size() > 3 || !s.own_dsig_default) return false;
  const SigNode& si = node(sig.kids[0]);
  const SigNode& sv_node = node(sig.kids[1]);
  if (si.name != "SignedInfo" || sv_node.name != "SignatureValue" || !sv_node.kids.empty())
    return false;
  if (sig.kids.size() == 3 && node(sig.kids[2]).name != "KeyInfo") return false;
  if (si.kids.size() != 3) return false;
  const SigNode& c14n = node(si.kids[0]);
  const SigNode& method = node(si.kids[1]);
  const SigNode& ref = node(si.kids[2]);
  if (c14n.name != "CanonicalizationMethod" || !c14n.kids.empty() || c14n.algorithm != kC14N10)
    return false;
  if (method.name != "SignatureMethod" || !method.kids.empty() || method.algorithm != kRsaSha1)
    return false;
  if (ref.name != "Reference" || !ref.has_uri || ref.kids.size() != 2) return false;
  if (ref.uri.size() < 2 || ref.uri[0] != '#' || ref.uri.compare(1, std::string::npos, target_id) != 0)
    return false;
  for (std::size_t i = 1; i < ref.uri.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(ref.uri[i]);
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.')) return false;
  }
  const SigNode& dm = node(ref.kids[0]);
  const SigNode& dv = node(ref.kids[1]);
  if (dm.name != "DigestMethod" || !dm.kids.empty() || dm.algorithm != kSha1Uri) return false;
  if (dv.name != "DigestValue" || !dv.kids.empty()) return false;
  auto it = ids_.find(target_id);
  if (target_id.empty() || it == ids_.end() || it->second != target_apex) return false;

  // KeyInfo as read_keys reads it (first child of each name).
  SignerKeys& k = r->keys;
  if (sig.kids.size() == 3) {
    int key_info = sig.kids[2];
    int key_value = first_kid(key_info, "KeyValue");
    int rsa = key_value >= 0 ? first_kid(key_value, "RSAKeyValue") : -1;
    if (rsa >= 0) {
      int mod = first_kid(rsa, "Modulus");
      int exp = first_kid(rsa, "Exponent");
      // node_text of an element with children is their text too: keep to plain leaves.
      if ((mod >= 0 && !node(mod).kids.empty()) || (exp >= 0 && !node(exp).kids.empty()))
        return false;
      k.key_value = key_from_texts(mod >= 0 ? node(mod).text : std::string(),
                                   exp >= 0 ? node(exp).text : std::string(), &k.key_value_error);
    }
    int x509_data = first_kid(key_info, "X509Data");
    int cert = x509_data >= 0 ? first_kid(x509_data, "X509Certificate") : -1;
    if (cert >= 0) {
      if (!node(cert).kids.empty()) return false;
      k.has_certificate = true;
      k.certificate = certificate_from_base64(node(cert).text, &k.certificate_error);
    }
  }
  EVP_PKEY* key = k.key_value ? k.key_value.get()
                              : (k.certificate ? X509_get0_pubkey(k.certificate->x509()) : nullptr);
  if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA || EVP_PKEY_get_bits(key) < 1024)
    return false;

  std::string expected_digest, signature;
  if (!strict_base64(dv.text, &expected_digest) || !strict_base64(sv_node.text, &signature)) return false;
  const Apex& target = apexes_[static_cast<std::size_t>(target_apex)];
  if (s.signed_info_apex < 0) return false;
  const Apex& signed_info = apexes_[static_cast<std::size_t>(s.signed_info_apex)];
  if (!target.closed || !signed_info.closed) return false;
  if (!digest_ok(target, standalone, expected_digest)) return false;
  if (!signature_ok(s, signed_info, standalone, signature, key)) return false;
  r->valid = true;
  r->target_ok = true;
  r->has_target = true;
  return true;
}

bool StreamVerifier::finish(VerifyReport* report) {
  VerifyReport out;
  out.kind = root_;
  add_check(out, "xml", "document", CheckStatus::kPass);
  if (schema_file_.empty()) {
    add_check(out, "schema", out.kind, CheckStatus::kSkip, "no schemas given");
  } else {
    // A lone boleta is checked by the DOM verifier inside a synthesised envelope.
    if (!envelope_ && !dtes_.empty()) {
      const long long type = number_or_zero(dtes_.front().field[kTipo]);
      if (type == 39 || type == 41 || type == 0) return false;
    }
    add_check(out, "schema", schema_file_, CheckStatus::kPass);
  }
  SiiKeyring empty_keyring;
  const SiiKeyring& keyring = options_->keyring ? *options_->keyring : empty_keyring;

  if (envelope_) {
    if (envelope_sigs_ != 1 || envelope_sig_ < 0 || set_apex_ < 0 || set_id_.empty()) return false;
    SignatureResult r;
    if (!check_signature(sigs_[static_cast<std::size_t>(envelope_sig_)], set_id_, set_apex_, false, &r))
      return false;
    r.signature_reason = "verified in place";
    r.signing_time = has_set_time_ ? set_time_ : has_caratula_time_ ? caratula_time_ : std::string();
    report_signature(out, r, "envelope", set_id_, options_->check_cert_validity);
    if (has_caratula_) {
      std::map<int, long long> declared, found;
      for (const auto& [tpo, nro] : subtots_)
        declared[static_cast<int>(number_or_zero(tpo))] += number_or_zero(nro);
      for (int i : set_dtes_) {
        const DteRec& d = dtes_[static_cast<std::size_t>(i)];
        if (d.doc_count) ++found[static_cast<int>(number_or_zero(d.field[kTipo]))];
      }
      if (declared != found) return false;  // the DOM verifier explains the difference
      add_check(out, "envelope.subtotals", set_id_, CheckStatus::kPass);
    }
  }

  for (DteRec& d : dtes_) {
    if (d.doc_count != 1 || d.sig_count != 1 || d.sig < 0 || d.doc_apex < 0) return false;
    VerifiedDocument vd;
    vd.id = d.id;
    vd.doc_type = static_cast<int>(number_or_zero(d.field[kTipo]));
    vd.folio = number_or_zero(d.field[kFolio]);
    vd.issuer_rut = d.field[kRutEmisor];
    vd.receiver_rut = d.field[kRutRecep];
    vd.issue_date = d.field[kFchEmis];
    vd.total = number_or_zero(d.field[kMntTotal]);
    vd.signed_at = d.field[kTmstFirma];
    const std::string subject = dte_subject(vd.doc_type, vd.folio, vd.id);
    const std::size_t first_check = out.checks.size();
    SignatureResult r;
    if (!check_signature(sigs_[static_cast<std::size_t>(d.sig)], d.id, d.doc_apex, d.embedded, &r))
      return false;
    r.signature_reason =
        d.embedded ? "verified standalone (<DTE> copied out with only xmlns=\"http://www.sii.cl/SiiDte\", as SII checks it)"
                   : "verified in place";
    r.signing_time = d.field[kSignTime];
    report_signature(out, r, "dte", subject, options_->check_cert_validity);
    if (!d.has_ted) return false;  // the DOM verifier reports the missing TED
    if (d.ted.has_dd && d.ted.has_caf) {
      d.ted.dd_flat = flatten_xml(d.dd_canon);
      d.ted.caf_flat = flatten_xml(std::string_view(d.dd_canon).substr(d.caf_begin, d.caf_end - d.caf_begin));
    }
    d.ted.has_document = true;
    d.ted.doc[0] = d.field[kRutEmisor];
    d.ted.doc[1] = d.field[kTipo];
    d.ted.doc[2] = d.field[kFolio];
    d.ted.doc[3] = d.field[kFchEmis];
    d.ted.doc[4] = d.field[kRutRecep];
    d.ted.doc[5] = d.field[kMntTotal];
    d.ted.has_receiver = d.has_field[kRutRecep];
    report_ted(out, subject, [&] { return verify_ted_parts(d.ted, keyring, subject); });
    add_document(out, std::move(vd), first_check);
  }
  if (want_facts_ && envelope_) {
    facts_.set_id = set_id_;
    const SigRec& sig = sigs_[static_cast<std::size_t>(envelope_sig_)];
    // SignedInfo/Reference/DigestValue, checked present by check_signature.
    const SigNode& si = sig.nodes[static_cast<std::size_t>(sig.nodes[0].kids[0])];
    const SigNode& ref = sig.nodes[static_cast<std::size_t>(si.kids[2])];
    facts_.digest = sig.nodes[static_cast<std::size_t>(ref.kids[1])].text;
    facts_.complete = facts_ok_ && facts_.dte_xml.size() == set_dtes_.size();
  }
  *report = std::move(out);
  return true;
}

// libxml2's validation context for a schema, one per thread and schema, kept for the next run.
xmlSchemaValidCtxt* libxml2_validator(xmlSchema* schema) {
  struct ThreadValidator {
    std::vector<std::pair<xmlSchema*, xmlSchemaValidCtxt*>> ctxts;
    ~ThreadValidator() {
      for (auto& [schema, v] : ctxts) xmlSchemaFreeValidCtxt(v);
    }
  };
  thread_local ThreadValidator validators;
  for (auto& [s, v] : validators.ctxts)
    if (s == schema) return v;
  xmlSchemaValidCtxt* v = xmlSchemaNewValidCtxt(schema);
  if (v) validators.ctxts.emplace_back(schema, v);
  return v;
}

bool StreamVerifier::run(std::string_view bytes, VerifyReport* report) {
  if (bytes.empty() || bytes.size() > options_->limits.max_bytes ||
      bytes.size() > static_cast<std::size_t>(INT32_MAX))
    return false;
  init_xml();
  // One parser context per thread, reset for every document (xmlCtxtReadMemory does): its
  // dictionary of names is kept, and replaced once it has grown past what SII's vocabulary
  // needs, so a document full of invented names cannot make it grow without bound.
  struct ThreadParser {
    xmlParserCtxt* ctxt = nullptr;
    ~ThreadParser() {
      if (ctxt) xmlFreeParserCtxt(ctxt);
    }
  };
  thread_local ThreadParser parser;
  if (parser.ctxt && (!parser.ctxt->dict || xmlDictSize(parser.ctxt->dict) > 4096)) {
    xmlFreeParserCtxt(parser.ctxt);
    parser.ctxt = nullptr;
  }
  if (!parser.ctxt) {
    static const xmlSAXHandler handler = make_handler();
    parser.ctxt = xmlNewParserCtxt();
    if (!parser.ctxt || !parser.ctxt->sax) return false;
    *parser.ctxt->sax = handler;
  }
  xmlParserCtxt* ctxt = parser.ctxt;
  ctxt->_private = this;
  ctxt->userData = ctxt;
  ctxt_ = ctxt;

  // Schema validation in the same pass: the fast validator where the XSD has its tables (a
  // document it does not plainly accept stops the stream: the DOM verifier then has libxml2
  // say why), else libxml2's XSD validator plugged into the SAX stream (a validation context
  // per thread and schema, reset by each run).
  xmlSchemaValidCtxt* vctxt = nullptr;
  int schema_errors = 0;
  if (options_->schemas) {
    const FastSchema* fast = nullptr;
    xmlSchema* schema = options_->schemas->schema_for_root(peek_root(bytes), &schema_file_, &fast);
    if (!schema) return false;
    fast_validator_.reset(fast);
    if (!fast) {
      vctxt = libxml2_validator(schema);
      if (!vctxt) return false;
    }
  }
  if (vctxt) {
    xmlSchemaSetValidStructuredErrors(
        vctxt, [](void* count, xmlErrorPtr) { ++*static_cast<int*>(count); }, &schema_errors);
  }
  xmlSAXHandler* own_sax = ctxt->sax;
  void* own_user = ctxt->userData;
  xmlSchemaSAXPlugPtr plug = nullptr;
  if (vctxt) {
    xmlSAXHandler* sax = own_sax;
    void* user = own_user;
    plug = xmlSchemaSAXPlug(vctxt, &sax, &user);
    if (!plug) return false;
    ctxt->sax = sax;
    ctxt->userData = user;
  }
  canon_.reserve(bytes.size() + bytes.size() / 8);
  // The same options as parse_xml (no entity substitution, no DTD loading, no network); no
  // tree is built (the handler has no startDocument), so nothing is returned to free.
  int options = XML_PARSE_NONET | XML_PARSE_BIG_LINES | XML_PARSE_NOWARNING | XML_PARSE_NOERROR;
  std::string_view text = bytes;
  const char* encoding = nullptr;
  // ISO-8859-1 converted here (from_latin1 copies ASCII runs eight bytes at a time): several
  // times faster than libxml2's byte-by-byte converter, which the parse then skips (the
  // declaration is ignored, XML_PARSE_IGNORE_ENC). Every byte becomes the character libxml2
  // would have made of it.
  std::string utf8;
  if (declared_encoding(bytes) == "iso-8859-1") {
    utf8 = from_latin1(bytes);
    if (utf8.size() > static_cast<std::size_t>(INT32_MAX)) return false;
    text = utf8;
    encoding = "UTF-8";
    options |= XML_PARSE_IGNORE_ENC;
  }
  xmlDoc* none = xmlCtxtReadMemory(ctxt, text.data(), static_cast<int>(text.size()), nullptr,
                                   encoding, options);
  if (none) xmlFreeDoc(none);
  if (plug) {
    xmlSchemaSAXUnplug(plug);
    ctxt->sax = own_sax;
    ctxt->userData = own_user;
  }
  const bool schema_ok = fast_validator_.active()
                             ? fast_validator_.accepted()
                             : !vctxt || (schema_errors == 0 && xmlSchemaIsValid(vctxt) == 1);
  const bool parsed = schema_ok && !declined_ && ctxt->wellFormed && ctxt->nsWellFormed &&
                      depth_ == 0 && !root_.empty();
  bool ok = parsed && finish(report);
  ctxt_ = nullptr;
  return ok;
}

}  // namespace

bool stream_verify(std::string_view bytes, const VerifyOptions& options, VerifyReport* report,
                   EnvelopeFacts* facts) {
  try {
    thread_local StreamVerifier kept;
    StreamVerifier once;
    // A large envelope's buffers are not worth keeping for the next document.
    StreamVerifier& v = bytes.size() > (1u << 20) ? once : kept;
    v.reset(options);
    if (facts) v.want_facts();
    const bool ok = v.run(bytes, report);
    if (ok && facts) *facts = std::move(v.facts());
    return ok;
  } catch (const std::exception&) {
    return false;  // the DOM verifier reports it
  }
}

}  // namespace dte::detail
