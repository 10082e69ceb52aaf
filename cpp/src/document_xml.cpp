// Normalised document -> unsigned <DTE><Documento> in XSD sequence order.
#include <libxml/tree.h>

#include <array>
#include <optional>
#include <string_view>

#include <cstdint>
#include <cstring>

#include "document_internal.hpp"
#include "dte/errors.hpp"
#include "dte/xml.hpp"
#include "sign_fast.hpp"

namespace dte {
namespace {

using detail::Kind;
using detail::Node;

const xmlChar* X(const char* s) { return reinterpret_cast<const xmlChar*>(s); }

void check_known(const json& obj, const Node& node, const std::string& path) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!node.find(it.key())) {
      throw DocumentError("input.unknown_field",
                          "unknown field '" + (path.empty() ? it.key() : path + "." + it.key()) +
                              "' (not in SII's schema for this document type)");
    }
  }
}

void emit_leaf(xmlNode* parent, xmlNs* ns, const Node& node, const json& value,
               const std::string& path) {
  if (value.is_null()) return;
  if (value.is_object() || value.is_array())
    throw DocumentError("input.type", path + " must be a single value");
  std::string text;
  if (node.kind == Kind::kInt || node.kind == Kind::kDec) {
    auto n = detail::as_number(value);
    if (!n) throw DocumentError("input.type", path + " must be a number");
    // Optional elements whose XSD type excludes zero are left out rather than made invalid.
    if (node.positive && node.min == 0 && *n == 0) return;
    const int frac = node.kind == Kind::kInt ? 0 : (node.frac > 0 ? node.frac : 4);
    text = detail::format_number(*n, frac);
  } else {
    text = detail::latin1_safe_text(detail::scalar_text(value, node), node.max_len);
    if (text.empty() && node.min == 0) return;
  }
  xmlNewTextChild(parent, ns, X(node.name), X(text.c_str()));
}

void emit_group(xmlNode* el, xmlNs* ns, const Node& node, const json& obj,
                const std::string& path) {
  if (!obj.is_object()) throw DocumentError("input.type", path + " must be an object");
  check_known(obj, node, path);
  for (const Node& c : node.children) {
    auto it = obj.find(c.name);
    if (it == obj.end()) continue;
    const std::string cpath = path.empty() ? std::string(c.name) : path + "." + c.name;
    auto emit_one = [&](const json& v, const std::string& p) {
      if (c.kind == Kind::kGroup) {
        xmlNode* sub = xmlNewChild(el, ns, X(c.name), nullptr);
        emit_group(sub, ns, c, v, p);
      } else {
        emit_leaf(el, ns, c, v, p);
      }
    };
    if (it->is_array()) {
      if (!c.repeats()) throw DocumentError("input.type", cpath + " takes a single value");
      std::size_t i = 0;
      for (const json& v : *it) {
        emit_one(v, cpath + "[" + std::to_string(i) + "]");
        ++i;
      }
    } else {
      emit_one(*it, cpath);
    }
  }
}

// The same walk written straight to text for the signing fast path (sign_fast.hpp): the
// canonical form of what build_document_xml's tree becomes once serialised with formatting and
// parsed back. It declines (returns false) wherever emit_group/emit_leaf would throw, so that the
// DOM path reports the error with its message; it builds no error paths on the way.
class TextWalk {
 public:
  explicit TextWalk(detail::DocumentText* out) : out_(out->c14n), texts_(out->ted_texts) {}

  bool group(const Node& node, const json& obj, int level, unsigned mask) {
    if (!obj.is_object()) return false;
    unsigned claimed = 0;
    bool any = false;
    auto value = [&](const Node& c, const json& v) {
      if (!v.is_array()) return one(c, v, level + 1, mask, claimed, any);
      if (!c.repeats()) return false;
      for (const json& item : v)
        if (!one(c, item, level + 1, mask, claimed, any)) return false;
      return true;
    };
    // normalize() writes each object's keys in schema order: then one merge of the two lists
    // finds every key (and shows none is unknown) instead of a search per schema element.
    if (in_schema_order(node, obj)) {
      auto it = obj.begin();
      for (const Node& c : node.children) {
        if (it == obj.end()) break;
        if (it.key() != c.key()) continue;
        if (!value(c, it.value())) return false;
        ++it;
      }
    } else {
      for (auto it = obj.begin(); it != obj.end(); ++it)
        if (!node.find(it.key())) return false;
      for (const Node& c : node.children) {
        const json* v = detail::member(obj, c.key());
        if (v && !value(c, *v)) return false;
      }
    }
    if (any) close_indent(level);
    return true;
  }

  bool ok() const { return !bad_; }

 private:
  // `mask`: the TED paths whose prefix so far is the first element of its name at each level
  // (what find_path follows); `claimed`: the paths that a child of this element already took.
  bool one(const Node& c, const json& v, int level, unsigned mask, unsigned& claimed, bool& any) {
    std::string text;
    if (c.kind != Kind::kGroup) {
      if (v.is_null()) return true;
      if (v.is_object() || v.is_array()) return false;
      if (c.kind == Kind::kInt || c.kind == Kind::kDec) {
        auto n = detail::as_number(v);
        if (!n) return false;
        if (c.positive && c.min == 0 && *n == 0) return true;
        // A whole number well inside long double's exact range formats as itself at any
        // number of fraction digits: format_number's rounding and printf are skipped.
        if (v.is_number_integer() && *n > -1e12L && *n < 1e12L)
          text = std::to_string(v.get<long long>());
        else
          text = detail::format_number(*n, c.kind == Kind::kInt ? 0 : (c.frac > 0 ? c.frac : 4));
      } else if (const std::string* plain = plain_text(v, c)) {
        if (plain->empty() && c.min == 0) return true;
        return leaf(c, *plain, level, mask, claimed, any);
      } else {
        text = detail::latin1_safe_text(detail::scalar_text(v, c), c.max_len);
        if (text.empty() && c.min == 0) return true;
      }
      return leaf(c, text, level, mask, claimed, any);
    }
    const unsigned mine = mask ? take(c.key(), level, mask, claimed) : 0;
    any = true;
    open_indent(level);
    out_.push_back('<');
    out_ += c.key();
    out_.push_back('>');
    for (unsigned p = 0; mine >> p; ++p)
      if ((mine >> p) & 1U && last_component(p, level)) bad_ = true;  // a group's text: unusual
    if (!group(c, v, level, mine)) return false;
    out_ += "</";
    out_ += c.key();
    out_.push_back('>');
    return true;
  }

  bool leaf(const Node& c, const std::string& text, int level, unsigned mask, unsigned& claimed,
            bool& any) {
    const unsigned mine = mask ? take(c.key(), level, mask, claimed) : 0;
    any = true;
    open_indent(level);
    out_.push_back('<');
    out_ += c.key();
    out_.push_back('>');
    for (unsigned p = 0; mine >> p; ++p)
      if ((mine >> p) & 1U && last_component(p, level)) texts_[p] = text;
    escape(text);
    out_ += "</";
    out_ += c.key();
    out_.push_back('>');
    return true;
  }

  // A JSON string that latin1_safe_text would return unchanged (what ISO-8859-1 holds, within
  // the length limit), to be written without copies; nullptr otherwise.
  static const std::string* plain_text(const json& v, const Node& c) {
    if (!v.is_string()) return nullptr;
    const std::string& s = v.get_ref<const std::string&>();
    std::size_t chars = 0;
    if (!detail::latin1_unchanged(s, &chars)) return nullptr;
    if (c.max_len > 0 && chars > static_cast<std::size_t>(c.max_len)) return nullptr;
    return &s;
  }

  static bool in_schema_order(const Node& node, const json& obj) {
    auto it = obj.begin();
    for (const Node& c : node.children) {
      if (it == obj.end()) return true;
      if (it.key() == c.key()) ++it;
    }
    return it == obj.end();
  }

  // Paths in `mask` whose component at `level` is `name` and not yet taken by a sibling.
  unsigned take(std::string_view name, int level, unsigned mask, unsigned& claimed) {
    unsigned mine = 0;
    for (unsigned p = 0; mask >> p; ++p) {
      if (!((mask >> p) & 1U) || ((claimed >> p) & 1U)) continue;
      if (component(p, level) == name) {
        mine |= 1U << p;
        claimed |= 1U << p;
      }
    }
    return mine;
  }

  // Components of a TED path; level 2 is the first (Documento is level 1). Split once: every
  // element of the document asks.
  static constexpr std::size_t kMaxComponents = 4;
  using Components = std::array<std::array<std::string_view, kMaxComponents>, detail::kTedPaths.size()>;
  static const Components& components() {
    static const Components table = [] {
      Components t{};
      for (std::size_t p = 0; p < detail::kTedPaths.size(); ++p) {
        std::string_view path = detail::kTedPaths[p];
        for (std::size_t l = 0; l < kMaxComponents && !path.empty(); ++l) {
          const std::size_t slash = path.find('/');
          t[p][l] = path.substr(0, slash);
          path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
        }
      }
      return t;
    }();
    return table;
  }
  static std::string_view component(unsigned p, int level) {
    const std::size_t index = static_cast<std::size_t>(level - 2);
    return level >= 2 && index < kMaxComponents ? components()[p][index] : std::string_view();
  }
  static bool last_component(unsigned p, int level) {
    return component(p, level + 1).empty();
  }

  void open_indent(int level) {
    out_.push_back('\n');
    out_.append(static_cast<std::size_t>(2 * level), ' ');
  }
  void close_indent(int level) { open_indent(level); }

  // C14N text escaping; libxml2's serialiser escapes the same characters the same way, except
  // CR (which latin1_safe removed).
  // The bytes escape() stops at: NUL (the end of the text), '&', '<', '>' and CR.
  static constexpr std::array<bool, 256> kEscapeStop = [] {
    std::array<bool, 256> t{};
    for (unsigned char c : {'\0', '&', '<', '>', '\r'}) t[c] = true;
    return t;
  }();

  void escape(const std::string& s) {
    const char* p = s.c_str();
    for (;;) {
      const char* run = p;
      while (!kEscapeStop[static_cast<unsigned char>(*p)]) ++p;
      out_.append(run, static_cast<std::size_t>(p - run));
      switch (*p) {
        case '\0': return;
        case '&': out_ += "&amp;"; break;
        case '<': out_ += "&lt;"; break;
        case '>': out_ += "&gt;"; break;
        default: bad_ = true; return;
      }
      ++p;
    }
  }

  std::string& out_;
  detail::TedTexts& texts_;
  bool bad_ = false;
};

}  // namespace

namespace detail {

std::optional<DocumentText> document_text(const json& normalized) {
  const int tipo = doc_type_of(normalized);
  if (!is_supported_type(tipo)) return std::nullopt;
  DocumentText out;
  out.c14n.reserve(8192);
  TextWalk walk(&out);
  const unsigned all = (1U << kTedPaths.size()) - 1;
  if (!walk.group(detail::schema_for(tipo), normalized, 1, all) || !walk.ok()) return std::nullopt;
  // The caller appends TED and TmstFirma, then closes the Documento itself.
  if (out.c14n.size() >= 3 && out.c14n.compare(out.c14n.size() - 3, 3, "\n  ") == 0)
    out.c14n.resize(out.c14n.size() - 3);
  return out;
}

bool latin1_unchanged(std::string_view s, std::size_t* chars) noexcept {
  std::size_t n = 0;
  std::size_t i = 0;
  // Runs of printable ASCII eight bytes at a time: no byte with the high bit set, none below
  // 0x20 (tab and newline take the byte-wise way).
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  while (s.size() - i >= 8) {
    std::uint64_t word;
    std::memcpy(&word, s.data() + i, sizeof word);
    if ((word & kHigh) || ((word - 0x20 * kOnes) & ~word & kHigh)) break;
    i += 8;
    n += 8;
  }
  for (; i < s.size(); ++n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 && c != '\n' && c != '\t') return false;
      ++i;
      continue;
    }
    if ((c & 0xE0) != 0xC0 || i + 2 > s.size() ||
        (((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu)) < 0xA0)
      return false;
    i += 2;
  }
  if (chars) *chars = n;
  return true;
}

std::string latin1_safe_text(const std::string& text, int max_len) {
  std::string safe = latin1_safe(text);
  if (max_len > 0) safe = truncate_chars(safe, static_cast<std::size_t>(max_len));
  return safe;
}
}  // namespace detail

XmlDocPtr build_document_xml(const json& normalized, std::string doc_id) {
  init_xml();
  const int tipo = doc_type_of(normalized);
  if (!is_supported_type(tipo))
    throw DocumentError("input.unsupported_type",
                        "TipoDTE " + std::to_string(tipo) + " is not a supported document type");
  if (doc_id.empty()) doc_id = "T" + std::to_string(tipo) + "F" + std::to_string(folio_of(normalized));
  const Node& schema = detail::schema_for(tipo);

  XmlDocPtr doc(xmlNewDoc(X("1.0")));
  if (!doc) throw DteError("xml.internal", "cannot create an XML document");
  xmlNode* root = xmlNewDocNode(doc.get(), nullptr, X("DTE"), nullptr);
  xmlDocSetRootElement(doc.get(), root);
  xmlNs* ns = xmlNewNs(root, X(kSiiNs), nullptr);
  xmlSetNs(root, ns);
  xmlNewProp(root, X("version"), X("1.0"));
  xmlNode* documento = xmlNewChild(root, ns, X(detail::root_name(tipo)), nullptr);
  xmlNewProp(documento, X("ID"), X(doc_id.c_str()));
  emit_group(documento, ns, schema, normalized, "");
  return doc;
}

}  // namespace dte
