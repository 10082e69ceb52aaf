// Private to rcv_download.cpp and its fuzz target: how one answer of SII's RCV facade is read,
// apart from the HTTP exchange.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "dte/rcv.hpp"

namespace dte::rcv::detail {

// HTTP status and body judged (token expiry, SII's error codes, HTML pages instead of JSON) and
// the JSON object returned; throws what download() throws (SiiTransportError, SiiAuthError,
// SiiRejected, SiiMalformedAnswer).
nlohmann::json read_answer(long status, std::string_view body, const std::string& op);

// getResumen's rows (types with a positive code).
std::vector<TypeSummary> summary_rows(const nlohmann::json& resumen);

// An export's `data`: the CSV lines (a list of lines or one text). Throws SiiMalformedAnswer.
std::vector<std::string> export_lines(const nlohmann::json& answer);

}  // namespace dte::rcv::detail
