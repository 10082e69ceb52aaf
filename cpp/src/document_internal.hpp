// Internals shared by the document_*.cpp files: the XSD-derived element tree and the number
// helpers (SII's half-up rounding, locale-free parsing and formatting).
#pragma once
#include <optional>
#include <string>
#include <string_view>
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

  const Node* find(std::string_view key) const noexcept;
  bool repeats() const noexcept { return max != 1; }
};

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

// Number at a JSON path inside an object, 0 when absent or not numeric.
long double num(const json& obj, const char* key) noexcept;
bool has(const json& obj, const char* key) noexcept;

struct TaxCode {
  int code;
  double rate;     // percent; < 0 = specific tax whose amount the input must state
  bool retention;  // VAT withheld by the buyer: subtracts from MntTotal
  bool partial;    // withholds part of the VAT (IVANoRet = IVA - withheld)
};
// Additional taxes and retentions by CodImpAdic/TipoImp; nullptr for an unknown code.
const TaxCode* tax_code(int code) noexcept;

// A tolerant integer read of a text or number (TipoImp "15", CodRef 1); `fallback` otherwise.
long long int_of(const json& v, long long fallback = 0) noexcept;

}  // namespace dte::detail
