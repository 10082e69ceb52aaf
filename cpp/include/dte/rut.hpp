// Chilean RUT: parse, normalise, check digit, format.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dte {

class Rut {
 public:
  // Accepts "12.345.678-5", "12345678-5", "123456785", lower-case k; throws RutError on a
  // malformed value or a wrong check digit.
  static Rut parse(std::string_view text);
  static std::optional<Rut> try_parse(std::string_view text) noexcept;
  static char check_digit(std::uint32_t body) noexcept;  // '0'..'9' or 'K'

  explicit Rut(std::uint32_t body);  // computes the check digit

  std::uint32_t body() const noexcept { return body_; }
  char dv() const noexcept { return dv_; }
  std::string str() const;        // "12345678-5" (SII's form: no dots, upper-case K)
  std::string formatted() const;  // "12.345.678-5"
  bool operator==(const Rut&) const = default;

 private:
  Rut(std::uint32_t body, char dv) : body_(body), dv_(dv) {}
  std::uint32_t body_;
  char dv_;
};

}  // namespace dte
