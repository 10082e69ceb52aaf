// The signing fast path: a signed DTE written as text, byte for byte what the DOM path
// (detail::sign_via_dom in pipeline.cpp) makes. That path builds a libxml2 tree, serialises it
// formatted in ISO-8859-1, parses it back and has xmlsec's template signed; here the Documento is
// written once in its canonical form (the text the digest covers) and the output bytes are that
// same text with libxml2's empty-element form, in Latin-1. Whatever this file does not model
// makes it decline, and the DOM path signs instead.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>

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

// Rewrites out[from..] from UTF-8 to ISO-8859-1 in place (the Latin-1 text is never longer);
// false for a character Latin-1 cannot hold (libxml2 would write a character reference: left
// to the DOM path).
bool latin1_in_place(std::string& out, std::size_t from) {
  char* w = out.data() + from;
  const char* p = w;
  const char* const end = out.data() + out.size();
  while (p < end) {
    const char* run = p;
    // The text is mostly tags and plain values: ASCII runs, moved whole.
    const std::size_t len = ascii_prefix(std::string_view(p, static_cast<std::size_t>(end - p)));
    p += len;
    if (w != run) std::memmove(w, run, len);
    w += len;
    if (p == end) break;
    const unsigned char c = static_cast<unsigned char>(*p);
    if ((c != 0xC2 && c != 0xC3) || p + 1 == end ||
        (static_cast<unsigned char>(p[1]) & 0xC0) != 0x80)
      return false;
    *w++ = static_cast<char>(((c & 0x03U) << 6) | (static_cast<unsigned char>(p[1]) & 0x3FU));
    p += 2;
  }
  out.resize(static_cast<std::size_t>(w - out.data()));
  return true;
}

// The output bytes of a canonical text: libxml2's serialiser writes an element without children
// as <x/> where C14N writes <x></x>, and writes Latin-1. Text and the attribute values let
// through here hold no raw '<' or '>', so a start tag's '>' is the next '>' after its '<', and a
// start tag directly followed by "</" is an empty element. The tags are collapsed on the UTF-8
// text (markup is ASCII), then the whole of it is made Latin-1 in one pass.
bool append_serialized(std::string& out, std::string_view s) {
  const std::size_t from = out.size();
  const char* p = s.data();
  const char* const end = p + s.size();
  while (p < end) {
    const char* lt = static_cast<const char*>(std::memchr(p, '<', static_cast<std::size_t>(end - p)));
    const char* gt =
        lt ? static_cast<const char*>(std::memchr(lt, '>', static_cast<std::size_t>(end - lt)))
           : nullptr;
    if (!gt) {
      out.append(p, end);
      break;
    }
    if (lt[1] != '/' && gt + 2 < end && gt[1] == '<' && gt[2] == '/') {
      out.append(p, gt);
      out += "/>";
      const char* close =
          static_cast<const char*>(std::memchr(gt + 1, '>', static_cast<std::size_t>(end - gt - 1)));
      p = close ? close + 1 : end;
    } else {
      out.append(p, gt + 1);
      p = gt + 1;
    }
  }
  return latin1_in_place(out, from);
}

void indent(std::string& out, int level) {
  out.push_back('\n');
  out.append(static_cast<std::size_t>(2 * level), ' ');
}

}  // namespace

std::optional<std::string> ted_c14n_text(std::string_view flat) {
  // The TED is the Documento's child (level 2); libxml2 indents up to 30 levels.
  constexpr int kTedLevel = 2;
  struct Frame {
    std::string_view name;
    bool elements = false;
    bool text = false;
  };
  std::vector<Frame> stack;
  std::string out;
  out.reserve(flat.size() + 1024);
  std::size_t i = 0;
  while (i < flat.size()) {
    if (flat[i] != '<') {
      if (stack.empty() || stack.back().elements) return std::nullopt;  // mixed content
      std::size_t end = flat.find('<', i);
      if (end == std::string_view::npos) return std::nullopt;
      std::string_view text = flat.substr(i, end - i);
      if (text.find("&#") != std::string_view::npos || text.find('>') != std::string_view::npos)
        return std::nullopt;
      out.append(text);
      stack.back().text = true;
      i = end;
      continue;
    }
    if (i + 1 < flat.size() && flat[i + 1] == '/') {
      std::size_t end = flat.find('>', i);
      if (end == std::string_view::npos || stack.empty()) return std::nullopt;
      if (flat.substr(i + 2, end - i - 2) != stack.back().name) return std::nullopt;
      if (stack.back().elements) indent(out, kTedLevel + static_cast<int>(stack.size()) - 1);
      out.append(flat.substr(i, end - i + 1));
      stack.pop_back();
      i = end + 1;
      if (stack.empty()) return i == flat.size() ? std::optional<std::string>(std::move(out))
                                                 : std::nullopt;
      continue;
    }
    // A start tag: name, then name="value" pairs whose values hold nothing escaped.
    std::size_t p = i + 1;
    while (p < flat.size() && flat[p] != ' ' && flat[p] != '>') ++p;
    std::string_view name = flat.substr(i + 1, p - i - 1);
    if (name.empty() || name.find_first_of(":&\"/") != std::string_view::npos) return std::nullopt;
    while (p < flat.size() && flat[p] == ' ') {
      std::size_t eq = flat.find("=\"", p);
      if (eq == std::string_view::npos) return std::nullopt;
      std::string_view attr = flat.substr(p + 1, eq - p - 1);
      std::size_t close = flat.find('"', eq + 2);
      if (close == std::string_view::npos) return std::nullopt;
      std::string_view value = flat.substr(eq + 2, close - eq - 2);
      if (attr.empty() || attr.find_first_of(":<>& \"") != std::string_view::npos ||
          value.find_first_of("<>&") != std::string_view::npos)
        return std::nullopt;
      p = close + 1;
    }
    if (p >= flat.size() || flat[p] != '>') return std::nullopt;
    if (!stack.empty()) {
      if (stack.back().text) return std::nullopt;  // mixed content
      stack.back().elements = true;
      if (kTedLevel + static_cast<int>(stack.size()) >= 30) return std::nullopt;
      indent(out, kTedLevel + static_cast<int>(stack.size()));
    }
    out.append(flat.substr(i, p - i + 1));
    stack.push_back(Frame{name});
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

    std::optional<DocumentText> body = document_text(normalized);
    if (!body) return std::nullopt;
    TedData ted_data = ted_data_from_texts(body->ted_texts, timestamp);
    std::optional<std::string> ted = stamp_ted_direct(ted_data, caf);
    if (!ted) return std::nullopt;
    std::optional<std::string> ted_text = ted_c14n_text(*ted);
    if (!ted_text) return std::nullopt;

    const std::string root = root_name(type);
    std::string& rest = body->c14n;  // the Documento after its start tag
    rest += "\n    ";
    rest += *ted_text;
    rest += "\n    <TmstFirma>";
    rest += timestamp;
    rest += "</TmstFirma>\n  </";
    rest += root;
    rest.push_back('>');

    std::string c14n;
    c14n.reserve(rest.size() + 128);
    c14n += "<" + root + " xmlns=\"" + kSiiNs + "\" ID=\"" + id + "\">";
    c14n += rest;
    std::optional<std::string> signature = signature_text(c14n, id, cert);
    if (!signature) return std::nullopt;

    SignedDte out;
    out.xml.reserve(c14n.size() + signature->size() + 128);
    out.xml += "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<DTE xmlns=\"";
    out.xml += kSiiNs;
    out.xml += "\" version=\"1.0\">\n  <" + root + " ID=\"" + id + "\">";
    if (!append_serialized(out.xml, rest)) return std::nullopt;
    out.xml += "\n";
    out.xml += *signature;
    out.xml += "</DTE>\n";
    out.id = id;
    out.doc_type = type;
    out.folio = folio;
    out.total = std::llround(std::strtod(ted_data.mnt.c_str(), nullptr));  // exports: rounded
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
