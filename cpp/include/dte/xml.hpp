// Secure XML parsing and the small text helpers every module shares.
//
// Every parse in the core goes through parse_xml(): no DTD loading, no entity substitution,
// no network, bounded size and depth. A document that declares a DTD or entities is refused
// outright (SII documents never have one), which closes XXE and entity expansion at once.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "dte/handles.hpp"

namespace dte {

inline constexpr const char* kSiiNs = "http://www.sii.cl/SiiDte";
inline constexpr const char* kDsigNs = "http://www.w3.org/2000/09/xmldsig#";

struct ParseLimits {
  std::size_t max_bytes = 64 * 1024 * 1024;  // an EnvioDTE of 2000 DTEs is ~20 MB
  int max_depth = 64;                        // SII documents nest < 15 levels
};

// Initialises libxml2 (and its thread-safety) once; idempotent, thread-safe. Called by parse_xml.
void init_xml();

// Parses bytes as XML under the limits above, keeping whitespace exactly (signed content must
// stay byte-for-byte). Throws XmlSyntaxError with line and reason.
XmlDocPtr parse_xml(std::string_view bytes, const ParseLimits& limits = {});

// Registers every attribute named "ID" as an XML ID (there is no DTD to say so), so that
// URI="#X" references resolve. Throws XmlSyntaxError on a duplicated ID (signature wrapping).
void register_ids(xmlDoc* doc);

// Serialises a whole document. `encoding` "ISO-8859-1" gives SII's declaration and bytes.
std::string serialize(xmlDoc* doc, const char* encoding = "ISO-8859-1", bool format = false);

// Serialises one element (and its subtree) as UTF-8 text without an XML declaration.
std::string serialize_node(xmlNode* node);

// UTF-8 <-> ISO-8859-1. to_latin1 replaces characters Latin-1 cannot hold: with `?` unless
// `strict`, in which case it throws DocumentError naming the character.
std::string to_latin1(std::string_view utf8, bool strict = false);
std::string from_latin1(std::string_view latin1);

// The encoding an XML declaration at the very start of `bytes` names, lower case ("utf-8" when
// it names none); "" without a declaration.
std::string declared_encoding(std::string_view bytes);

// How many bytes at the start of `s` are ASCII (below 0x80), read eight at a time: the runs
// that conversions between UTF-8 and ISO-8859-1 copy as they are.
std::size_t ascii_prefix(std::string_view s) noexcept;

// Keeps only characters that ISO-8859-1 can represent (SII: "strip non-Latin-1"); UTF-8 in/out.
std::string latin1_safe(std::string_view utf8);

// Truncates UTF-8 text to at most `max_chars` characters (not bytes).
std::string truncate_chars(std::string_view utf8, std::size_t max_chars);

// Removes whitespace-only text between tags ("aplanado" of TED DD and CAF DA).
std::string flatten_xml(std::string_view xml);

// Escapes & < > " ' for element text (SII's table).
std::string escape_text(std::string_view text);

// Appends text / an attribute value as Canonical XML writes it (C14N 1.0: text escapes & < > and
// CR; attribute values & < " TAB LF CR), plain runs copied at once.
void append_c14n_text(std::string& out, std::string_view text);
void append_c14n_attr(std::string& out, std::string_view value);

// Text content of an element (UTF-8), "" when null.
std::string node_text(const xmlNode* node);

// First child element with the given local name (any namespace), or nullptr.
xmlNode* child(const xmlNode* parent, std::string_view local_name);
// All child elements with the given local name.
std::vector<xmlNode*> children(const xmlNode* parent, std::string_view local_name);
// Descendant element by a path of local names ("Encabezado/IdDoc/Folio"), or nullptr.
xmlNode* find_path(const xmlNode* start, std::string_view path);
// Text at a path, "" when absent.
std::string text_at(const xmlNode* start, std::string_view path);
// Every descendant-or-self element with the given local name, in document order.
std::vector<xmlNode*> descendants(xmlNode* start, std::string_view local_name);

// Base64 (standard alphabet). decode ignores whitespace; throws DteError("base64.invalid").
std::string base64_encode(std::string_view bytes, std::size_t wrap = 0);
std::string base64_decode(std::string_view text);

// Local Chile time "YYYY-MM-DDTHH:MM:SS" (America/Santiago via TZ database; falls back to UTC-3).
std::string now_timestamp();
// Today's date in Chile, "YYYY-MM-DD".
std::string today_date();

}  // namespace dte
