// Normalised document -> unsigned <DTE><Documento> in XSD sequence order.
#include <libxml/tree.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
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
//
// The text is written through a cursor into `out` sized ahead (room() before each piece): a
// std::string append per tag, indent and text cost more than the bytes themselves.
class TextWalk {
 public:
  // Appends to `out`.
  TextWalk(std::string& out, detail::TedTexts& texts) : out_(out), texts_(texts) {
    const std::size_t at = out_.size();
    out_.resize(at + 8192);
    w_ = out_.data() + at;
    end_ = out_.data() + out_.size();
  }

  // The text written, cut to its length.
  void finish() { out_.resize(static_cast<std::size_t>(w_ - out_.data())); }

  bool group(const Node& node, const json& obj, int level, unsigned mask) {
    if (!obj.is_object()) return false;
    const auto& members = obj.get_ref<const json::object_t&>();
    unsigned claimed = 0;
    bool any = false;
    // normalize() writes each object's keys in schema order: then one merge of the two lists
    // finds every key (and shows none is unknown) instead of a search per schema element.
    const std::size_t mark = written();
    auto it = members.begin();
    const Node* c = node.children.data();
    const Node* const last = c + node.children.size();
    for (; it != members.end(); ++it, ++c) {
      while (c != last && !named(*c, it->first)) ++c;
      if (c == last) break;
      if (!value(*c, it->second, level, mask, claimed, any)) return false;
    }
    if (it != members.end()) {
      // Out of order, or an unknown key: start this element's content again, by search. What
      // the merge wrote is dropped; the texts it took for the TED are taken again, the same.
      rewind(mark);
      claimed = 0;
      any = false;
      for (const auto& m : members)
        if (!node.find(m.first)) return false;
      for (const Node& child : node.children) {
        const json* v = detail::member(obj, child.key());
        if (v && !value(child, *v, level, mask, claimed, any)) return false;
      }
    }
    if (any) indent(level);
    return true;
  }

  bool ok() const { return !bad_; }

 private:
  static bool named(const Node& c, const std::string& key) {
    return c.name_len == key.size() && c.name[0] == key[0] &&
           std::memcmp(c.name, key.data(), key.size()) == 0;
  }

  bool value(const Node& c, const json& v, int level, unsigned mask, unsigned& claimed, bool& any) {
    if (!v.is_array()) return one(c, v, level + 1, mask, claimed, any);
    if (!c.repeats()) return false;
    for (const json& item : v)
      if (!one(c, item, level + 1, mask, claimed, any)) return false;
    return true;
  }

  // `mask`: the TED paths whose prefix so far is the first element of its name at each level
  // (what find_path follows); `claimed`: the paths that a child of this element already took.
  bool one(const Node& c, const json& v, int level, unsigned mask, unsigned& claimed, bool& any) {
    if (c.kind != Kind::kGroup) {
      if (v.is_null()) return true;
      if (v.is_object() || v.is_array()) return false;
      if (c.kind == Kind::kInt || c.kind == Kind::kDec) {
        // as_number's value for an integer (signed or not: both read as long long).
        if (v.is_number_integer()) {
          const long long x = v.get<long long>();
          if (c.positive && c.min == 0 && x == 0) return true;
          // A whole number well inside long double's exact range formats as itself at any
          // number of fraction digits: format_number's rounding and printf are skipped.
          const auto n = static_cast<long double>(x);
          if (n > -1e12L && n < 1e12L) {
            char digits[24];
            const auto r = std::to_chars(digits, digits + sizeof digits, x);
            return leaf(c, std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)),
                        level, mask, claimed, any);
          }
        }
        auto n = detail::as_number(v);
        if (!n) return false;
        if (c.positive && c.min == 0 && *n == 0) return true;
        const std::string text =
            detail::format_number(*n, c.kind == Kind::kInt ? 0 : (c.frac > 0 ? c.frac : 4));
        return leaf(c, text, level, mask, claimed, any);
      }
      if (const std::string* plain = plain_text(v, c)) {
        if (plain->empty() && c.min == 0) return true;
        return leaf(c, *plain, level, mask, claimed, any);
      }
      const std::string text = detail::latin1_safe_text(detail::scalar_text(v, c), c.max_len);
      if (text.empty() && c.min == 0) return true;
      return leaf(c, text, level, mask, claimed, any);
    }
    const unsigned mine = mask ? take(c.key(), level, mask, claimed) : 0;
    any = true;
    for (unsigned m = mine; m; m &= m - 1)
      if (last_component(static_cast<unsigned>(std::countr_zero(m)), level))
        bad_ = true;  // a group's text: unusual
    room(kIndentMax + c.name_len + 2);
    indent(level);
    *w_++ = '<';
    put(c.name, c.name_len);
    *w_++ = '>';
    if (!group(c, v, level, mine)) return false;
    room(c.name_len + 3);
    *w_++ = '<';
    *w_++ = '/';
    put(c.name, c.name_len);
    *w_++ = '>';
    return true;
  }

  bool leaf(const Node& c, std::string_view text, int level, unsigned mask, unsigned& claimed,
            bool& any) {
    if (mask) {
      const unsigned mine = take(c.key(), level, mask, claimed);
      for (unsigned m = mine; m; m &= m - 1) {
        const auto p = static_cast<unsigned>(std::countr_zero(m));
        if (last_component(p, level)) texts_[p].assign(text);
      }
    }
    any = true;
    // Escaping makes a byte at most five ("&amp;").
    room(kIndentMax + 2 * c.name_len + 5 + 5 * text.size());
    indent(level);
    *w_++ = '<';
    put(c.name, c.name_len);
    *w_++ = '>';
    escape(text);
    *w_++ = '<';
    *w_++ = '/';
    put(c.name, c.name_len);
    *w_++ = '>';
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

  // Paths in `mask` whose component at `level` is `name` and not yet taken by a sibling.
  static unsigned take(std::string_view name, int level, unsigned mask, unsigned& claimed) {
    unsigned mine = 0;
    for (unsigned open = mask & ~claimed; open; open &= open - 1) {
      const auto p = static_cast<unsigned>(std::countr_zero(open));
      if (component(p, level) == name) mine |= 1U << p;
    }
    claimed |= mine;
    return mine;
  }

  // Components of a TED path; level 2 is the first (Documento is level 1).
  static constexpr std::size_t kMaxComponents = 4;
  using Components =
      std::array<std::array<std::string_view, kMaxComponents>, detail::kTedPaths.size()>;
  static constexpr Components kComponents = [] {
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
  static std::string_view component(unsigned p, int level) {
    const std::size_t index = static_cast<std::size_t>(level - 2);
    return level >= 2 && index < kMaxComponents ? kComponents[p][index] : std::string_view();
  }
  static bool last_component(unsigned p, int level) { return component(p, level + 1).empty(); }

  // Output: room(n) makes n bytes writable at w_.
  static constexpr std::size_t kIndentMax = 64;  // a newline and the spaces of one indent
  std::size_t written() const { return static_cast<std::size_t>(w_ - out_.data()); }
  void rewind(std::size_t at) { w_ = out_.data() + at; }
  void room(std::size_t n) {
    if (static_cast<std::size_t>(end_ - w_) >= n) return;
    const std::size_t at = written();
    out_.resize(std::max(2 * out_.size(), at + n + 4096));
    w_ = out_.data() + at;
    end_ = out_.data() + out_.size();
  }
  void put(const char* s, std::size_t n) {
    std::memcpy(w_, s, n);
    w_ += n;
  }
  // A newline and the indent of `level` (libxml2's formatting: two spaces a level, none past
  // the 30th, which kIndentMax bounds).
  void indent(int level) {
    static constexpr std::array<char, kIndentMax> kSpaces = [] {
      std::array<char, kIndentMax> t{};
      t.fill(' ');
      t[0] = '\n';
      return t;
    }();
    const std::size_t n = 1 + 2 * static_cast<std::size_t>(level);
    if (n > kIndentMax) {  // not reached by any SII schema
      bad_ = true;
      return;
    }
    room(kIndentMax);
    std::memcpy(w_, kSpaces.data(), kIndentMax);
    w_ += n;
  }

  // C14N text escaping; libxml2's serialiser escapes the same characters the same way, except
  // CR (which latin1_safe removed). NUL and CR make the walk decline. The caller made room.
  static constexpr std::array<bool, 256> kEscapeStop = [] {
    std::array<bool, 256> t{};
    for (unsigned char c : {'\0', '&', '<', '>', '\r'}) t[c] = true;
    return t;
  }();

  void escape(std::string_view s) {
    char* w = w_;
    const char* p = s.data();
    const char* const end = p + s.size();
    // Eight bytes at a time while none is '&', '<', '>' or below 0x20 (CR, NUL; tab and
    // newline take the byte-wise way too).
    constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
    constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
    auto zero_byte = [](std::uint64_t x) { return (x - kOnes) & ~x & kHigh; };
    while (end - p >= 8) {
      std::uint64_t x;
      std::memcpy(&x, p, sizeof x);
      // '<' (0x3C) and '>' (0x3E) both become 0x3E with bit 1 set; no other byte does.
      if (zero_byte((x | 0x02 * kOnes) ^ (0x3E * kOnes)) | zero_byte(x ^ (0x26 * kOnes)) |
          ((x - 0x20 * kOnes) & ~x & kHigh))
        break;
      std::memcpy(w, &x, sizeof x);
      w += 8;
      p += 8;
    }
    for (; p < end; ++p) {
      const auto c = static_cast<unsigned char>(*p);
      if (!kEscapeStop[c]) {
        *w++ = static_cast<char>(c);
        continue;
      }
      switch (c) {
        case '&': std::memcpy(w, "&amp;", 5); w += 5; break;
        case '<': std::memcpy(w, "&lt;", 4); w += 4; break;
        case '>': std::memcpy(w, "&gt;", 4); w += 4; break;
        default: bad_ = true; break;
      }
    }
    w_ = w;
  }

  std::string& out_;
  detail::TedTexts& texts_;
  char* w_ = nullptr;
  char* end_ = nullptr;
  bool bad_ = false;
};

}  // namespace

namespace detail {

bool append_document_text(const json& normalized, std::string& c14n, TedTexts& ted_texts) {
  const int tipo = doc_type_of(normalized);
  if (!is_supported_type(tipo)) return false;
  const std::size_t start = c14n.size();
  TextWalk walk(c14n, ted_texts);
  const unsigned all = (1U << kTedPaths.size()) - 1;
  const bool ok = walk.group(detail::schema_for(tipo), normalized, 1, all) && walk.ok();
  walk.finish();
  if (!ok) return false;
  // The caller appends TED and TmstFirma, then closes the Documento itself.
  if (c14n.size() - start >= 3 && c14n.compare(c14n.size() - 3, 3, "\n  ") == 0)
    c14n.resize(c14n.size() - 3);
  return true;
}

bool latin1_unchanged(std::string_view s, std::size_t* chars) noexcept {
  std::size_t n = 0;
  std::size_t i = 0;
  // Runs of printable ASCII eight bytes at a time: no byte with the high bit set, none below
  // 0x20 (tab and newline take the byte-wise way).
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  auto printable = [&](std::size_t at) {
    std::uint64_t word;
    std::memcpy(&word, s.data() + at, sizeof word);
    return !((word & kHigh) || ((word - 0x20 * kOnes) & ~word & kHigh));
  };
  while (s.size() - i >= 8 && printable(i)) {
    i += 8;
    n += 8;
  }
  // A printable tail shorter than a word: the last eight bytes, overlapping what was seen.
  if (i < s.size() && s.size() - i < 8 && s.size() >= 8 && printable(s.size() - 8)) {
    n += s.size() - i;
    i = s.size();
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
