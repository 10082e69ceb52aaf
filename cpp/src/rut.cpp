#include "dte/rut.hpp"

#include <cctype>

#include "dte/errors.hpp"

namespace dte {

char Rut::check_digit(std::uint32_t body) noexcept {
  unsigned sum = 0;
  unsigned factor = 2;
  while (body > 0) {
    sum += (body % 10) * factor;
    body /= 10;
    factor = factor == 7 ? 2 : factor + 1;
  }
  unsigned dv = 11 - (sum % 11);
  if (dv == 11) return '0';
  if (dv == 10) return 'K';
  return static_cast<char>('0' + dv);
}

Rut::Rut(std::uint32_t body) : body_(body), dv_(check_digit(body)) {
  if (body == 0) throw RutError("rut.invalid", "RUT body must be positive");
}

std::optional<Rut> Rut::try_parse(std::string_view text) noexcept {
  std::string digits;
  for (char c : text) {
    if (c == '.' || c == '-' || c == ' ') continue;
    digits.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  if (digits.size() < 2 || digits.size() > 9) return std::nullopt;
  char dv = digits.back();
  digits.pop_back();
  std::uint64_t body = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    body = body * 10 + static_cast<unsigned>(c - '0');
  }
  if (body == 0 || body > 99999999ULL) return std::nullopt;
  if (!((dv >= '0' && dv <= '9') || dv == 'K')) return std::nullopt;
  if (check_digit(static_cast<std::uint32_t>(body)) != dv) return std::nullopt;
  return Rut(static_cast<std::uint32_t>(body), dv);
}

Rut Rut::parse(std::string_view text) {
  if (auto r = try_parse(text)) return *r;
  // Tell a wrong check digit apart from garbage: it is the most common typing mistake.
  std::string digits;
  for (char c : text)
    if (c != '.' && c != '-' && c != ' ') digits.push_back(c);
  bool numeric = digits.size() >= 2;
  for (std::size_t i = 0; i + 1 < digits.size(); ++i)
    if (digits[i] < '0' || digits[i] > '9') numeric = false;
  if (numeric && digits.size() <= 9) {
    std::uint64_t body = std::stoull(digits.substr(0, digits.size() - 1));
    if (body > 0 && body <= 99999999ULL) {
      throw RutError("rut.check_digit",
                     "RUT '" + std::string(text) + "' has a wrong check digit (expected " +
                         std::string(1, check_digit(static_cast<std::uint32_t>(body))) + ")");
    }
  }
  throw RutError("rut.invalid", "'" + std::string(text) + "' is not a RUT (expected 12345678-5)");
}

std::string Rut::str() const { return std::to_string(body_) + "-" + std::string(1, dv_); }

std::string Rut::formatted() const {
  std::string b = std::to_string(body_);
  std::string out;
  int n = 0;
  for (auto it = b.rbegin(); it != b.rend(); ++it) {
    if (n && n % 3 == 0) out.insert(out.begin(), '.');
    out.insert(out.begin(), *it);
    ++n;
  }
  return out + "-" + std::string(1, dv_);
}

}  // namespace dte
