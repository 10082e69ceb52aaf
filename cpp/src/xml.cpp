#include "dte/xml.hpp"

#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlsave.h>
#include <openssl/evp.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

#include "dte/errors.hpp"

namespace dte {
namespace {

void silent_generic(void*, const char*, ...) {}
void silent_structured(void*, xmlErrorPtr) {}

void silence_libxml_for_this_thread() {
  // libxml2 keeps these per thread; without them errors would go to stderr.
  xmlSetGenericErrorFunc(nullptr, silent_generic);
  xmlSetStructuredErrorFunc(nullptr, silent_structured);
}

int depth_of(const xmlNode* node, int limit) {
  int deepest = 0;
  // Iterative walk: a hostile document must not overflow our stack either.
  const xmlNode* cur = node;
  int depth = 1;
  while (cur) {
    if (cur->type == XML_ELEMENT_NODE && depth > deepest) {
      deepest = depth;
      if (deepest > limit) return deepest;
    }
    if (cur->children) {
      cur = cur->children;
      ++depth;
      continue;
    }
    while (cur && !cur->next) {
      cur = cur->parent;
      --depth;
      if (cur == node->parent || depth <= 0) return deepest;
    }
    if (cur) cur = cur->next;
  }
  return deepest;
}

bool local_is(const xmlNode* n, std::string_view name) {
  return n && n->type == XML_ELEMENT_NODE &&
         std::string_view(reinterpret_cast<const char*>(n->name)) == name;
}

}  // namespace

void init_xml() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
  silence_libxml_for_this_thread();
}

XmlDocPtr parse_xml(std::string_view bytes, const ParseLimits& limits) {
  init_xml();
  if (bytes.size() > limits.max_bytes) {
    throw XmlSyntaxError("xml.too_large", "XML input of " + std::to_string(bytes.size()) +
                                              " bytes exceeds the limit of " +
                                              std::to_string(limits.max_bytes) + " bytes");
  }
  if (bytes.empty()) throw XmlSyntaxError("xml.empty", "XML input is empty");
  std::unique_ptr<xmlParserCtxt, CDeleter<xmlFreeParserCtxt>> ctxt(xmlNewParserCtxt());
  if (!ctxt) throw XmlSyntaxError("xml.internal", "cannot create an XML parser");
  // No XML_PARSE_NOENT (no entity substitution), no DTDLOAD/DTDATTR, no network.
  // XML_PARSE_COMPACT keeps short text inside its node (one allocation less per text node).
  const int options = XML_PARSE_NONET | XML_PARSE_BIG_LINES | XML_PARSE_NOWARNING |
                      XML_PARSE_NOERROR | XML_PARSE_COMPACT;
  XmlDocPtr doc(xmlCtxtReadMemory(ctxt.get(), bytes.data(), static_cast<int>(bytes.size()),
                                  nullptr, nullptr, options));
  if (!doc) {
    const xmlError* err = xmlCtxtGetLastError(ctxt.get());
    std::string msg = "malformed XML";
    if (err && err->message) {
      msg = err->message;
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
      msg = "malformed XML at line " + std::to_string(err->line) + ": " + msg;
    }
    throw XmlSyntaxError("xml.malformed", msg);
  }
  if (doc->intSubset || doc->extSubset) {
    throw XmlSyntaxError("xml.dtd_forbidden",
                         "XML with a DOCTYPE/DTD is refused (external or internal entities are "
                         "never allowed in SII documents)");
  }
  xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!root) throw XmlSyntaxError("xml.empty", "XML document has no root element");
  if (depth_of(root, limits.max_depth) > limits.max_depth) {
    throw XmlSyntaxError("xml.too_deep", "XML nesting deeper than " +
                                             std::to_string(limits.max_depth) + " levels");
  }
  return doc;
}

void register_ids(xmlDoc* doc) {
  xmlNode* root = xmlDocGetRootElement(doc);
  if (!root) return;
  xmlNode* cur = root;
  while (cur) {
    if (cur->type == XML_ELEMENT_NODE) {
      for (xmlAttr* a = cur->properties; a; a = a->next) {
        if (a->ns == nullptr && xmlStrEqual(a->name, BAD_CAST "ID")) {
          XmlCharPtr value(xmlNodeListGetString(doc, a->children, 1));
          if (!value) continue;
          xmlAttr* existing = xmlGetID(doc, value.get());
          if (existing && existing != a) {
            throw XmlSyntaxError("xml.duplicate_id",
                                 std::string("ID '") + reinterpret_cast<char*>(value.get()) +
                                     "' appears more than once (possible signature wrapping)");
          }
          if (!existing) xmlAddID(nullptr, doc, value.get(), a);
        }
      }
    }
    if (cur->children && cur->type == XML_ELEMENT_NODE) {
      cur = cur->children;
      continue;
    }
    while (cur && !cur->next) cur = cur->parent;
    if (cur) cur = cur->next;
  }
}

std::string serialize(xmlDoc* doc, const char* encoding, bool format) {
  xmlChar* mem = nullptr;
  int size = 0;
  xmlDocDumpFormatMemoryEnc(doc, &mem, &size, encoding, format ? 1 : 0);
  XmlCharPtr holder(mem);
  if (!mem) throw DteError("xml.serialize", "cannot serialise XML document");
  return std::string(reinterpret_cast<char*>(mem), static_cast<std::size_t>(size));
}

std::string serialize_node(xmlNode* node) {
  XmlBufferPtr buf(xmlBufferCreate());
  xmlNodeDump(buf.get(), node->doc, node, 0, 0);
  return std::string(reinterpret_cast<const char*>(xmlBufferContent(buf.get())),
                     static_cast<std::size_t>(xmlBufferLength(buf.get())));
}

std::string to_latin1(std::string_view utf8, bool strict) {
  std::string out;
  out.reserve(utf8.size());
  for (std::size_t i = 0; i < utf8.size();) {
    // ASCII runs (nearly all of a DTE) are copied whole.
    const std::size_t run = i + ascii_prefix(utf8.substr(i));
    if (run > i) {
      out.append(utf8.data() + i, run - i);
      i = run;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(utf8[i]);
    unsigned cp = 0;
    std::size_t len = 1;
    if (c < 0x80) {
      cp = c;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < utf8.size()) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(utf8[i + 1]) & 0x3Fu);
      len = 2;
    } else if ((c & 0xF0) == 0xE0 && i + 2 < utf8.size()) {
      cp = 0x10000;  // outside Latin-1 by construction
      len = 3;
    } else if ((c & 0xF8) == 0xF0 && i + 3 < utf8.size()) {
      cp = 0x10000;
      len = 4;
    } else {
      cp = 0x10000;
    }
    if (cp <= 0xFF) {
      out.push_back(static_cast<char>(cp));
    } else if (strict) {
      throw DocumentError("text.not_latin1", "text '" + std::string(utf8) +
                                                 "' holds a character ISO-8859-1 cannot encode");
    } else {
      out.push_back('?');
    }
    i += len;
  }
  return out;
}

std::string declared_encoding(std::string_view bytes) {
  if (bytes.substr(0, 5) != "<?xml") return {};
  const auto end = bytes.find("?>");
  if (end == std::string_view::npos) return {};
  const auto decl = bytes.substr(0, end);
  auto pos = decl.find("encoding");
  if (pos == std::string_view::npos) return "utf-8";
  pos = decl.find_first_of("\"'", pos);
  if (pos == std::string_view::npos) return {};
  const auto close = decl.find(decl[pos], pos + 1);
  if (close == std::string_view::npos) return {};
  std::string name(decl.substr(pos + 1, close - pos - 1));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::size_t ascii_prefix(std::string_view s) noexcept {
  std::size_t i = 0;
  for (std::uint64_t word; s.size() - i >= 8; i += 8) {
    std::memcpy(&word, s.data() + i, sizeof word);
    if (word & 0x8080808080808080ULL) break;
  }
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;
  return i;
}

std::string from_latin1(std::string_view latin1) {
  std::string out;
  out.reserve(latin1.size() + latin1.size() / 8);
  while (!latin1.empty()) {
    const std::size_t run = ascii_prefix(latin1);
    out.append(latin1.data(), run);
    if (run == latin1.size()) break;
    const auto c = static_cast<unsigned char>(latin1[run]);
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    latin1.remove_prefix(run + 1);
  }
  return out;
}

std::string latin1_safe(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size());
  for (std::size_t i = 0; i < utf8.size();) {
    unsigned char c = static_cast<unsigned char>(utf8[i]);
    std::size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    if (i + len > utf8.size()) break;
    bool keep = len == 1 ? (c >= 0x20 || c == '\n' || c == '\t')
                         : (len == 2 && (((c & 0x1Fu) << 6) |
                                         (static_cast<unsigned char>(utf8[i + 1]) & 0x3Fu)) >=
                                            0xA0);
    if (keep) out.append(utf8.substr(i, len));
    i += len;
  }
  return out;
}

std::string truncate_chars(std::string_view utf8, std::size_t max_chars) {
  std::size_t chars = 0;
  std::size_t i = 0;
  while (i < utf8.size()) {
    if (chars == max_chars) return std::string(utf8.substr(0, i));
    unsigned char c = static_cast<unsigned char>(utf8[i]);
    std::size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    i += len;
    ++chars;
  }
  return std::string(utf8);
}

std::string flatten_xml(std::string_view xml) {
  std::string out;
  out.reserve(xml.size());
  std::size_t i = 0;
  while (i < xml.size()) {
    // Everything up to the next '>' is kept as is, in one append.
    std::size_t gt = xml.find('>', i);
    if (gt == std::string_view::npos) {
      out.append(xml.data() + i, xml.size() - i);
      break;
    }
    out.append(xml.data() + i, gt - i + 1);
    // Whitespace between a '>' and the next '<' goes; any other text after a '>' stays.
    std::size_t j = gt + 1;
    while (j < xml.size() &&
           (xml[j] == ' ' || xml[j] == '\n' || xml[j] == '\r' || xml[j] == '\t'))
      ++j;
    i = j < xml.size() && xml[j] == '<' ? j : gt + 1;
  }
  return out;
}

namespace {

// Bytes C14N escapes in text (bit 1) and in attribute values (bit 2).
constexpr auto kC14nEscapes = [] {
  std::array<unsigned char, 256> t{};
  for (unsigned char c : {'&', '<', '>', '\r'}) t[c] |= 1;
  for (unsigned char c : {'&', '<', '"', '\t', '\n', '\r'}) t[c] |= 2;
  return t;
}();

template <unsigned char kBit>
void append_c14n(std::string& out, std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (i < s.size() && !(kC14nEscapes[static_cast<unsigned char>(s[i])] & kBit)) ++i;
    out.append(s.data() + run, i - run);
    if (i == s.size()) return;
    switch (s[i]) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\t': out += "&#x9;"; break;
      case '\n': out += "&#xA;"; break;
      default: out += "&#xD;"; break;
    }
    ++i;
  }
}

}  // namespace

void append_c14n_text(std::string& out, std::string_view text) { append_c14n<1>(out, text); }
void append_c14n_attr(std::string& out, std::string_view value) { append_c14n<2>(out, value); }

std::string escape_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string node_text(const xmlNode* node) {
  if (!node) return {};
  XmlCharPtr content(xmlNodeGetContent(node));
  return content ? std::string(reinterpret_cast<char*>(content.get())) : std::string();
}

xmlNode* child(const xmlNode* parent, std::string_view local_name) {
  if (!parent) return nullptr;
  for (xmlNode* c = parent->children; c; c = c->next)
    if (local_is(c, local_name)) return c;
  return nullptr;
}

std::vector<xmlNode*> children(const xmlNode* parent, std::string_view local_name) {
  std::vector<xmlNode*> out;
  if (!parent) return out;
  for (xmlNode* c = parent->children; c; c = c->next)
    if (local_is(c, local_name)) out.push_back(c);
  return out;
}

xmlNode* find_path(const xmlNode* start, std::string_view path) {
  const xmlNode* cur = start;
  while (cur && !path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    cur = child(cur, part);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
  }
  return const_cast<xmlNode*>(cur);
}

std::string text_at(const xmlNode* start, std::string_view path) {
  return node_text(find_path(start, path));
}

std::vector<xmlNode*> descendants(xmlNode* start, std::string_view local_name) {
  std::vector<xmlNode*> out;
  if (!start) return out;
  xmlNode* cur = start;
  while (cur) {
    if (local_is(cur, local_name)) out.push_back(cur);
    if (cur->children && cur->type == XML_ELEMENT_NODE) {
      cur = cur->children;
      continue;
    }
    while (cur && cur != start && !cur->next) cur = cur->parent;
    if (!cur || cur == start) break;
    cur = cur->next;
  }
  return out;
}

std::string base64_encode(std::string_view bytes, std::size_t wrap) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  if (wrap == 0) return out;
  std::string wrapped;
  for (std::size_t i = 0; i < out.size(); i += wrap) {
    if (i) wrapped.push_back('\n');
    wrapped.append(out, i, wrap);
  }
  return wrapped;
}

std::string base64_decode(std::string_view text) {
  std::string clean;
  clean.reserve(text.size());
  for (char c : text)
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') clean.push_back(c);
  if (clean.size() % 4 != 0) throw DteError("base64.invalid", "invalid base64 (length)");
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) throw DteError("base64.invalid", "invalid base64 text");
  std::size_t pad = 0;
  if (!clean.empty() && clean.back() == '=') ++pad;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

namespace {
std::tm chile_now() {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  // localtime_r reads TZ; swap it under a lock so the rest of the process is unaffected.
  const char* old = std::getenv("TZ");
  std::string saved = old ? old : "";
  setenv("TZ", "America/Santiago", 1);
  tzset();
  localtime_r(&t, &tm);
  if (old) setenv("TZ", saved.c_str(), 1); else unsetenv("TZ");
  tzset();
  return tm;
}
}  // namespace

std::string now_timestamp() {
  std::tm tm = chile_now();
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

std::string today_date() {
  std::tm tm = chile_now();
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

}  // namespace dte
