// The signing fast path: a signed DTE written as text, byte for byte what the DOM path
// (detail::sign_via_dom in pipeline.cpp) makes. That path builds a libxml2 tree, serialises it
// formatted in ISO-8859-1, parses it back and has xmlsec's template signed; here the Documento is
// written once in its canonical form (the text the digest covers) and the output bytes are that
// same text with libxml2's empty-element form, in Latin-1. Whatever this file does not model
// makes it decline, and the DOM path signs instead.
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "document_internal.hpp"
#include "dte/errors.hpp"
#include "dte/xml.hpp"
#include "sign_fast.hpp"

namespace dte::detail {
namespace {

bool plain_token(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
          c == '-' || c == '.' || c == ':' || c == '+'))
      return false;
  }
  return true;
}

// The first byte at or after `p` that append_serialized must look at: one with the high bit set
// (UTF-8 to make Latin-1), or a '<' right after a '>' (an empty element <x></x> has one; in
// formatted text, where tags follow text or an indent, little else does). `end` if none. Many
// bytes at a time: the text is mostly tags and plain values without either.
const char* next_special(const char* begin, const char* p, const char* end) {
  bool after_gt = p > begin && p[-1] == '>';  // p[0]'s predecessor
#if defined(__SSE2__)
  const __m128i gt_bytes = _mm_set1_epi8('>');
  const __m128i lt_bytes = _mm_set1_epi8('<');
  while (end - p >= 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const auto gt = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, gt_bytes)));
    const auto lt = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, lt_bytes)));
    const unsigned hit = static_cast<unsigned>(_mm_movemask_epi8(x)) |
                         (((gt << 1) | static_cast<unsigned>(after_gt)) & lt);
    if (hit) return p + std::countr_zero(hit);
    after_gt = (gt >> 15) != 0;
    p += 16;
  }
#endif
  for (; p < end; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x80 || (c == '<' && after_gt)) return p;
    after_gt = c == '>';
  }
  return end;
}

// The output bytes of a canonical text: libxml2's serialiser writes an element without children
// as <x/> where C14N writes <x></x>, and writes Latin-1 (false for a character Latin-1 cannot
// hold: libxml2 would write a character reference, left to the DOM path). Text and the
// attribute values let through here hold no raw '<' or '>', so a start tag's '<' is the last
// '<' before its '>', and a start tag directly followed by "</" is an empty element.
bool append_serialized(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size());  // the output is never longer
  const char* const begin = s.data();
  const char* const end = begin + s.size();
  const char* p = begin;
  while (p < end) {
    const char* q = next_special(begin, p, end);
    out.append(p, q);
    p = q;
    if (p == end) break;
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x80) {
      if ((c != 0xC2 && c != 0xC3) || p + 1 == end ||
          (static_cast<unsigned char>(p[1]) & 0xC0) != 0x80)
        return false;
      out.push_back(
          static_cast<char>(((c & 0x03U) << 6) | (static_cast<unsigned char>(p[1]) & 0x3FU)));
      p += 2;
      continue;
    }
    // "><": p[-1] closes a tag; an empty element when that is a start tag and p[1] is '/'.
    const char* lt = p - 1;
    while (lt != begin && *lt != '<') --lt;
    if (*lt == '<' && lt[1] != '/' && p + 1 < end && p[1] == '/') {
      out.back() = '/';
      out.push_back('>');
      const char* close = static_cast<const char*>(
          std::memchr(p, '>', static_cast<std::size_t>(end - p)));
      p = close ? close + 1 : end;
    } else {
      out.push_back('<');
      ++p;
    }
  }
  return true;
}

// A newline and libxml2's indent of `level` (2 spaces a level; formatted_c14n goes to 29).
void indent(std::string& out, int level) {
  static constexpr std::string_view kIndents =
      "\n                                                            ";
  static_assert(kIndents.size() == 1 + 2 * 30);
  out.append(kIndents.substr(0, 1 + 2 * static_cast<std::size_t>(level)));
}

// Byte sets as tables: formatted_c14n tests every byte of the names and attributes.
using ByteSet = std::array<bool, 256>;
constexpr ByteSet byte_set(std::string_view bytes) {
  ByteSet t{};
  for (char c : bytes) t[static_cast<unsigned char>(c)] = true;
  return t;
}
bool holds_any(std::string_view s, const ByteSet& set) {
  for (char c : s)
    if (set[static_cast<unsigned char>(c)]) return true;
  return false;
}

// std::llround(std::strtod(s)): exports' MntTotal has decimals. The usual whole amount of up to
// 15 digits is exact in a double, so it is read as it is.
long long rounded_amount(const std::string& s) {
  if (const auto v = plain_digits(s)) return *v;
  return std::llround(std::strtod(s.c_str(), nullptr));
}

}  // namespace

std::optional<std::string> formatted_c14n(std::string_view flat, int level) {
  // libxml2 indents up to 30 levels; `level` is 2 (a TED) or deeper.
  if (level < 2 || level >= 30) return std::nullopt;
  constexpr std::size_t kMaxDepth = 30 - 2;  // deeper declines below
  static constexpr ByteSet kNameBad = byte_set(":&\"/");
  static constexpr ByteSet kAttrBad = byte_set(":<>& \"");
  static constexpr ByteSet kValueBad = byte_set("<>&");
  struct Frame {
    std::string_view name;
    bool elements = false;
    bool text = false;
  };
  std::array<Frame, kMaxDepth + 1> stack;
  std::size_t depth = 0;
  std::string out;
  out.reserve(flat.size() + 1024);
  std::size_t i = 0;
  while (i < flat.size()) {
    if (flat[i] != '<') {
      if (depth == 0 || stack[depth - 1].elements) return std::nullopt;  // mixed content
      std::size_t end = flat.find('<', i);
      if (end == std::string_view::npos) return std::nullopt;
      std::string_view text = flat.substr(i, end - i);
      if (text.find("&#") != std::string_view::npos || text.find('>') != std::string_view::npos)
        return std::nullopt;
      out.append(text);
      stack[depth - 1].text = true;
      i = end;
      continue;
    }
    if (i + 1 < flat.size() && flat[i + 1] == '/') {
      std::size_t end = flat.find('>', i);
      if (end == std::string_view::npos || depth == 0) return std::nullopt;
      const Frame& top = stack[depth - 1];
      if (flat.substr(i + 2, end - i - 2) != top.name) return std::nullopt;
      if (top.elements) indent(out, level + static_cast<int>(depth) - 1);
      out.append(flat.substr(i, end - i + 1));
      --depth;
      i = end + 1;
      if (depth == 0) return i == flat.size() ? std::optional<std::string>(std::move(out))
                                              : std::nullopt;
      continue;
    }
    // A start tag: name, then name="value" pairs whose values hold nothing escaped.
    std::size_t p = i + 1;
    while (p < flat.size() && flat[p] != ' ' && flat[p] != '>') ++p;
    std::string_view name = flat.substr(i + 1, p - i - 1);
    if (name.empty() || holds_any(name, kNameBad)) return std::nullopt;
    while (p < flat.size() && flat[p] == ' ') {
      std::size_t eq = flat.find("=\"", p);
      if (eq == std::string_view::npos) return std::nullopt;
      std::string_view attr = flat.substr(p + 1, eq - p - 1);
      std::size_t close = flat.find('"', eq + 2);
      if (close == std::string_view::npos) return std::nullopt;
      std::string_view value = flat.substr(eq + 2, close - eq - 2);
      if (attr.empty() || holds_any(attr, kAttrBad) || holds_any(value, kValueBad))
        return std::nullopt;
      p = close + 1;
    }
    if (p >= flat.size() || flat[p] != '>') return std::nullopt;
    if (depth > 0) {
      if (stack[depth - 1].text) return std::nullopt;  // mixed content
      stack[depth - 1].elements = true;
      if (level + static_cast<int>(depth) >= 30) return std::nullopt;
      indent(out, level + static_cast<int>(depth));
    }
    out.append(flat.substr(i, p - i + 1));
    stack[depth++] = Frame{name};
    i = p + 1;
  }
  return std::nullopt;
}

std::optional<SignedDte> sign_fast(const json& normalized, const Caf& caf, const Certificate& cert,
                                   const std::string& timestamp, const std::string& doc_id) {
  try {
    const int type = doc_type_of(normalized);
    if (!is_supported_type(type)) return std::nullopt;
    const long long folio = folio_of(normalized);
    const std::string id =
        doc_id.empty() ? "T" + std::to_string(type) + "F" + std::to_string(folio) : doc_id;
    if (!plain_token(id) || id.find_first_of(":+") != std::string::npos ||
        !plain_token(timestamp))
      return std::nullopt;

    // The canonical Documento, which the signature covers; the output is the same text past
    // its start tag, serialised. Written in a buffer each pool thread keeps (a large one is let
    // go after use).
    thread_local std::string c14n;
    struct Release {
      ~Release() {
        if (c14n.capacity() > (std::size_t{1} << 20)) std::string().swap(c14n);
      }
    } release;
    const std::string_view root = root_name(type);
    c14n.clear();
    c14n += '<';
    c14n += root;
    c14n += " xmlns=\"";
    c14n += kSiiNs;
    c14n += "\" ID=\"";
    c14n += id;
    c14n += "\">";
    const std::size_t content = c14n.size();
    TedTexts ted_texts;
    if (!append_document_text(normalized, c14n, ted_texts)) return std::nullopt;
    TedData ted_data = ted_data_from_texts(ted_texts, timestamp);
    c14n += "\n    ";
    // The TED's formatted text (formatted_c14n(*ted, 2)) goes on `c14n` too.
    std::optional<std::string> ted = stamp_ted_direct(ted_data, caf, &c14n);
    if (!ted) return std::nullopt;
    c14n += "\n    <TmstFirma>";
    c14n += timestamp;
    c14n += "</TmstFirma>\n  </";
    c14n += root;
    c14n += '>';
    std::optional<std::string> signature = signature_text(c14n, id, cert);
    if (!signature) return std::nullopt;

    SignedDte out;
    out.xml.reserve(c14n.size() + signature->size() + 128);
    out.xml += "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<DTE xmlns=\"";
    out.xml += kSiiNs;
    out.xml += "\" version=\"1.0\">\n  <";
    out.xml += root;
    out.xml += " ID=\"";
    out.xml += id;
    out.xml += "\">";
    if (!append_serialized(out.xml, std::string_view(c14n).substr(content))) return std::nullopt;
    out.xml += '\n';
    out.xml += *signature;
    out.xml += "</DTE>\n";
    out.id = id;
    out.doc_type = type;
    out.folio = folio;
    out.total = rounded_amount(ted_data.mnt);  // exports: rounded
    out.issuer_rut = ted_data.re;
    out.receiver_rut = ted_data.rr;
    out.issue_date = ted_data.fe;
    out.ted_xml = std::move(*ted);
    return out;
  } catch (const DteError&) {
    return std::nullopt;  // the DOM path reports it
  }
}

}  // namespace dte::detail
