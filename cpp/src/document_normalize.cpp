// Input JSON -> normalised document: shapes (single objects -> lists, numeric strings ->
// numbers), defaults, line amounts and totals with SII's half-up rounding.
#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>

#include "document_internal.hpp"
#include "dte/errors.hpp"
#include "dte/xml.hpp"

namespace dte {
namespace detail {

std::optional<long double> parse_decimal(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (s.empty()) return std::nullopt;
  if (s.front() == '+') s.remove_prefix(1);
  // Only plain decimals: no exponent, hex, inf or nan sneaking in through from_chars.
  bool digit = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (!(c == '.' || (c == '-' && i == 0))) {
      return std::nullopt;
    }
  }
  if (!digit) return std::nullopt;
  long double value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<long double> as_number(const json& v) noexcept {
  if (v.is_number_integer()) return static_cast<long double>(v.get<long long>());
  if (v.is_number_unsigned()) return static_cast<long double>(v.get<unsigned long long>());
  if (v.is_number_float()) return static_cast<long double>(v.get<double>());
  if (v.is_string()) return parse_decimal(v.get_ref<const std::string&>());
  return std::nullopt;
}

long long round_half_up(long double x) {
  // Beyond long long the cast is undefined behaviour: no DTE amount or folio gets near 9.2e18.
  if (!(std::fabs(x) < 9.0e18L))
    throw DocumentError("input.amount_range",
                        "an amount or folio in the input is out of range (|value| >= 9e18)");
  constexpr long double kTolerance = 1e-7L;
  const bool negative = !(x >= 0);
  const long double y = (negative ? -x : x) + 0.5L + kTolerance;  // > 0
  // floor(y). std::floor on a long double and its cast to an integer are x87 code that switches
  // the control word's rounding mode and back, twice: below 2^53 the value goes through a double
  // instead, whose conversion to an integer truncates without that (SSE). The double is y rounded to nearest, which
  // lies between floor(y) and ceil(y) (both exact doubles there), so its truncation is floor(y)
  // or, when it rounded up onto ceil(y) > y, one more.
  long long r;
  if (y < 0x1p53L) {
    r = static_cast<long long>(static_cast<double>(y));
    if (static_cast<long double>(r) > y) --r;
  } else {
    r = static_cast<long long>(std::floor(y));
  }
  return negative ? -r : r;
}

long double round_to(long double x, int frac) {
  if (frac <= 0) return static_cast<long double>(round_half_up(x));
  long double scale = std::pow(10.0L, frac);
  return static_cast<long double>(round_half_up(x * scale)) / scale;
}

std::string format_number(long double x, int frac) {
  if (frac <= 0) return std::to_string(round_half_up(x));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*Lf", frac, round_to(x, frac));
  std::string s(buf);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

std::string scalar_text(const json& v, const Node& node) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  if (v.is_number()) {
    auto n = as_number(v);
    int frac = node.kind == Kind::kDec ? node.frac : node.kind == Kind::kInt ? 0 : 6;
    // xs:decimal without fractionDigits (Exportaciones OtraMoneda): keep 4 as elsewhere.
    if (node.kind == Kind::kDec && frac == 0) frac = 4;
    return format_number(*n, frac);
  }
  return {};
}

long double num(const json& obj, std::string_view key) noexcept {
  const json* v = member(obj, key);
  return v ? as_number(*v).value_or(0) : 0;
}

}  // namespace detail

using detail::Kind;
using detail::Node;
using detail::Picked;

bool is_supported_type(int tipo) noexcept {
  for (int t : kSupportedTypes)
    if (t == tipo) return true;
  return false;
}
bool is_boleta(int tipo) noexcept { return tipo == 39 || tipo == 41; }
bool is_export(int tipo) noexcept { return tipo == 110 || tipo == 111 || tipo == 112; }
bool is_exempt_type(int tipo) noexcept {
  return tipo == 34 || tipo == 41 || is_export(tipo);
}

const char* type_name(int tipo) noexcept {
  switch (tipo) {
    case 33: return "Factura electrónica";
    case 34: return "Factura no afecta o exenta electrónica";
    case 39: return "Boleta electrónica";
    case 41: return "Boleta exenta electrónica";
    case 43: return "Liquidación factura electrónica";
    case 46: return "Factura de compra electrónica";
    case 52: return "Guía de despacho electrónica";
    case 56: return "Nota de débito electrónica";
    case 61: return "Nota de crédito electrónica";
    case 110: return "Factura de exportación electrónica";
    case 111: return "Nota de débito de exportación electrónica";
    case 112: return "Nota de crédito de exportación electrónica";
    default: return "";
  }
}

namespace {

// A member vector with room for `capacity` members. vector::reserve would copy every member:
// the pair's key is const, so its move may throw and reallocation falls back to copying, json
// subtrees included. Here only the keys are copied (mostly short: no allocation), the values
// moved.
void grow(json::object_t& members, std::size_t capacity) {
  json::object_t::Container bigger;
  bigger.reserve(capacity);
  for (auto& m : members) bigger.emplace_back(m.first, std::move(m.second));
  members.swap(bigger);
}

// Where the members of an object are by key, for objects large enough that walking all of them
// for every key read (to find one given twice) would add up to quadratic time: open addressing
// over member positions, filled lazily with the members appended since the last lookup. Small
// objects, the documents' own, are searched directly as before.
class KeyIndex {
 public:
  static constexpr std::size_t kFrom = 16;  // members before an index pays for itself

  // The position of `key` among `members` (the object this index serves, which only ever grows
  // by appending), or members.size() when absent.
  std::size_t find(const json::object_t& members, std::string_view key) {
    const std::size_t n = members.size();
    if (n >= kFrom) return find_indexed(members, key);
    std::size_t i = 0;
    while (i < n && std::string_view(members.data()[i].first) != key) ++i;
    return i;
  }

 private:
  [[gnu::noinline]] std::size_t find_indexed(const json::object_t& members, std::string_view key) {
    const std::size_t n = members.size();
    if (slots_.size() < 2 * n) {  // at most half full: rebuilt at four times the members
      std::size_t size = 64;
      while (size < 4 * n) size *= 2;
      slots_.assign(size, {0, 0});
      indexed_ = 0;
    }
    const std::size_t mask = slots_.size() - 1;
    for (; indexed_ < n; ++indexed_) {
      const std::size_t h = hash(members.data()[indexed_].first);
      std::size_t s = h & mask;
      while (slots_[s].second != 0) s = (s + 1) & mask;
      slots_[s] = {h, indexed_ + 1};
    }
    const std::size_t h = hash(key);
    for (std::size_t s = h & mask; slots_[s].second != 0; s = (s + 1) & mask)
      if (slots_[s].first == h && std::string_view(members.data()[slots_[s].second - 1].first) == key)
        return slots_[s].second - 1;
    return n;
  }

  static std::size_t hash(std::string_view key) noexcept { return std::hash<std::string_view>{}(key); }
  std::vector<std::pair<std::size_t, std::size_t>> slots_;  // hash, position + 1 (0: empty)
  std::size_t indexed_ = 0;  // members[0, indexed_) are in slots_
};

// json::parse's own tree building (nlohmann's json_sax_dom_parser) with the keys of an object
// found through a KeyIndex: the ordered map's operator[] walks every member for every key. The
// same document (a key given twice keeps its first place and its last value), the same
// exceptions (the parser's, thrown as json_sax_dom_parser throws them).
class TreeBuilder {
 public:
  explicit TreeBuilder(json& root) : root_(root) {}

  bool null() { return place(nullptr), true; }
  bool boolean(bool v) { return place(v), true; }
  bool number_integer(json::number_integer_t v) { return place(v), true; }
  bool number_unsigned(json::number_unsigned_t v) { return place(v), true; }
  bool number_float(json::number_float_t v, const json::string_t&) { return place(v), true; }
  bool string(json::string_t& v) { return place(v), true; }
  bool binary(json::binary_t& v) { return place(std::move(v)), true; }
  // `len` is always "unknown" (-1) for JSON text: no size to check as the DOM builder does.
  bool start_object(std::size_t) {
    open_.push_back({place(json::value_t::object), {}});
    return true;
  }
  bool key(json::string_t& k) {
    Open& o = open_.back();
    auto& members = o.value->get_ref<json::object_t&>();
    const std::size_t at = o.keys.find(members, k);
    if (at == members.size()) {
      if (members.size() == members.capacity())
        grow(members, std::max<std::size_t>(8, 2 * members.size()));
      members.emplace_back(k, json());
    }
    element_ = &members.data()[at].second;
    return true;
  }
  bool end_object() { return open_.pop_back(), true; }
  bool start_array(std::size_t) {
    open_.push_back({place(json::value_t::array), {}});
    return true;
  }
  bool end_array() { return open_.pop_back(), true; }
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& ex) {
    throw ex;
  }

 private:
  template <class Value>
  json* place(Value&& v) {
    if (open_.empty()) {
      root_ = json(std::forward<Value>(v));
      return &root_;
    }
    json& in = *open_.back().value;
    if (in.is_array()) {
      auto& items = in.get_ref<json::array_t&>();
      items.emplace_back(std::forward<Value>(v));
      return &items.back();
    }
    *element_ = json(std::forward<Value>(v));
    return element_;
  }

  struct Open {
    json* value;   // an open object or array: only the innermost one grows, so this one stays
    KeyIndex keys;  // objects only
  };
  json& root_;
  std::vector<Open> open_;
  json* element_ = nullptr;  // the member whose key came last
};

// The common input read directly: what json::parse would build, for plain JSON only (no \u
// escapes, integers of at most 18 digits, nesting at most 64 deep, well-formed UTF-8 by the
// lexer's own table). It declines (nullopt) on anything else, valid or not, and json::parse
// then reads the text and reports its errors; the nlohmann lexer costs as much as the rest of
// normalising the document. Same document as json::parse: a key given twice keeps its first
// place and its last value.
class DirectParser {
 public:
  explicit DirectParser(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  std::optional<json> run() {
    json out;
    auto root = [&](auto&&... v) -> json& { return out = json(std::forward<decltype(v)>(v)...); };
    if (!value(root, 0)) return std::nullopt;
    skip_space();
    if (p_ != end_) return std::nullopt;
    return out;
  }

 private:
  void skip_space() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::memcmp(p_, word.data(), word.size()) != 0)
      return false;
    p_ += word.size();
    return true;
  }

  // Reads a value and has `place` build it where it goes (place(args...) constructs the json
  // from args there and returns it): no temporary json is built and swapped in.
  template <class Place>
  bool value(Place&& place, int depth) {
    skip_space();
    if (p_ == end_) return false;
    switch (*p_) {
      case '{': return object(place(json::value_t::object), depth + 1);
      case '[': return array(place(json::value_t::array), depth + 1);
      case '"': {
        std::string_view text;
        if (!string(text, value_text_)) return false;
        place(text);
        return true;
      }
      case 't': place(true); return literal("true");
      case 'f': place(false); return literal("false");
      case 'n': place(nullptr); return literal("null");
      default: return number(place);
    }
  }

  // The lexer's number grammar; integers as strtoull / strtoll give them (non-negative ones
  // unsigned), the rest as strtod does (from_chars rounds the same, correctly).
  template <class Place>
  bool number(Place& place) {
    const char* start = p_;
    const bool negative = p_ < end_ && *p_ == '-';
    if (negative) ++p_;
    if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
    const char* digits = p_;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    const std::size_t int_digits = static_cast<std::size_t>(p_ - digits);
    bool integer = true;
    if (p_ < end_ && *p_ == '.') {
      integer = false;
      ++p_;
      const char* frac = p_;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      if (p_ == frac) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      const char* exp = p_;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      if (p_ == exp) return false;
    }
    if (integer) {
      if (int_digits > 18) return false;  // near the limits the lexer's overflow rules apply
      std::uint64_t v = 0;
      for (const char* d = digits; d < p_; ++d) v = v * 10 + static_cast<std::uint64_t>(*d - '0');
      if (negative)
        place(static_cast<json::number_integer_t>(-static_cast<std::int64_t>(v)));
      else
        place(static_cast<json::number_unsigned_t>(v));
      return true;
    }
    double d = 0;
    auto [ptr, ec] = std::from_chars(start, p_, d);
    if (ec != std::errc() || ptr != p_ || !std::isfinite(d)) return false;
    place(static_cast<json::number_float_t>(d));
    return true;
  }

  // Bytes of a well-formed UTF-8 sequence at p (RFC 3629, the lexer's ranges); 0 if not one.
  static std::size_t utf8_length(const unsigned char* p, const unsigned char* end) {
    auto cont = [&](std::size_t i, unsigned char lo, unsigned char hi) {
      return p + i < end && p[i] >= lo && p[i] <= hi;
    };
    const unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
    if (c == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
      return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;
    if (c == 0xF0) return cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3)
      return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    return 0;
  }

  // Bytes a string takes as they are: printable ASCII but the quote and the backslash.
  static constexpr std::array<bool, 256> kPlain = [] {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 0x80; ++c) t[c] = c != '"' && c != '\\';
    return t;
  }();

  // Moves p_ to the first byte a string does not take as it is (or to the end). Eight bytes at a
  // time: a byte below 0x20, a quote, a backslash or one with the high bit set flags its high
  // bit; a flag only ever carries into a later byte, so the lowest one is the first such byte.
  void skip_plain() {
    if constexpr (std::endian::native == std::endian::little) {
      constexpr std::uint64_t kOnes = 0x0101010101010101u;
      constexpr std::uint64_t kHigh = 0x8080808080808080u;
      while (end_ - p_ >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p_, 8);
        const std::uint64_t quote = w ^ (kOnes * '"');
        const std::uint64_t backslash = w ^ (kOnes * '\\');
        const std::uint64_t flags = (((w - kOnes * 0x20) & ~w) | ((quote - kOnes) & ~quote) |
                                     ((backslash - kOnes) & ~backslash) | w) &
                                    kHigh;
        if (flags) {
          p_ += std::countr_zero(flags) / 8;
          return;
        }
        p_ += 8;
      }
    }
    while (p_ < end_ && kPlain[static_cast<unsigned char>(*p_)]) ++p_;
  }

  // At the opening quote; `text` is the string read, in the input itself unless it has escapes
  // (then in `escaped`, decoded). Escapes other than \uXXXX are read; a control character, a \u
  // or a byte that does not start well-formed UTF-8 declines.
  bool string(std::string_view& text, std::string& escaped) {
    ++p_;
    const char* const start = p_;
    for (;;) {
      skip_plain();
      if (p_ == end_) return false;
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        text = {start, static_cast<std::size_t>(p_ - start)};
        ++p_;
        return true;
      }
      if (c >= 0x80) {
        if (!skip_utf8()) return false;
        continue;
      }
      if (c != '\\') return false;  // a control character
      escaped.assign(start, static_cast<std::size_t>(p_ - start));
      return escaped_rest(text, escaped);
    }
  }

  // Past a well-formed UTF-8 sequence at p_; false if there is none.
  bool skip_utf8() {
    const std::size_t n = utf8_length(reinterpret_cast<const unsigned char*>(p_),
                                      reinterpret_cast<const unsigned char*>(end_));
    p_ += n;
    return n != 0;
  }

  // The rest of a string from its first backslash on, decoded into `escaped` (which holds the
  // text before it). Apart from string()'s loop, which most strings (no escapes) never leave.
  [[gnu::noinline]] bool escaped_rest(std::string_view& text, std::string& escaped) {
    for (;;) {
      if (p_ + 1 >= end_) return false;
      char e;
      switch (p_[1]) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '/': e = '/'; break;
        case 'b': e = '\b'; break;
        case 'f': e = '\f'; break;
        case 'n': e = '\n'; break;
        case 'r': e = '\r'; break;
        case 't': e = '\t'; break;
        default: return false;
      }
      escaped.push_back(e);
      p_ += 2;
      const char* run = p_;
      for (;;) {
        skip_plain();
        if (p_ == end_) return false;
        const unsigned char c = static_cast<unsigned char>(*p_);
        if (c < 0x80) break;
        if (!skip_utf8()) return false;
      }
      escaped.append(run, static_cast<std::size_t>(p_ - run));
      if (*p_ == '"') {
        text = escaped;
        ++p_;
        return true;
      }
      if (*p_ != '\\') return false;  // a control character
    }
  }

  // Members are read straight into the object, which starts with room for several: the
  // documents' objects mostly fit, and normalize() adds a few members of its own. A repeated key
  // keeps its first place and takes the last value. Only this object's own reading adds to its
  // members (nested values fill their own containers), so the member being read stays put.
  // `out` is the empty object just placed.
  bool object(json& out, int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;
    auto& members = out.get_ref<json::object_t&>();
    skip_space();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    members.reserve(8);
    const std::size_t serial = ++objects_;
    for (;;) {
      skip_space();
      if (p_ == end_ || *p_ != '"') return false;
      std::string_view key;
      if (!string(key, key_text_)) return false;
      skip_space();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      auto same = members.end();
      if (members.size() < KeyIndex::kFrom) [[likely]] {
        same = std::find_if(members.begin(), members.end(),
                            [&](const auto& m) { return std::string_view(m.first) == key; });
      } else {
        same = members.begin() + static_cast<std::ptrdiff_t>(indexed_key(members, key, depth, serial));
      }
      if (same != members.end()) {
        json v;
        if (!value([&](auto&&... a) -> json& { return v = json(std::forward<decltype(a)>(a)...); },
                   depth))
          return false;
        same->second = std::move(v);
      } else {
        // `key` stays valid meanwhile: a string value is decoded into value_text_.
        auto member = [&](auto&&... a) -> json& {
          if (members.size() == members.capacity()) grow(members, 2 * members.size());
          return members
              .emplace_back(std::piecewise_construct, std::forward_as_tuple(key.data(), key.size()),
                            std::forward_as_tuple(std::forward<decltype(a)>(a)...))
              .second;
        };
        if (!value(member, depth)) return false;
      }
      bool more = false;
      if (!separator('}', more)) return false;
      if (!more) return true;
    }
  }

  // The position of `key` among the members of a large object (object() searches small ones
  // itself), the object numbered `serial` at `depth`: one index per depth, started afresh for
  // each new object there.
  [[gnu::noinline]] std::size_t indexed_key(const json::object_t& members, std::string_view key,
                                            int depth, std::size_t serial) {
    if (indexes_.size() <= static_cast<std::size_t>(depth)) indexes_.resize(depth + 1);
    auto& [owner, index] = indexes_[depth];
    if (owner != serial) {
      owner = serial;
      index = KeyIndex();
    }
    return index.find(members, key);
  }

  // After a member or an item: a ',' (`more`: another follows) or the closing bracket, either
  // consumed; false on anything else.
  bool separator(char close, bool& more) {
    skip_space();
    if (p_ == end_ || (*p_ != ',' && *p_ != close)) return false;
    more = *p_++ == ',';
    return true;
  }

  // `out` is the empty array just placed.
  bool array(json& out, int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;
    auto& items = out.get_ref<json::array_t&>();
    skip_space();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
    } else {
      items.reserve(4);  // the lists of a document are short: fewer growths
      for (;;) {
        // Only this array's own reading adds to `items`: the new item stays where it is.
        auto item = [&](auto&&... a) -> json& {
          return items.emplace_back(std::forward<decltype(a)>(a)...);
        };
        if (!value(item, depth)) return false;
        bool more = false;
        if (!separator(']', more)) return false;
        if (!more) break;
      }
    }
    return true;
  }

  static constexpr int kMaxDepth = 64;
  const char* p_;
  const char* const end_;
  // Strings with escapes, decoded: a key's text must outlive the reading of its value.
  std::string key_text_;
  std::string value_text_;
  std::size_t objects_ = 0;  // objects begun so far: numbers them for indexes_
  std::vector<std::pair<std::size_t, KeyIndex>> indexes_;  // by depth: the object's number, its index
};

}  // namespace

json parse_input(std::string_view json_text) {
  try {
    if (std::optional<json> direct = DirectParser(json_text).run()) return std::move(*direct);
    json out;
    TreeBuilder builder(out);
    json::sax_parse(json_text.begin(), json_text.end(), &builder);
    return out;
  } catch (const json::parse_error& e) {
    throw DocumentError("input.json", std::string("input is not valid JSON (byte ") +
                                          std::to_string(e.byte) + "): " + e.what());
  } catch (const json::exception& e) {  // e.g. a number that overflows a double (1E4444)
    throw DocumentError("input.json", std::string("input is not usable JSON: ") + e.what());
  }
}

namespace {

int read_type(const json& input) {
  const json* enc = detail::member(input, "Encabezado");
  const json* id = enc ? detail::member(*enc, "IdDoc") : nullptr;
  const json* v = id ? detail::member(*id, "TipoDTE") : nullptr;
  if (!v) throw DocumentError("input.field", "Encabezado.IdDoc.TipoDTE is required");
  auto n = detail::as_number(*v);
  if (!n || *n != std::floor(*n))
    throw DocumentError("input.type", "Encabezado.IdDoc.TipoDTE must be an integer");
  if (*n < 0 || *n > 1000)  // no SII type is outside this; the int cast would be UB or wrap
    throw DocumentError("input.unsupported_type",
                        "Encabezado.IdDoc.TipoDTE is not a supported document type");
  return static_cast<int>(*n);
}

void shape_value(json& value, const Node& node, const detail::FieldPath* path);

// Walks an object against its schema node: unknown keys are refused (a typo must not vanish),
// single objects become lists where the XSD allows several, numeric strings become numbers.
void shape_object(json& obj, const Node& node, const detail::FieldPath* path) {
  if (!obj.is_object())
    throw DocumentError("input.type", (path ? detail::path_text(path) : std::string("document")) +
                                          " must be an object");
  auto& members = obj.get_ref<json::object_t&>();
  for (auto it = members.begin(); it != members.end();) {
    const Node* child = node.find(it->first);
    if (!child) {
      const detail::FieldPath unknown{path, it->first};
      throw DocumentError("input.unknown_field",
                          "unknown field '" + detail::path_text(&unknown) +
                              "' (not in SII's schema for this document type)");
    }
    json& value = it->second;
    // LibreDTE-style input uses false/null for "not given".
    if (value.is_null() || (value.is_boolean() && !value.get<bool>())) {
      it = members.erase(it);
      continue;
    }
    const detail::FieldPath child_path{path, child->key()};
    if (child->repeats()) {
      if (!value.is_array()) {
        json one = std::move(value);
        value = json::array();
        value.push_back(std::move(one));
      }
      std::size_t i = 0;
      for (json& item : value.get_ref<json::array_t&>()) {
        const detail::FieldPath item_path{&child_path, {}, i, true};
        shape_value(item, *child, &item_path);
        ++i;
      }
    } else {
      if (value.is_array())
        throw DocumentError("input.type",
                            detail::path_text(&child_path) + " takes a single value, not a list");
      // Text given as text, the common case, stays as it is.
      const bool text = child->kind == Kind::kText || child->kind == Kind::kDate;
      if (!(text && value.is_string())) shape_value(value, *child, &child_path);
    }
    ++it;
  }
}

void shape_value(json& value, const Node& node, const detail::FieldPath* path) {
  switch (node.kind) {
    case Kind::kGroup:
      shape_object(value, node, path);
      return;
    case Kind::kInt:
    case Kind::kDec: {
      if (value.is_boolean()) value = value.get<bool>() ? 1 : 0;
      auto n = detail::as_number(value);
      if (!n) throw DocumentError("input.type", detail::path_text(path) + " must be a number");
      // A value of the type it would become already holds the same number: left as it is.
      if (*n == std::floor(*n) && std::fabs(*n) < 9e15L) {
        if (value.type() != json::value_t::number_integer) value = static_cast<long long>(*n);
      } else if (!value.is_number_float()) {
        value = static_cast<double>(*n);
      }
      return;
    }
    case Kind::kText:
    case Kind::kDate:
      if (value.is_number()) {
        value = detail::scalar_text(value, node);
      } else if (!value.is_string()) {
        throw DocumentError("input.type", detail::path_text(path) + " must be text");
      }
      return;
  }
}

// SII "Formato DTE" v2.2, section 4 (codes of additional taxes and retentions).
constexpr detail::TaxCode kTaxCodes[] = {
    {14, -1, false, false},  {15, 19, true, false},   {17, 5, false, false},
    {18, 5, false, false},   {19, 12, false, false},  {23, 15, false, false},
    {24, 31.5, false, false}, {25, 20.5, false, false}, {26, 20.5, false, false},
    {27, 10, false, false},  {271, 18, false, false}, {28, -1, false, false},
    {30, 10, true, true},    {301, 19, true, false},  {31, 19, true, false},
    {32, 8, true, true},     {321, 19, true, false},  {33, 8, true, true},
    {331, 19, true, false},  {34, 4, true, true},     {341, 19, true, false},
    {35, -1, false, false},  {36, 10, true, true},    {361, 19, true, false},
    {37, 10, true, true},    {371, 19, true, false},  {38, 19, true, false},
    {39, 19, true, false},   {41, 19, true, false},   {44, 15, false, false},
    {45, 50, false, false},  {46, 19, true, false},   {47, 19, true, false},
    {48, 14, true, true},    {481, 19, true, false},  {49, 0, true, false},
    {50, -1, false, false},  {51, -1, false, false},  {52, -1, false, false},
    {53, 0.5, true, false},
};

}  // namespace

namespace detail {
const TaxCode* tax_code(int code) noexcept {
  for (const TaxCode& t : kTaxCodes)
    if (t.code == code) return &t;
  return nullptr;
}
std::string path_text(const FieldPath* path) {
  if (!path) return {};
  std::string text = path_text(path->parent);
  if (path->is_index) {
    text += '[';
    text += std::to_string(path->index);
    text += ']';
  } else {
    if (!text.empty()) text += '.';
    text += path->key;
  }
  return text;
}

long long int_of(const json& v, long long fallback) {
  auto n = as_number(v);
  if (!n) return fallback;
  return round_half_up(*n);
}

}  // namespace detail

namespace {

using detail::has;
using detail::int_of;
using detail::num;
using detail::round_half_up;
using detail::round_to;

// Stated (non-zero) amounts are kept; zero counts as "not given" as in LibreDTE's input,
// whose notes state Totales of 0 to be filled in.
bool stated(const json& obj, std::string_view key) {
  const json* v = detail::member(obj, key);
  return v && detail::as_number(*v).value_or(0) != 0;
}

// obj[key], found without building a std::string key (json's operator[] makes one per call);
// inserted as operator[] inserts when absent (a null member at the end), with room for a few
// more first.
json& slot(json& obj, std::string_view key) {
  if (!obj.is_object()) return obj[std::string(key)];  // null becomes an object; others throw
  auto& members = obj.get_ref<json::object_t&>();
  for (auto& m : members)
    if (m.first.size() == key.size() && std::memcmp(m.first.data(), key.data(), key.size()) == 0)
      return m.second;
  if (members.size() == members.capacity())
    grow(members, std::max<std::size_t>(8, 2 * members.size()));
  members.emplace_back(std::string(key), json());
  return members.back().second;
}

void set_number(json& obj, const char* key, long double value, int frac) {
  if (frac <= 0)
    slot(obj, key) = round_half_up(value);
  else
    slot(obj, key) = static_cast<double>(round_to(value, frac));
}

// An object put in schema order, in place (normalised output reads like the XML); keys the
// schema does not have are dropped. An object already in order (input that follows the XSD,
// or one reordered already) is checked by walking the schema's children alongside its members,
// which costs less than looking each key up; only its groups are visited. Sibling names are
// unique in the schema, so the first match ahead is the child find() would give.
void in_schema_order(json& obj, const Node& node) {
  if (!obj.is_object()) return;
  auto& members = obj.get_ref<json::object_t&>();
  // Where each known member goes; on the stack for objects of ordinary size (left
  // uninitialised: only the first `count` are ever read).
  struct Place {
    std::size_t index;
    json* value;
  };
  constexpr std::size_t kLocal = 48;
  Place local[kLocal];
  std::vector<Place> heap;
  Place* found = local;
  if (members.size() > kLocal) {
    heap.resize(members.size());
    found = heap.data();
  }
  const Node* const kids = node.children.data();
  const std::size_t kid_count = node.children.size();
  auto visit = [](json& value, const Node& c) {
    if (c.kind != Kind::kGroup) return;
    if (value.is_array()) {
      for (json& item : value.get_ref<json::array_t&>()) in_schema_order(item, c);
    } else {
      in_schema_order(value, c);
    }
  };
  std::size_t count = 0;
  std::size_t next = 0;  // the first child a member in order can still be
  auto it = members.begin();
  for (; it != members.end(); ++it) {
    const std::string& key = it->first;
    std::size_t c = next;
    while (c < kid_count && !(kids[c].name_len == key.size() &&
                              std::memcmp(kids[c].name, key.data(), key.size()) == 0))
      ++c;
    if (c == kid_count) break;  // unknown, or behind the one before: out of order
    found[count++] = {c, &it->second};
    next = c + 1;
    visit(it->second, kids[c]);
  }
  if (it == members.end()) return;
  for (; it != members.end(); ++it) {
    const Node* c = node.find(it->first);
    if (!c) continue;
    found[count++] = {static_cast<std::size_t>(c - kids), &it->second};
    visit(it->second, *c);
  }
  std::sort(found, found + count, [](const Place& a, const Place& b) { return a.index < b.index; });
  // A new member vector swapped in: the json stays the same object, so no container is built
  // or torn down around it (keys are unique: appended as they come).
  json::object_t::Container sorted;
  sorted.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const Node& c = kids[found[i].index];
    sorted.emplace_back(std::piecewise_construct, std::forward_as_tuple(c.name, c.name_len),
                        std::forward_as_tuple(std::move(*found[i].value)));
  }
  members.swap(sorted);
}

struct Sums {
  long double affected = 0;  // lines subject to VAT (gross for boletas)
  long double exempt = 0;
  bool has_affected = false;
  bool has_exempt = false;
  std::map<int, long double> tax_base;  // CodImpAdic -> sum of affected line amounts
  std::vector<int> tax_order;
};

// obj.value(key, fallback) for a text member, without the copies. json::value throws for an
// `obj` that is not an object and a member that is not text: those cases go to it for its error.
std::string_view text_or(const json& obj, std::string_view key, std::string_view fallback) {
  if (obj.is_object()) {
    const json* v = detail::member(obj, key);
    if (!v) return fallback;
    if (v->is_string()) return v->get_ref<const std::string&>();
  }
  obj.value(std::string(key), std::string(fallback));  // throws json's error for these cases
  return fallback;
}

// Amounts in the document's currency: foreign-currency exports keep two decimals, CLP is whole
// pesos.
struct Money {
  int frac = 0;
  long double round(long double x) const {
    return frac ? round_to(x, frac) : static_cast<long double>(round_half_up(x));
  }
};

Money money_of(bool exports, const json& totales) {
  Money m;
  if (exports) {
    std::string moneda = totales.value("TpoMoneda", std::string());
    m.frac = (moneda.empty() || moneda == "PESO CL") ? 0 : 2;
  }
  return m;
}

// A line's amount as normalize fills MontoItem: the stated amount, or quantity x price - discount
// + surcharge, a discount or surcharge given as a percentage worked out on the rounded base.
struct LineAmount {
  long double monto = 0;  // unrounded: the totals sum these
  bool stated = false;
  long double desc = 0;
  long double rec = 0;
  bool desc_from_pct = false;
  bool rec_from_pct = false;
};

LineAmount line_amount(const json& line, const Money& money) {
  enum { kMonto, kQty, kPrc, kDescMonto, kDescPct, kRecMonto, kRecPct };
  static constexpr std::array<std::string_view, 7> kKeys = {
      "MontoItem", "QtyItem", "PrcItem", "DescuentoMonto", "DescuentoPct", "RecargoMonto",
      "RecargoPct"};
  const Picked f(line, kKeys);
  LineAmount a;
  if (f.num(kMonto) != 0) {
    a.stated = true;
    a.monto = f.num(kMonto);
    return a;
  }
  const long double qty = f.has(kQty) ? f.num(kQty) : 1;
  const long double base = money.round(qty * f.num(kPrc));
  a.desc = f.num(kDescMonto);
  if (!f.has(kDescMonto) && f.has(kDescPct)) {
    a.desc = money.round(base * f.num(kDescPct) / 100);
    a.desc_from_pct = true;
  }
  a.rec = f.num(kRecMonto);
  if (!f.has(kRecMonto) && f.has(kRecPct)) {
    a.rec = money.round(base * f.num(kRecPct) / 100);
    a.rec_from_pct = true;
  }
  a.monto = base - a.desc + a.rec;
  return a;
}

// The sums the totals come from: the lines (`montos`: each one's line_amount) by VAT treatment
// and additional tax, then the global discounts and surcharges, a percentage applying to the
// line sum of its bucket.
Sums sum_amounts(const json& doc, const std::vector<long double>& montos, bool exempt_type,
                 const Money& money) {
  Sums sums;
  auto detalle = doc.find("Detalle");
  std::size_t i = 0;
  if (detalle != doc.end()) {
    for (const json& line : *detalle) {
      const long double monto = montos[i++];
      const json* ind = detail::member(line, "IndExe");
      const long long ind_exe = ind ? int_of(*ind) : 0;
      // IndExe 2..6 (not billable, guarantees, non-sale items...) stay out of the totals.
      if (ind_exe >= 2) continue;
      if (exempt_type || ind_exe == 1) {
        sums.exempt += monto;
        sums.has_exempt = true;
      } else {
        sums.affected += monto;
        sums.has_affected = true;
        if (const json* codes = detail::member(line, "CodImpAdic")) {
          for (const json& c : *codes) {
            int code = static_cast<int>(int_of(c));
            if (!sums.tax_base.count(code)) sums.tax_order.push_back(code);
            sums.tax_base[code] += monto;
          }
        }
      }
    }
  }

  const long double affected_lines = sums.affected;
  const long double exempt_lines = sums.exempt;
  auto globals = doc.find("DscRcgGlobal");
  if (globals != doc.end()) {
    for (const json& dr : *globals) {
      const json* ind_exe = detail::member(dr, "IndExeDR");
      const long long ind = ind_exe ? int_of(*ind_exe) : 0;
      if (ind == 2) continue;  // not billable: outside the totals
      const bool to_exempt = exempt_type || ind == 1;
      const long double bucket = to_exempt ? exempt_lines : affected_lines;
      const std::string_view tpo_valor = text_or(dr, "TpoValor", "$");
      long double value = num(dr, "ValorDR");
      long double amount = tpo_valor == "%" ? money.round(bucket * value / 100) : value;
      const std::string_view mov = text_or(dr, "TpoMov", "D");
      if (mov == "D") amount = -amount;
      (to_exempt ? sums.exempt : sums.affected) += amount;
    }
  }
  // Taxes follow the affected amount after global discounts.
  if (affected_lines != 0 && sums.affected != affected_lines) {
    const long double factor = sums.affected / affected_lines;
    for (auto& [code, base] : sums.tax_base) base = round_half_up(base * factor);
  }
  return sums;
}

// Fills Totales (and OtraMoneda's converted amounts, when given) from the sums; amounts already
// stated are kept.
void fill_totals(json& totales, json* otra_moneda, const Sums& sums, int tipo, const json& id,
                 const Money& money) {
  const bool exports = is_export(tipo);
  const bool exempt_type = is_exempt_type(tipo);
  auto fill = [&](const char* key, long double value, int frac = 0) {
    if (!stated(totales, key)) set_number(totales, key, value, frac);
  };
  if (exports) {
    fill("MntExe", sums.exempt, money.frac);
    fill("MntTotal", sums.exempt, money.frac);
    if (otra_moneda) {
      json& om = *otra_moneda;
      const long double cambio = num(om, "TpoCambio");
      if (cambio > 0) {
        const int frac = om.value("TpoMoneda", std::string()) == "PESO CL" ? 0 : 4;
        if (!stated(om, "MntExeOtrMnda") && sums.exempt > 0)
          set_number(om, "MntExeOtrMnda", num(totales, "MntExe") * cambio, frac);
        if (!stated(om, "MntTotOtrMnda"))
          set_number(om, "MntTotOtrMnda", num(totales, "MntTotal") * cambio, frac);
      }
    }
  } else if (is_boleta(tipo)) {
    long double neto = 0, iva = 0, total_affected = 0;
    if (tipo == 39 && sums.has_affected) {
      const long long gross = round_half_up(sums.affected);
      if (has(id, "IndMntNeto") && int_of(id["IndMntNeto"]) == 2) {
        neto = static_cast<long double>(gross);
        iva = static_cast<long double>(round_half_up(neto * 19 / 100));
      } else {
        // round(gross / 1.19) half-up in integers: no binary noise on the .5 boundary.
        const long long g = gross < 0 ? 0 : gross;
        neto = static_cast<long double>((g * 200 + 119) / 238);
        iva = static_cast<long double>(g) - neto;
      }
      total_affected = neto + iva;
      fill("MntNeto", neto);
      fill("IVA", iva);
    } else if (tipo == 39 && sums.has_exempt) {
      // nothing affected: only MntExe below
    }
    if (sums.has_exempt || tipo == 41) fill("MntExe", sums.exempt);
    fill("MntTotal", total_affected + (sums.has_exempt || tipo == 41 ? sums.exempt : 0));
  } else {
    const bool affected_doc = !exempt_type && sums.has_affected;
    long double neto = affected_doc ? sums.affected : 0;
    const long double tasa = stated(totales, "TasaIVA") ? num(totales, "TasaIVA") : 19;
    long double iva = affected_doc ? static_cast<long double>(round_half_up(neto * tasa / 100)) : 0;
    long double additional = 0, retained = 0;
    bool partial = false;
    const bool zero_guia = tipo == 52 && sums.affected == 0 && sums.exempt == 0;
    if (affected_doc && !zero_guia) {
      fill("MntNeto", neto);
      if (sums.has_exempt) fill("MntExe", sums.exempt);
      if (!has(totales, "TasaIVA")) slot(totales, "TasaIVA") = static_cast<long long>(tasa);
      fill("IVA", iva);
    } else if (sums.has_exempt && !zero_guia) {
      fill("MntExe", sums.exempt);
    }
    // Additional taxes and retentions.
    if (!(has(totales, "ImptoReten") && !totales["ImptoReten"].empty()) && !sums.tax_order.empty()) {
      json list = json::array();
      for (int code : sums.tax_order) {
        const detail::TaxCode* t = detail::tax_code(code);
        if (!t || t->rate < 0) continue;  // specific taxes: the amount must be stated
        const long long monto = round_half_up(sums.tax_base.at(code) * t->rate / 100);
        json imp = json::object();
        slot(imp, "TipoImp") = std::to_string(code);
        slot(imp, "TasaImp") = t->rate == std::floor(t->rate) ? json(static_cast<long long>(t->rate))
                                                        : json(t->rate);
        slot(imp, "MontoImp") = monto;
        list.push_back(std::move(imp));
      }
      if (!list.empty()) slot(totales, "ImptoReten") = std::move(list);
    }
    if (has(totales, "ImptoReten")) {
      for (const json& imp : totales["ImptoReten"]) {
        const detail::TaxCode* t =
            detail::tax_code(static_cast<int>(int_of(imp.value("TipoImp", json()))));
        const long double monto = num(imp, "MontoImp");
        if (t && t->retention) {
          retained += monto;
          partial = partial || t->partial;
        } else {
          additional += monto;
        }
      }
    }
    const long double iva_final = num(totales, "IVA");
    if (partial && retained > 0 && retained < iva_final && !stated(totales, "IVANoRet"))
      slot(totales, "IVANoRet") = round_half_up(iva_final - retained);
    fill("MntTotal", num(totales, "MntNeto") + num(totales, "MntExe") + iva_final + additional -
                         retained);
    if (otra_moneda) {
      json& om = *otra_moneda;
      const long double cambio = num(om, "TpoCambio");
      if (cambio > 0) {
        // TpoCambio is pesos per unit of the other currency.
        auto conv = [&](const char* from, const char* to) {
          const long double v = num(totales, from);
          if (v > 0 && !stated(om, to)) set_number(om, to, v / cambio, 4);
        };
        conv("MntNeto", "MntNetoOtrMnda");
        conv("MntExe", "MntExeOtrMnda");
        conv("IVA", "IVAOtrMnda");
        if (!stated(om, "MntTotOtrMnda"))
          set_number(om, "MntTotOtrMnda", num(totales, "MntTotal") / cambio, 4);
      }
    }
  }
}

}  // namespace

json normalize(const json& input) { return detail::normalize(json(input)); }

json detail::normalize(json&& input) {
  if (!input.is_object()) throw DocumentError("input.type", "the document must be a JSON object");
  const int tipo = read_type(input);
  if (!is_supported_type(tipo))
    throw DocumentError("input.unsupported_type",
                        "TipoDTE " + std::to_string(tipo) + " is not a supported document type");
  const bool boleta = is_boleta(tipo);
  const bool exports = is_export(tipo);
  const bool exempt_type = is_exempt_type(tipo);
  const Node& schema = detail::schema_for(tipo);

  json doc = std::move(input);
  // Boletas name the issuer fields differently; accept the invoice names too, so one issuer
  // record serves every type. Acteco has no place in a boleta.
  if (boleta && slot(doc, "Encabezado").contains("Emisor") && slot(slot(doc, "Encabezado"), "Emisor").is_object()) {
    json& em = slot(slot(doc, "Encabezado"), "Emisor");
    // Copies first: inserting into an ordered_json may move the member being read.
    if (em.contains("RznSoc") && !em.contains("RznSocEmisor")) {
      json name = slot(em, "RznSoc");
      slot(em, "RznSocEmisor") = std::move(name);
    }
    if (em.contains("GiroEmis") && !em.contains("GiroEmisor")) {
      json giro = slot(em, "GiroEmis");
      slot(em, "GiroEmisor") = std::move(giro);
    }
    em.erase("RznSoc");
    em.erase("GiroEmis");
    em.erase("Acteco");
  }
  if (boleta && slot(doc, "Encabezado").is_object() && !slot(doc, "Encabezado").contains("Receptor"))
    slot(slot(doc, "Encabezado"), "Receptor") = json{{"RUTRecep", "66666666-6"}};
  shape_object(doc, schema, nullptr);

  // ordered_json keeps members in a vector: create every member we hold a reference to
  // before taking the references, or an insertion would leave them dangling.
  if (!has(doc, "Detalle")) slot(doc, "Detalle") = json::array();
  if (!slot(doc, "Encabezado").is_object()) slot(doc, "Encabezado") = json::object();
  for (const char* k : {"IdDoc", "Totales"})
    if (!has(slot(doc, "Encabezado"), k)) slot(slot(doc, "Encabezado"), k) = json::object();
  json& enc = slot(doc, "Encabezado");
  json& id = slot(enc, "IdDoc");
  if (!has(id, "FchEmis")) slot(id, "FchEmis") = today_date();
  if (boleta && !has(id, "IndServicio")) slot(id, "IndServicio") = 3;
  if (!boleta && !has(id, "FmaPago") && tipo != 52) {
    // A cancellation date means paid cash, a due date means credit; otherwise SII's default
    // (no FmaPago) is left alone.
    if (has(id, "FchCancel")) slot(id, "FmaPago") = 1;
    else if (has(id, "FchVenc")) slot(id, "FmaPago") = 2;
  }
  const std::string fch_emis = slot(id, "FchEmis").get<std::string>();

  json& totales = slot(enc, "Totales");
  const Money money = money_of(exports, totales);

  // Lines: numbers, and MontoItem (with a discount or surcharge given as a percentage) where the
  // input leaves it out. The totals sum the unrounded amounts.
  std::vector<long double> montos;
  montos.reserve(slot(doc, "Detalle").size());
  std::size_t n = 0;
  for (json& line : slot(doc, "Detalle")) {
    ++n;
    if (!has(line, "NroLinDet")) slot(line, "NroLinDet") = static_cast<long long>(n);
    const LineAmount a = line_amount(line, money);
    if (!a.stated) {
      if (a.desc_from_pct && a.desc > 0 && !exports) slot(line, "DescuentoMonto") = round_half_up(a.desc);
      if (a.rec_from_pct && a.rec > 0 && !exports) slot(line, "RecargoMonto") = round_half_up(a.rec);
      set_number(line, "MontoItem", a.monto, money.frac);
    }
    montos.push_back(a.monto);
  }
  if (has(doc, "DscRcgGlobal")) {
    std::size_t k = 0;
    for (json& dr : slot(doc, "DscRcgGlobal")) {
      ++k;
      if (!has(dr, "NroLinDR")) slot(dr, "NroLinDR") = static_cast<long long>(k);
    }
  }
  const Sums sums = sum_amounts(doc, montos, exempt_type, money);
  json* otra_moneda =
      has(enc, "OtraMoneda") && slot(enc, "OtraMoneda").is_object() ? &slot(enc, "OtraMoneda") : nullptr;
  fill_totals(totales, otra_moneda, sums, tipo, id, money);

  // References: number the lines; FchRef defaults to the issue date (SII requires one).
  if (has(doc, "Referencia")) {
    std::size_t k = 0;
    for (json& ref : slot(doc, "Referencia")) {
      ++k;
      if (!has(ref, "NroLinRef")) slot(ref, "NroLinRef") = static_cast<long long>(k);
      if (!boleta && !has(ref, "FchRef")) slot(ref, "FchRef") = fch_emis;
    }
  }
  if (has(doc, "SubTotInfo")) {
    std::size_t k = 0;
    for (json& sti : slot(doc, "SubTotInfo")) {
      ++k;
      if (!has(sti, "NroSTI")) slot(sti, "NroSTI") = static_cast<long long>(k);
    }
  }
  if (has(doc, "Comisiones")) {
    std::size_t k = 0;
    for (json& com : slot(doc, "Comisiones")) {
      ++k;
      if (!has(com, "NroLinCom")) slot(com, "NroLinCom") = static_cast<long long>(k);
    }
  }
  in_schema_order(doc, schema);
  return doc;
}

namespace detail {

json kept_totals(const json& totales) {
  json kept = json::object();
  if (!totales.is_object()) return kept;
  for (const char* k : {"TpoMoneda", "TasaIVA"})
    if (const json* v = member(totales, k)) slot(kept, k) = *v;
  auto it = totales.find("ImptoReten");
  if (it == totales.end()) return kept;
  // Specific taxes (diesel, gasoline...) have no rate: their stated amount stands. The list may
  // still be a single object when the document was not normalised.
  json keep_specific = json::array();
  auto keep = [&](const json& imp) {
    const TaxCode* tc = tax_code(static_cast<int>(int_of(imp.value("TipoImp", json()), -1)));
    if (tc && tc->rate < 0) keep_specific.push_back(imp);
  };
  if (it->is_array()) {
    for (const json& imp : *it) keep(imp);
  } else if (!it->is_null()) {
    keep(*it);
  }
  if (!keep_specific.empty()) kept["ImptoReten"] = std::move(keep_specific);
  return kept;
}

json totals_from_lines(const json& normalized) {
  static const json empty = json::object();
  auto member = [](const json& o, const char* key) -> const json& {
    if (!o.is_object()) return empty;
    auto it = o.find(key);
    return it != o.end() ? *it : empty;
  };
  const int tipo = read_type(normalized);
  const json& enc = member(normalized, "Encabezado");
  json totales = kept_totals(member(enc, "Totales"));
  const Money money = money_of(is_export(tipo), totales);
  std::vector<long double> montos;
  if (auto lines = normalized.find("Detalle"); lines != normalized.end())
    for (const json& line : *lines) montos.push_back(line_amount(line, money).monto);
  const Sums sums = sum_amounts(normalized, montos, is_exempt_type(tipo), money);
  // normalize() converts into OtraMoneda as well, which can fail on its own: on a copy here.
  const json& om = member(enc, "OtraMoneda");
  json otra_moneda = om.is_object() && enc.contains("OtraMoneda") ? om : json();
  fill_totals(totales, otra_moneda.is_object() ? &otra_moneda : nullptr, sums, tipo,
              member(enc, "IdDoc"), money);
  return totales;
}

}  // namespace detail

int doc_type_of(const json& normalized) { return read_type(normalized); }

long long folio_of(const json& normalized) {
  try {
    const json& v = normalized.at("Encabezado").at("IdDoc").at("Folio");
    auto n = detail::as_number(v);
    if (!n) throw DocumentError("input.type", "Encabezado.IdDoc.Folio must be a number");
    return round_half_up(*n);
  } catch (const json::exception&) {
    throw DocumentError("input.field", "Encabezado.IdDoc.Folio is required");
  }
}

}  // namespace dte
