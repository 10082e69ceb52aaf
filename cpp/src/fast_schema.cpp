#include "fast_schema.hpp"

#include <libxml/tree.h>
#include <libxml/xmlregexp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>

#include "dte/handles.hpp"

namespace dte::detail {

namespace {

constexpr std::string_view kXs = "http://www.w3.org/2001/XMLSchema";
constexpr std::string_view kXsi = "http://www.w3.org/2001/XMLSchema-instance";

// A construct outside the subset: the whole XSD is left to libxml2.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string_view sv(const xmlChar* s) {
  return s ? std::string_view(reinterpret_cast<const char*>(s)) : std::string_view();
}

// Built-in primitive a simple type derives from. kNone: a built-in we do not model (gYear,
// time, ...): its values are never accepted here.
enum class Prim : std::uint8_t { kString, kDecimal, kDate, kDateTime, kBase64, kAnyUri, kId, kAny, kNone };

// Exact decimal value: digits without leading (integer) or trailing (fraction) zeros.
struct Decimal {
  bool neg = false;
  std::string intd, frac;
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// -?[0-9]+(\.[0-9]+)? only, at most 18 digits, not "-0": the forms SII documents use. XSD also
// allows '+', "5." and ".5", whitespace around and any length, and libxml2 has its own limits
// (24 digits, no negative zero for unsigned types); all that is left to libxml2. `total` and
// `frac` count every digit written, an upper bound of the significant digits libxml2 counts.
bool parse_decimal(std::string_view s, bool integer, Decimal* out, int* total, int* frac) {
  std::size_t i = 0;
  const bool neg = !s.empty() && s[0] == '-';
  if (neg) ++i;
  const std::size_t int_start = i;
  while (i < s.size() && is_digit(s[i])) ++i;
  const std::size_t int_end = i;
  if (int_end == int_start) return false;
  std::size_t frac_start = i, frac_end = i;
  if (i < s.size()) {
    if (integer || s[i] != '.') return false;
    frac_start = ++i;
    while (i < s.size() && is_digit(s[i])) ++i;
    frac_end = i;
    if (frac_end == frac_start || i != s.size()) return false;
  }
  const std::size_t digits = (int_end - int_start) + (frac_end - frac_start);
  if (digits > 18) return false;
  if (total) *total = static_cast<int>(digits);
  if (frac) *frac = static_cast<int>(frac_end - frac_start);
  if (neg && std::all_of(s.begin() + 1, s.end(), [](char c) { return c == '0' || c == '.'; }))
    return false;
  if (out) {
    std::size_t a = int_start;
    while (a < int_end && s[a] == '0') ++a;
    std::size_t b = frac_end;
    while (b > frac_start && s[b - 1] == '0') --b;
    out->intd.assign(s.substr(a, int_end - a));
    out->frac.assign(s.substr(frac_start, b - frac_start));
    out->neg = neg && !(out->intd.empty() && out->frac.empty());
  }
  return true;
}

int compare(const Decimal& a, const Decimal& b) {
  if (a.neg != b.neg) return a.neg ? -1 : 1;
  int mag = 0;
  if (a.intd.size() != b.intd.size()) {
    mag = a.intd.size() < b.intd.size() ? -1 : 1;
  } else if (int c = a.intd.compare(b.intd); c != 0) {
    mag = c < 0 ? -1 : 1;
  } else if (int f = a.frac.compare(b.frac); f != 0) {
    mag = f < 0 ? -1 : 1;  // trailing zeros are stripped, so string order is numeric order
  }
  return a.neg ? -mag : mag;
}

int two(std::string_view s, std::size_t at) { return (s[at] - '0') * 10 + (s[at + 1] - '0'); }

bool all_digits(std::string_view s, std::initializer_list<std::size_t> at) {
  for (std::size_t i : at)
    if (!is_digit(s[i])) return false;
  return true;
}

// YYYY-MM-DD, year 0001-9999, a real day of the proleptic Gregorian calendar; no timezone.
bool valid_date(std::string_view s) {
  if (s.size() < 10 || s[4] != '-' || s[7] != '-' || !all_digits(s, {0, 1, 2, 3, 5, 6, 8, 9}))
    return false;
  const int year = two(s, 0) * 100 + two(s, 2);
  const int month = two(s, 5);
  const int day = two(s, 8);
  if (year == 0 || month < 1 || month > 12 || day < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return day <= kDays[month - 1] + (month == 2 && leap ? 1 : 0);
}

bool valid_date_only(std::string_view s) { return s.size() == 10 && valid_date(s); }

// YYYY-MM-DDThh:mm:ss, hour 00-23; no fraction, no timezone.
bool valid_datetime(std::string_view s) {
  if (s.size() != 19 || !valid_date(s) || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
      !all_digits(s, {11, 12, 14, 15, 17, 18}))
    return false;
  return two(s, 11) < 24 && two(s, 14) < 60 && two(s, 17) < 60;
}

// Character classes for base64Binary and whitespace, one table lookup per character.
enum : std::uint8_t { kBad = 0, kB64 = 1, kSpace = 2, kPad = 4 };  // bits: eight ANDed at once
constexpr std::array<std::uint8_t, 256> kClass = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = kB64;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = kB64;
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = kB64;
  t['+'] = t['/'] = kB64;
  t[' '] = t['\n'] = t['\t'] = t['\r'] = kSpace;
  t['='] = kPad;
  return t;
}();
std::uint8_t char_class(char c) { return kClass[static_cast<unsigned char>(c)]; }

bool all_space(std::string_view s) {
  for (char c : s)
    if (char_class(c) != kSpace) return false;
  return true;
}

// Base64 characters with whitespace between them, then at most two '=' at the very end, a
// multiple of four in all, and no stray bits before the padding (the character before "=" encodes
// its last two bits as zero, before "==" its last four: XSD's canonical rule, which libxml2
// applies); `octets` receives the decoded length.
bool valid_base64(std::string_view s, std::size_t* octets) {
  std::size_t n = 0, pad = 0, i = 0;
  char last = 0;  // the last base64 character
  // Certificates and signatures are long runs of base64 characters: eight at a time, then one
  // (a line break, the padding) at a time.
  const auto* u = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    while (i + 8 <= s.size() && (kClass[u[i]] & kClass[u[i + 1]] & kClass[u[i + 2]] &
                                 kClass[u[i + 3]] & kClass[u[i + 4]] & kClass[u[i + 5]] &
                                 kClass[u[i + 6]] & kClass[u[i + 7]]) == kB64) {
      last = s[i + 7];
      i += 8;
      n += 8;
    }
    if (i == s.size()) break;
    const std::uint8_t k = kClass[u[i]];
    if (k == kB64) {
      last = s[i];
      ++n;
    } else if (k != kSpace) {
      break;
    }
    ++i;
  }
  for (; i < s.size(); ++i) {  // the padding, with whitespace around
    const std::uint8_t k = char_class(s[i]);
    if (k == kPad) {
      if (++pad > 2) return false;
    } else if (k != kSpace) {
      return false;
    }
  }
  if ((n + pad) % 4 != 0) return false;
  if (pad == 1 && std::string_view("AEIMQUYcgkosw048").find(last) == std::string_view::npos)
    return false;
  if (pad == 2 && std::string_view("AQgw").find(last) == std::string_view::npos) return false;
  *octets = (n + pad) / 4 * 3 - pad;
  return true;
}

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' ||
         c == '-' || c == '.';
}

// ASCII NCNames only.
bool valid_ncname(std::string_view s) {
  if (s.empty() || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
    return false;
  return std::all_of(s.begin(), s.end(), is_name_char);
}

// "", "#id" or scheme://plain-path: what XMLDSig references and SII's URIs look like.
bool valid_uri(std::string_view s) {
  if (s.empty()) return true;
  if (s[0] == '#') return std::all_of(s.begin() + 1, s.end(), is_name_char);
  const std::size_t colon = s.find("://");
  if (colon == std::string_view::npos || colon == 0 || colon > 10) return false;
  for (std::size_t i = 0; i < colon; ++i)
    if (!(s[i] >= 'a' && s[i] <= 'z')) return false;
  return s.size() > colon + 3 &&
         std::all_of(s.begin() + static_cast<long>(colon) + 3, s.end(),
                     [](char c) { return is_name_char(c) || c == '/' || c == '#'; });
}

std::size_t utf8_chars(std::string_view s) {
  std::size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

}  // namespace

// ------------------------------------------------------------------------------ the tables

struct Step {  // the facets of one restriction step; all must hold
  int length = -1, min_length = -1, max_length = -1, total_digits = -1, fraction_digits = -1;
  bool has_min = false, has_max = false;
  Decimal min, max;             // decimal types
  std::string min_s, max_s;     // date and dateTime: fixed-width forms compare as strings
  std::vector<std::string> enums;
  std::vector<xmlRegexp*> patterns;  // one of them must match
};

struct SimpleType {
  Prim prim = Prim::kNone;
  bool integer = false;
  bool has_length = false;  // some step has a length facet
  std::vector<Step> steps;  // the built-in's own bounds first, then each restriction
};

struct AttrDecl {
  std::string uri, local;
  int type = -1;
  bool required = false;
  std::optional<std::string> fixed;
};

struct Particle {
  enum Kind : std::uint8_t { kElem, kSeq, kChoice } kind = kElem;
  int min = 1, max = 1;  // max -1: unbounded
  int name = -1;         // kElem
  std::vector<Particle> kids;
};

// The first eight bytes of a name, zero-padded: most names differ there, so a child is found by
// comparing two integers.
std::uint64_t name_head(std::string_view s) {
  std::uint64_t h = 0;
  std::memcpy(&h, s.data(), std::min<std::size_t>(s.size(), 8));
  return h;
}

struct Child {
  std::uint64_t head;
  std::size_t size;
  int name;
  int decl;  // -1: two declarations for one name (left to libxml2)
};

struct ComplexType {
  enum Content : std::uint8_t { kEmpty, kElements, kSimple } content = kEmpty;
  Particle particle;
  int simple = -1;  // kSimple
  std::vector<AttrDecl> attrs;
  std::vector<Child> children;
};

struct ElementDecl {
  int name = -1;
  bool complex = false;
  int type = -1;
  std::optional<std::string> fixed;
};

struct QName {
  std::string uri, local;
};

struct FastModel {
  std::vector<QName> names;
  std::vector<SimpleType> simples;
  std::vector<ComplexType> complexes;
  std::vector<ElementDecl> elements;
  std::vector<int> roots;  // global element declarations
  std::vector<xmlRegexp*> regexps;
  ~FastModel() {
    for (xmlRegexp* r : regexps) xmlRegFreeRegexp(r);
  }
};

// ---------------------------------------------------------------------------- the compiler

namespace {

bool is_xs(const xmlNode* n, std::string_view local) {
  return n->type == XML_ELEMENT_NODE && n->ns && sv(n->ns->href) == kXs && sv(n->name) == local;
}

std::string attr(const xmlNode* n, const char* name) {
  XmlCharPtr v(xmlGetNoNsProp(n, BAD_CAST name));
  return v ? std::string(reinterpret_cast<const char*>(v.get())) : std::string();
}
bool has_attr(const xmlNode* n, const char* name) { return xmlHasNsProp(n, BAD_CAST name, nullptr); }

std::optional<std::string> fixed_of(const xmlNode* n) {
  if (!has_attr(n, "fixed")) return std::nullopt;
  return attr(n, "fixed");
}

int int_attr(const xmlNode* n, const char* name) {
  const std::string v = attr(n, name);
  if (v.empty() || v.size() > 9 || !std::all_of(v.begin(), v.end(), is_digit))
    throw Unsupported(std::string("facet ") + name + " value '" + v + "'");
  return std::stoi(v);
}

// The element children of an XSD node, annotations skipped.
std::vector<xmlNode*> parts(const xmlNode* n) {
  std::vector<xmlNode*> out;
  for (xmlNode* c = n->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || is_xs(c, "annotation")) continue;
    if (!c->ns || sv(c->ns->href) != kXs) throw Unsupported("foreign element in an XSD");
    out.push_back(c);
  }
  return out;
}

class Compiler {
 public:
  Compiler(const std::map<std::string, XmlDocPtr>& files, FastModel& m) : files_(files), m_(m) {}

  void load(const std::string& file, const std::string* expected_tns) {
    if (docs_.count(file)) return;
    auto found = files_.find(file);
    if (found == files_.end()) throw Unsupported(file + " was not vetted");
    const xmlDoc* doc = found->second.get();
    xmlNode* root = xmlDocGetRootElement(doc);
    if (!root || !is_xs(root, "schema")) throw Unsupported(file + " is not an XSD");
    Doc& d = docs_[file];
    d.tns = attr(root, "targetNamespace");
    d.qualified_elements = attr(root, "elementFormDefault") == "qualified";
    if (attr(root, "attributeFormDefault") == "qualified") throw Unsupported("qualified attributes");
    if (expected_tns && *expected_tns != d.tns) throw Unsupported(file + ": chameleon include");
    by_doc_[doc] = &d;
    for (xmlNode* c : parts(root)) {
      const std::string_view kind = sv(c->name);
      if (kind == "include") {
        load(attr(c, "schemaLocation"), &d.tns);
      } else if (kind == "import") {
        if (!has_attr(c, "schemaLocation")) throw Unsupported("import without location");
        const std::string ns = attr(c, "namespace");
        load(attr(c, "schemaLocation"), &ns);
      } else if (kind == "element" || kind == "complexType" || kind == "simpleType" ||
                 kind == "attribute") {
        auto& table = kind == "element"       ? elements_
                      : kind == "complexType" ? complexes_
                      : kind == "simpleType"  ? simples_
                                              : attributes_;
        if (!table.emplace(key(d.tns, attr(c, "name")), c).second)
          throw Unsupported("duplicate global " + std::string(kind));
      } else {
        throw Unsupported("top-level xs:" + std::string(kind));
      }
    }
  }

  // Every global element of the set can be a document's root.
  void roots() {
    for (auto& [k, node] : elements_) m_.roots.push_back(global_element(node));
  }

 private:
  struct Doc {
    std::string tns;
    bool qualified_elements = false;
  };

  static std::string key(std::string_view uri, std::string_view local) {
    std::string k(uri);
    k += '|';
    k += local;
    return k;
  }
  const Doc& doc_of(const xmlNode* n) { return *by_doc_.at(n->doc); }

  QName resolve(const xmlNode* n, const std::string& qname) {
    const std::size_t colon = qname.find(':');
    std::string prefix = colon == std::string::npos ? std::string() : qname.substr(0, colon);
    xmlNs* ns = xmlSearchNs(n->doc, const_cast<xmlNode*>(n),
                            prefix.empty() ? nullptr : BAD_CAST prefix.c_str());
    if (!ns && !prefix.empty()) throw Unsupported("undeclared prefix " + prefix);
    return QName{ns ? std::string(sv(ns->href)) : std::string(),
                 colon == std::string::npos ? qname : qname.substr(colon + 1)};
  }

  int name_id(const std::string& uri, const std::string& local) {
    const std::string k = key(uri, local);
    auto it = name_ids_.find(k);
    if (it != name_ids_.end()) return it->second;
    m_.names.push_back(QName{uri, local});
    const int id = static_cast<int>(m_.names.size()) - 1;
    name_ids_.emplace(k, id);
    return id;
  }

  int add_simple(SimpleType t) {
    m_.simples.push_back(std::move(t));
    return static_cast<int>(m_.simples.size()) - 1;
  }

  int builtin(const std::string& local) {
    auto it = builtins_.find(local);
    if (it != builtins_.end()) return it->second;
    SimpleType t;
    auto bounds = [&](const char* lo, const char* hi) {
      Step s;
      if (lo) s.has_min = parse_decimal(lo, true, &s.min, nullptr, nullptr);
      if (hi) s.has_max = parse_decimal(hi, true, &s.max, nullptr, nullptr);
      t.steps.push_back(std::move(s));
    };
    if (local == "string") {
      t.prim = Prim::kString;
    } else if (local == "decimal") {
      t.prim = Prim::kDecimal;
    } else if (local == "integer" || local == "positiveInteger" ||
               local == "nonNegativeInteger" || local == "negativeInteger" || local == "long" ||
               local == "unsignedLong" || local == "int" || local == "unsignedInt") {
      t.prim = Prim::kDecimal;
      t.integer = true;
      if (local == "positiveInteger") bounds("1", nullptr);
      if (local == "nonNegativeInteger") bounds("0", nullptr);
      if (local == "negativeInteger") bounds(nullptr, "-1");
      if (local == "long") bounds("-9223372036854775808", "9223372036854775807");
      if (local == "unsignedLong") bounds("0", "18446744073709551615");
      if (local == "int") bounds("-2147483648", "2147483647");
      if (local == "unsignedInt") bounds("0", "4294967295");
    } else if (local == "date") {
      t.prim = Prim::kDate;
    } else if (local == "dateTime") {
      t.prim = Prim::kDateTime;
    } else if (local == "base64Binary") {
      t.prim = Prim::kBase64;
    } else if (local == "anyURI") {
      t.prim = Prim::kAnyUri;
    } else if (local == "ID") {
      t.prim = Prim::kId;
    } else if (local == "anySimpleType" || local == "anyType") {
      // anyType (an element declared without a type) is accepted only holding text alone: no
      // attributes and no child elements, whose lax validation is left to libxml2.
      t.prim = Prim::kAny;
    }  // else kNone
    const int id = add_simple(std::move(t));
    builtins_.emplace(local, id);
    return id;
  }

  // A simple type by name; -1 when the name is a complex type.
  int named_simple(const QName& q) {
    if (q.uri == kXs) {
      if (q.local == "anyType") return -1;
      return builtin(q.local);
    }
    auto it = simples_.find(key(q.uri, q.local));
    if (it == simples_.end()) return -1;
    return simple_type(it->second);
  }

  int simple_type(const xmlNode* n) {
    auto done = simple_done_.find(n);
    if (done != simple_done_.end()) return done->second;
    std::vector<xmlNode*> ps = parts(n);
    if (ps.size() != 1 || !is_xs(ps[0], "restriction"))
      throw Unsupported("simpleType other than a restriction");
    const xmlNode* r = ps[0];
    int base = -1;
    std::vector<xmlNode*> facets = parts(r);
    if (has_attr(r, "base")) {
      base = named_simple(resolve(r, attr(r, "base")));
      if (base < 0) throw Unsupported("restriction of a complex type");
    } else if (!facets.empty() && is_xs(facets[0], "simpleType")) {
      base = simple_type(facets[0]);
      facets.erase(facets.begin());
    } else {
      throw Unsupported("restriction without a base");
    }
    SimpleType t = m_.simples[static_cast<std::size_t>(base)];
    Step s;
    for (const xmlNode* f : facets) {
      const std::string_view kind = sv(f->name);
      const std::string value = attr(f, "value");
      // Lengths count characters, octets for base64Binary.
      const bool textual = t.prim == Prim::kString || t.prim == Prim::kId || t.prim == Prim::kBase64;
      if (kind == "enumeration") {
        s.enums.push_back(value);
      } else if (kind == "pattern") {
        xmlRegexp* re = xmlRegexpCompile(BAD_CAST value.c_str());
        if (!re) throw Unsupported("pattern " + value);
        m_.regexps.push_back(re);
        s.patterns.push_back(re);
      } else if (kind == "length" || kind == "minLength" || kind == "maxLength") {
        if (!textual) throw Unsupported("length facet on a non-string type");
        int& slot = kind == "length" ? s.length : kind == "minLength" ? s.min_length : s.max_length;
        slot = int_attr(f, "value");
        t.has_length = true;
      } else if (kind == "totalDigits" || kind == "fractionDigits") {
        if (t.prim != Prim::kDecimal) throw Unsupported("digits facet on a non-decimal type");
        (kind == "totalDigits" ? s.total_digits : s.fraction_digits) = int_attr(f, "value");
      } else if (kind == "minInclusive" || kind == "maxInclusive") {
        const bool is_min = kind == "minInclusive";
        if (t.prim == Prim::kDecimal) {
          if (!parse_decimal(value, false, is_min ? &s.min : &s.max, nullptr, nullptr))
            throw Unsupported("bound " + value);
        } else if ((t.prim == Prim::kDate && valid_date_only(value)) ||
                   (t.prim == Prim::kDateTime && valid_datetime(value))) {
          (is_min ? s.min_s : s.max_s) = value;
        } else {
          throw Unsupported("bound " + value);
        }
        (is_min ? s.has_min : s.has_max) = true;
      } else {
        throw Unsupported("facet xs:" + std::string(kind));
      }
    }
    t.steps.push_back(std::move(s));
    const int id = add_simple(std::move(t));
    simple_done_.emplace(n, id);
    return id;
  }

  AttrDecl attribute(const xmlNode* n) {
    AttrDecl a;
    if (has_attr(n, "ref")) {
      const QName q = resolve(n, attr(n, "ref"));
      auto it = attributes_.find(key(q.uri, q.local));
      if (it == attributes_.end()) throw Unsupported("attribute ref " + q.local);
      a = attribute_body(it->second);
      a.uri = q.uri;
      a.local = q.local;
    } else {
      if (has_attr(n, "form")) throw Unsupported("attribute form");
      a = attribute_body(n);
      a.local = attr(n, "name");
    }
    const std::string use = attr(n, "use");
    if (use == "prohibited") throw Unsupported("prohibited attribute");
    a.required = use == "required";
    // A use may fix what its declaration leaves open.
    if (auto fixed = fixed_of(n)) a.fixed = std::move(fixed);
    return a;
  }
  AttrDecl attribute_body(const xmlNode* n) {
    AttrDecl a;
    std::vector<xmlNode*> ps = parts(n);
    if (has_attr(n, "type")) {
      a.type = named_simple(resolve(n, attr(n, "type")));
      if (a.type < 0) throw Unsupported("attribute of a complex type");
    } else if (ps.size() == 1 && is_xs(ps[0], "simpleType")) {
      a.type = simple_type(ps[0]);
    } else if (ps.empty()) {
      a.type = builtin("anySimpleType");
    } else {
      throw Unsupported("attribute content");
    }
    a.fixed = fixed_of(n);
    return a;
  }

  int occurs(const xmlNode* n, const char* name) {
    if (!has_attr(n, name)) return 1;
    const std::string v = attr(n, name);
    if (v == "unbounded") return -1;
    return int_attr(n, name);
  }

  Particle particle(const xmlNode* n, ComplexType& owner) {
    Particle p;
    p.min = occurs(n, "minOccurs");
    p.max = occurs(n, "maxOccurs");
    if (p.max == 0) throw Unsupported("maxOccurs 0");
    if (is_xs(n, "element")) {
      p.kind = Particle::kElem;
      const int decl = has_attr(n, "ref") ? global_element(ref_target(n)) : element(n, false);
      p.name = m_.elements[static_cast<std::size_t>(decl)].name;
      bool found = false;
      for (Child& c : owner.children) {
        if (c.name != p.name) continue;
        found = true;
        if (c.decl >= 0 && !same_decl(c.decl, decl)) c.decl = -1;
      }
      if (!found) {
        const std::string& local = m_.names[static_cast<std::size_t>(p.name)].local;
        owner.children.push_back(Child{name_head(local), local.size(), p.name, decl});
      }
      return p;
    }
    if (is_xs(n, "sequence")) {
      p.kind = Particle::kSeq;
    } else if (is_xs(n, "choice")) {
      p.kind = Particle::kChoice;
    } else {
      throw Unsupported("particle xs:" + std::string(sv(n->name)));
    }
    for (const xmlNode* c : parts(n)) p.kids.push_back(particle(c, owner));
    return p;
  }

  bool same_decl(int a, int b) const {
    if (a == b) return true;
    const ElementDecl& x = m_.elements[static_cast<std::size_t>(a)];
    const ElementDecl& y = m_.elements[static_cast<std::size_t>(b)];
    return x.complex == y.complex && x.type == y.type && x.fixed == y.fixed;
  }

  const xmlNode* ref_target(const xmlNode* n) {
    const QName q = resolve(n, attr(n, "ref"));
    auto it = elements_.find(key(q.uri, q.local));
    if (it == elements_.end()) throw Unsupported("element ref " + q.local);
    return it->second;
  }

  int global_element(const xmlNode* n) {
    auto done = element_done_.find(n);
    if (done != element_done_.end()) return done->second;
    return element(n, true);
  }

  int element(const xmlNode* n, bool global) {
    for (const char* a : {"abstract", "substitutionGroup", "form", "nillable"})
      if (has_attr(n, a)) throw Unsupported(std::string("element attribute ") + a);
    const Doc& d = doc_of(n);
    ElementDecl e;
    e.name = name_id(global || d.qualified_elements ? d.tns : std::string(), attr(n, "name"));
    e.fixed = fixed_of(n);
    m_.elements.push_back(e);
    const int id = static_cast<int>(m_.elements.size()) - 1;
    if (global) element_done_.emplace(n, id);
    std::vector<xmlNode*> ps = parts(n);
    for (const xmlNode* c : ps)
      if (!is_xs(c, "complexType") && !is_xs(c, "simpleType"))
        throw Unsupported("element content xs:" + std::string(sv(c->name)));
    bool complex = false;
    int type = -1;
    if (has_attr(n, "type")) {
      const QName q = resolve(n, attr(n, "type"));
      type = named_simple(q);
      if (type < 0) {
        auto it = complexes_.find(key(q.uri, q.local));
        if (it != complexes_.end()) {
          complex = true;
          type = complex_type(it->second);
        } else {
          type = builtin("anyType");
        }
      }
    } else if (ps.size() == 1) {
      complex = is_xs(ps[0], "complexType");
      type = complex ? complex_type(ps[0]) : simple_type(ps[0]);
    } else {
      type = builtin("anyType");
    }
    ElementDecl& slot = m_.elements[static_cast<std::size_t>(id)];
    slot.complex = complex;
    slot.type = type;
    return id;
  }

  int complex_type(const xmlNode* n) {
    auto done = complex_done_.find(n);
    if (done != complex_done_.end()) return done->second;
    for (const char* a : {"mixed", "abstract"})
      if (has_attr(n, a) && attr(n, a) != "false") throw Unsupported(std::string("complexType ") + a);
    m_.complexes.emplace_back();
    const int id = static_cast<int>(m_.complexes.size()) - 1;
    complex_done_.emplace(n, id);  // before the content: types may be recursive
    ComplexType t;
    for (const xmlNode* c : parts(n)) {
      if (is_xs(c, "sequence") || is_xs(c, "choice")) {
        if (t.content != ComplexType::kEmpty) throw Unsupported("two content models");
        t.particle = particle(c, t);
        t.content = t.particle.kids.empty() ? ComplexType::kEmpty : ComplexType::kElements;
      } else if (is_xs(c, "attribute")) {
        t.attrs.push_back(attribute(c));
      } else if (is_xs(c, "simpleContent")) {
        std::vector<xmlNode*> ext = parts(c);
        if (ext.size() != 1 || !is_xs(ext[0], "extension"))
          throw Unsupported("simpleContent other than an extension");
        t.content = ComplexType::kSimple;
        t.simple = named_simple(resolve(ext[0], attr(ext[0], "base")));
        if (t.simple < 0) throw Unsupported("simpleContent of a complex type");
        for (const xmlNode* a : parts(ext[0])) {
          if (!is_xs(a, "attribute")) throw Unsupported("extension content");
          t.attrs.push_back(attribute(a));
        }
      } else {
        throw Unsupported("complexType content xs:" + std::string(sv(c->name)));
      }
    }
    if (t.attrs.size() > 64) throw Unsupported("more than 64 attributes");
    m_.complexes[static_cast<std::size_t>(id)] = std::move(t);
    return id;
  }

  const std::map<std::string, XmlDocPtr>& files_;
  FastModel& m_;
  std::map<std::string, Doc> docs_;
  std::map<const xmlDoc*, Doc*> by_doc_;
  std::map<std::string, const xmlNode*> elements_, complexes_, simples_, attributes_;
  std::map<const xmlNode*, int> simple_done_, complex_done_, element_done_;
  std::map<std::string, int> builtins_, name_ids_;
};

}  // namespace

FastSchema::FastSchema(std::unique_ptr<FastModel> model) : model_(std::move(model)) {}
FastSchema::~FastSchema() = default;

std::unique_ptr<FastSchema> FastSchema::compile(const std::map<std::string, XmlDocPtr>& files,
                                                const std::string& xsd_file) {
  auto model = std::make_unique<FastModel>();
  try {
    Compiler c(files, *model);
    c.load(xsd_file, nullptr);
    c.roots();
  } catch (const std::exception&) {  // Unsupported (its message names the construct)
    return nullptr;
  }
  return std::unique_ptr<FastSchema>(new FastSchema(std::move(model)));
}

// ---------------------------------------------------------------------------- the validator

struct FastValidator::Frame {
  int decl;
  int kid_mark;
  bool simple;  // the text is the value of a simple type
};

FastValidator::FastValidator() = default;
FastValidator::~FastValidator() = default;

void FastValidator::reset(const FastSchema* schema) {
  schema_ = schema;
  ok_ = schema != nullptr;
  done_ = false;
  frames_.clear();
  kids_.clear();
  text_.clear();
  ids_.clear();
}

namespace {

bool step_ok(const Step& s, Prim prim, std::string_view v, std::size_t length, const Decimal* num,
             int total, int frac) {
  if (s.length >= 0 || s.min_length >= 0 || s.max_length >= 0) {
    const auto n = static_cast<int>(std::min<std::size_t>(length, INT32_MAX));
    if ((s.length >= 0 && n != s.length) || (s.min_length >= 0 && n < s.min_length) ||
        (s.max_length >= 0 && n > s.max_length))
      return false;
  }
  if (s.total_digits >= 0 && total > s.total_digits) return false;
  if (s.fraction_digits >= 0 && frac > s.fraction_digits) return false;
  if (s.has_min || s.has_max) {
    if (prim == Prim::kDecimal) {
      if ((s.has_min && compare(*num, s.min) < 0) || (s.has_max && compare(*num, s.max) > 0))
        return false;
    } else if ((s.has_min && v < s.min_s) || (s.has_max && v > s.max_s)) {
      return false;
    }
  }
  if (!s.enums.empty() && std::find(s.enums.begin(), s.enums.end(), v) == s.enums.end())
    return false;
  if (!s.patterns.empty()) {
    const std::string z(v);  // xmlRegexpExec wants a terminated string
    bool any = false;
    for (xmlRegexp* re : s.patterns)
      if (xmlRegexpExec(re, BAD_CAST z.c_str()) == 1) any = true;
    if (!any) return false;
  }
  return true;
}

bool value_ok(const SimpleType& t, std::string_view v, std::vector<std::string>& ids) {
  Decimal num;
  int total = 0, frac = 0;
  std::size_t length = 0;
  switch (t.prim) {
    case Prim::kString:
    case Prim::kAny:
      break;
    case Prim::kDecimal:
      if (!parse_decimal(v, t.integer, &num, &total, &frac)) return false;
      break;
    case Prim::kDate:
      if (!valid_date_only(v)) return false;
      break;
    case Prim::kDateTime:
      if (!valid_datetime(v)) return false;
      break;
    case Prim::kBase64:
      if (!valid_base64(v, &length)) return false;
      break;
    case Prim::kAnyUri:
      if (!valid_uri(v)) return false;
      break;
    case Prim::kId: {
      if (!valid_ncname(v)) return false;
      auto at = std::lower_bound(ids.begin(), ids.end(), v);
      if (at != ids.end() && *at == v) return false;  // an ID twice
      ids.insert(at, std::string(v));
      break;
    }
    case Prim::kNone:
      return false;
  }
  if (t.has_length && t.prim != Prim::kBase64) length = utf8_chars(v);
  for (const Step& s : t.steps)
    if (!step_ok(s, t.prim, v, length, &num, total, frac)) return false;
  return true;
}

// Greedy match of `p` from `pos`: how far it gets, -1 when it cannot match. Greedy finds one
// derivation when it succeeds (so success proves the children valid); SII's content models
// are deterministic (XSD's unique particle attribution), where greedy finds the only one.
int match(const Particle& p, const int* names, int n, int pos);

int match_once(const Particle& p, const int* names, int n, int pos) {
  switch (p.kind) {
    case Particle::kElem:
      return pos < n && names[pos] == p.name ? pos + 1 : -1;
    case Particle::kSeq:
      for (const Particle& k : p.kids) {
        pos = match(k, names, n, pos);
        if (pos < 0) return -1;
      }
      return pos;
    case Particle::kChoice: {
      int empty = -1;
      for (const Particle& k : p.kids) {
        const int r = match(k, names, n, pos);
        if (r > pos) return r;
        if (r == pos) empty = pos;
      }
      return empty;
    }
  }
  return -1;
}

int match(const Particle& p, const int* names, int n, int pos) {
  int count = 0;
  while (p.max < 0 || count < p.max) {
    const int next = match_once(p, names, n, pos);
    if (next < 0) break;
    ++count;
    if (next == pos) break;  // an empty match: any further repetitions are empty too
    pos = next;
  }
  return count >= p.min ? pos : -1;
}

bool xsi_hint_ok(std::string_view v) {
  return std::all_of(v.begin(), v.end(), [](char c) {
    return is_name_char(c) || c == '/' || c == ':' || c == '#' || char_class(c) == kSpace;
  });
}

}  // namespace

bool FastValidator::start(const xmlChar* local_c, const xmlChar* uri_c, int nb_attrs,
                          const xmlChar** attrs) {
  if (!ok_) return false;
  const FastModel& m = schema_->model();
  const std::string_view local = sv(local_c), uri = sv(uri_c);
  const std::uint64_t head = name_head(local);
  auto same = [&](int name) {
    const QName& q = m.names[static_cast<std::size_t>(name)];
    return q.local == local && q.uri == uri;
  };
  int decl = -1;
  if (frames_.empty()) {
    if (done_) return ok_ = false;
    for (int r : m.roots)
      if (same(m.elements[static_cast<std::size_t>(r)].name)) decl = r;
  } else {
    const Frame& parent = frames_.back();
    const ElementDecl& pd = m.elements[static_cast<std::size_t>(parent.decl)];
    if (parent.simple) return ok_ = false;  // an element inside a simple value
    const ComplexType& pt = m.complexes[static_cast<std::size_t>(pd.type)];
    for (const Child& c : pt.children) {
      if (c.head != head || c.size != local.size() || !same(c.name)) continue;
      decl = c.decl;
      if (decl >= 0) kids_.push_back(c.name);
      break;
    }
  }
  if (decl < 0) return ok_ = false;
  const ElementDecl& e = m.elements[static_cast<std::size_t>(decl)];
  const ComplexType* ct = e.complex ? &m.complexes[static_cast<std::size_t>(e.type)] : nullptr;

  // Attributes: each declared, valid and fixed where fixed; every required one present.
  std::uint64_t seen = 0;
  for (int i = 0; i < nb_attrs; ++i) {
    const xmlChar** a = attrs + 5 * i;
    const std::string_view alocal = sv(a[0]), auri = sv(a[2]);
    const std::string_view value(reinterpret_cast<const char*>(a[3]),
                                 static_cast<std::size_t>(a[4] - a[3]));
    if (auri == kXsi) {
      if ((alocal == "schemaLocation" || alocal == "noNamespaceSchemaLocation") &&
          xsi_hint_ok(value))
        continue;
      return ok_ = false;  // xsi:type, xsi:nil: libxml2's business
    }
    if (!ct) return ok_ = false;
    int found = -1;
    for (std::size_t k = 0; k < ct->attrs.size(); ++k)
      if (ct->attrs[k].local == alocal && ct->attrs[k].uri == auri) found = static_cast<int>(k);
    if (found < 0 || (seen >> found & 1)) return ok_ = false;
    seen |= std::uint64_t{1} << found;
    const AttrDecl& ad = ct->attrs[static_cast<std::size_t>(found)];
    if (ad.fixed && value != *ad.fixed) return ok_ = false;
    if (!value_ok(m.simples[static_cast<std::size_t>(ad.type)], value, ids_)) return ok_ = false;
  }
  if (ct) {
    for (std::size_t k = 0; k < ct->attrs.size(); ++k)
      if (ct->attrs[k].required && !(seen >> k & 1)) return ok_ = false;
  }
  const bool simple = !ct || ct->content == ComplexType::kSimple;
  frames_.push_back(Frame{decl, static_cast<int>(kids_.size()), simple});
  if (simple) text_.clear();
  return true;
}

bool FastValidator::chars(std::string_view text) {
  if (!ok_ || frames_.empty()) return ok_;
  const Frame& f = frames_.back();
  if (f.simple) {
    text_.append(text);
    return true;
  }
  const FastModel& m = schema_->model();
  const ElementDecl& e = m.elements[static_cast<std::size_t>(f.decl)];
  if (m.complexes[static_cast<std::size_t>(e.type)].content == ComplexType::kEmpty)
    return ok_ = false;  // not even whitespace in empty content
  if (!all_space(text)) return ok_ = false;
  return true;
}

bool FastValidator::end() {
  if (!ok_ || frames_.empty()) return ok_ = false;
  const FastModel& m = schema_->model();
  const Frame f = frames_.back();
  frames_.pop_back();
  const ElementDecl& e = m.elements[static_cast<std::size_t>(f.decl)];
  if (f.simple) {
    if (e.fixed && text_ != *e.fixed) return ok_ = false;
    const int type = e.complex ? m.complexes[static_cast<std::size_t>(e.type)].simple : e.type;
    if (!value_ok(m.simples[static_cast<std::size_t>(type)], text_, ids_)) return ok_ = false;
  } else {
    // Empty content has no children here: start() found no declaration for any.
    const ComplexType& ct = m.complexes[static_cast<std::size_t>(e.type)];
    const int n = static_cast<int>(kids_.size()) - f.kid_mark;
    if (ct.content == ComplexType::kElements &&
        match(ct.particle, kids_.data() + f.kid_mark, n, 0) != n)
      return ok_ = false;
    kids_.resize(static_cast<std::size_t>(f.kid_mark));
  }
  if (frames_.empty()) done_ = true;
  return true;
}

bool fast_accepts(const FastSchema& schema, const xmlNode* root) {
  FastValidator v;
  v.reset(&schema);
  std::vector<const xmlChar*> attrs;
  std::vector<std::string> values;
  // Iterative walk: enter an element, its children, leave it.
  const xmlNode* n = root;
  while (n) {
    bool descend = false;
    if (n->type == XML_ELEMENT_NODE) {
      values.clear();
      for (const xmlAttr* a = n->properties; a; a = a->next) {
        XmlCharPtr value(xmlNodeListGetString(n->doc, a->children, 1));
        values.emplace_back(value ? reinterpret_cast<const char*>(value.get()) : "");
      }
      attrs.clear();
      std::size_t i = 0;
      for (const xmlAttr* a = n->properties; a; a = a->next, ++i) {
        const std::string& s = values[i];
        attrs.insert(attrs.end(), {a->name, a->ns ? a->ns->prefix : nullptr,
                                   a->ns ? a->ns->href : nullptr, BAD_CAST s.data(),
                                   BAD_CAST s.data() + s.size()});
      }
      if (!v.start(n->name, n->ns ? n->ns->href : nullptr, static_cast<int>(i), attrs.data()))
        return false;
      descend = n->children != nullptr;
      if (!descend && !v.end()) return false;
    } else if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
      if (!v.chars(sv(n->content))) return false;
    } else if (n->type != XML_COMMENT_NODE && n->type != XML_PI_NODE) {
      return false;  // entity references and the like: libxml2's business
    }
    if (descend) {
      n = n->children;
      continue;
    }
    // Next sibling, closing the elements we climb out of.
    while (n && n != root && !n->next) {
      n = n->parent;
      if (!v.end()) return false;
    }
    if (!n || n == root) break;
    n = n->next;
  }
  return v.accepted();
}

}  // namespace dte::detail
