// Internals shared by the document_*.cpp files: the XSD-derived element tree and the number
// helpers (SII's half-up rounding, locale-free parsing and formatting).
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dte/document.hpp"

namespace dte::detail {

enum class Kind { kGroup, kText, kInt, kDec, kDate };

// One element of a Documento variant. `max` 0 = unbounded. `positive`: the XSD type refuses 0
// (positiveInteger, Dec types with minInclusive 0.0001...), so an optional zero is left out.
struct Node {
  const char* name;
  int min;
  int max;
  Kind kind;
  int max_len;  // characters; 0 = no length limit to apply (codes, enumerations)
  int frac;     // fraction digits allowed (kDec)
  bool positive;
  std::vector<Node> children;
  // find()'s hash table over the children's names (input keys are looked up in every pass over
  // a document): open addressing, a power of two in size, each slot a name's hash and its
  // position in `children` plus one (0: empty).
  std::vector<std::pair<std::uint32_t, std::uint32_t>> slots;
  std::size_t name_len = 0;  // strlen(name): names are compared with JSON keys all the time

  std::string_view key() const noexcept { return {name, name_len}; }
  const Node* find(std::string_view key) const noexcept;
  bool repeats() const noexcept { return max != 1; }
};

// Where a field sits, as a chain through the frames of a walk over a document: spelt out
// ("Detalle[0].NmbItem") only when a message names it, which most fields never need.
struct FieldPath {
  const FieldPath* parent = nullptr;  // nullptr: a member of the document itself
  std::string_view key;               // a member's name, unless `is_index`
  std::size_t index = 0;              // a list item's position
  bool is_index = false;
};
std::string path_text(const FieldPath* path);  // "" for the document itself (nullptr)

// The Documento (or Liquidacion / Exportaciones / boleta Documento) tree for a TipoDTE.
const Node& schema_for(int tipo);
inline const char* root_name(int tipo) {
  if (tipo == 43) return "Liquidacion";
  if (tipo == 110 || tipo == 111 || tipo == 112) return "Exportaciones";
  return "Documento";
}

// A JSON number, or a string holding a plain decimal number ("104090", "2.5", "-3");
// nullopt otherwise. Locale-independent.
std::optional<long double> as_number(const json& v) noexcept;
std::optional<long double> parse_decimal(std::string_view text) noexcept;

// SII rounds half away from zero (PHP round()); the tolerance absorbs binary noise such as
// 1071/1.19 = 899.99999999.
long long round_half_up(long double x);  // throws DocumentError beyond long long
long double round_to(long double x, int frac);

// Plain decimal text: '.' separator, no thousands separators, no trailing zeros, at most
// `frac` fraction digits.
std::string format_number(long double x, int frac);

// JSON value as element text (numbers formatted as above).
std::string scalar_text(const json& v, const Node& node);

// Text reduced to what ISO-8859-1 holds, then cut to `max_len` characters (0 = no limit).
std::string latin1_safe_text(const std::string& text, int max_len);
// latin1_safe(s) == s, without building the copy: every character is one latin1_safe keeps
// (printable ASCII, tab, newline, or a two-byte sequence of U+00A0..U+00FF) and none is cut
// off. `chars`, when given, receives the number of characters.
bool latin1_unchanged(std::string_view s, std::size_t* chars = nullptr) noexcept;

// The value of up to 15 decimal digits and nothing else (a folio, a type, a whole amount): exact
// as a double too, so callers can skip strtod for the usual text. nullopt for anything else.
inline std::optional<long long> plain_digits(std::string_view s) noexcept {
  if (s.empty() || s.size() > 15) return std::nullopt;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// The member `key` of an object; nullptr when absent or `obj` is not an object. json::find
// with a C string measures the string again at every member it compares.
inline const json* member(const json& obj, std::string_view key) noexcept {
  if (!obj.is_object()) return nullptr;
  for (const auto& m : obj.get_ref<const json::object_t&>())
    if (m.first.size() == key.size() &&
        (key.empty() || (m.first[0] == key[0] &&
                         std::memcmp(m.first.data(), key.data(), key.size()) == 0)))
      return &m.second;
  return nullptr;
}

// The members `keys` of an object, found in one pass over it (nullptr: absent): what member()
// gives for each, and num() as detail::num reads it. For code that reads several members of the
// same object (a line, Totales).
class Picked {
 public:
  static constexpr std::size_t kMax = 10;
  template <std::size_t N>
  Picked(const json& obj, const std::array<std::string_view, N>& keys) {
    static_assert(N <= kMax);
    if (!obj.is_object()) return;
    for (const auto& m : obj.get_ref<const json::object_t&>()) {
      for (std::size_t k = 0; k < N; ++k) {
        if (!at_[k] && m.first.size() == keys[k].size() && m.first == keys[k]) {
          at_[k] = &m.second;
          break;
        }
      }
    }
  }
  const json* operator[](std::size_t k) const { return at_[k]; }
  bool has(std::size_t k) const { return at_[k] != nullptr; }
  long double num(std::size_t k) const { return at_[k] ? as_number(*at_[k]).value_or(0) : 0; }

 private:
  std::array<const json*, kMax> at_{};
};

// Number at a JSON path inside an object, 0 when absent or not numeric.
long double num(const json& obj, std::string_view key) noexcept;
inline bool has(const json& obj, std::string_view key) noexcept { return member(obj, key); }

struct TaxCode {
  int code;
  double rate;     // percent; < 0 = specific tax whose amount the input must state
  bool retention;  // VAT withheld by the buyer: subtracts from MntTotal
  bool partial;    // withholds part of the VAT (IVANoRet = IVA - withheld)
};
// Additional taxes and retentions by CodImpAdic/TipoImp; nullptr for an unknown code.
const TaxCode* tax_code(int code) noexcept;

// A tolerant integer read of a text or number (TipoImp "15", CodRef 1); `fallback` otherwise.
// Throws round_half_up()'s DocumentError for a number beyond its range (1e30): not noexcept,
// which turned that error into std::terminate.
long long int_of(const json& v, long long fallback = 0);

// normalize() of a document the caller gives up (parse_input()'s result): no copy to work on.
json normalize(json&& input);

// Totales as a re-normalisation would work them out from the lines alone: the document's
// Totales reduced to kept_totals(), then filled by normalize()'s own sums. `normalized` must be
// normalize()'s output (shapes, line amounts); throws what normalize() would.
json totals_from_lines(const json& normalized);
// What of a stated Totales the lines cannot give: TpoMoneda, TasaIVA and the amounts of specific
// taxes (rate-less codes) in ImptoReten.
json kept_totals(const json& totales);

// check_rules() for a document that normalize() has just returned, unchanged: the totals the
// lines give come from totals_from_lines() instead of normalising a copy again.
std::vector<Finding> check_normalized_rules(const json& normalized, const RuleContext& context);

}  // namespace dte::detail
