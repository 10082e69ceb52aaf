// Helpers shared by books*.cpp and rcv*.cpp: a tolerant semicolon-CSV reader and the small value
// parsers both need. Private to the core.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dte::books::detail {

struct CsvRecord {
  int line = 0;  // physical line where the record starts (1-based)
  std::vector<std::string> cells;
};

// Splits semicolon-separated text into records: strips a UTF-8 BOM, accepts LF and CRLF, honours
// double quotes (a quoted cell may hold ';' or a newline; "" inside quotes is a quote). Blank
// lines are skipped.
std::vector<CsvRecord> read_csv(std::string_view text, char separator = ';');

std::string trim(std::string_view s);

// Lower-case ASCII letters and digits only: "Monto IVA Recuperable" -> "montoivarecuperable".
// Non-ASCII bytes (accents) are dropped, so "Razón" and "Razon" differ only by the accent and
// both become "razn"/"razon"; callers list both spellings where SII varies.
std::string column_key(std::string_view header);

// Cell values SII uses for "nothing": "", "-", "null", a quoted empty string.
bool is_blank(std::string_view cell);

// Whole non-negative/negative integer with at most `max_digits` digits; nullopt otherwise.
std::optional<long long> parse_int(std::string_view cell, int max_digits = 18);
// Decimal like "19", "31.5", "2.967999999" (a comma decimal separator is accepted).
std::optional<double> parse_decimal(std::string_view cell);
// dd/mm/yyyy or yyyy-mm-dd -> "YYYY-MM-DD"; nullopt when not a real calendar date.
std::optional<std::string> parse_date(std::string_view cell);
// "dd/mm/yyyy HH:MM:SS" (or ISO) -> "YYYY-MM-DDTHH:MM:SS".
std::optional<std::string> parse_datetime(std::string_view cell);

bool is_iso_date(std::string_view s);

// Half-up rounding of amount x rate% with the rate in hundredths kept exact.
long long percent_of(long long amount, double rate);

}  // namespace dte::books::detail
