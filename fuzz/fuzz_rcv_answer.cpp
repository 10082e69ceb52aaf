// Answers of SII's RCV facade (rcv_download.cpp) as download() reads them: the HTTP status (first
// byte picks one of a few), the body judged and parsed as JSON, getResumen's rows, an export's
// CSV lines and those lines through parse_csv.
#include <cstdint>
#include <string>

#include "../cpp/src/rcv_internal.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr long kStatus[] = {200, 200, 200, 200, 401, 403, 429, 500, 302, 404};
  const long status = kStatus[data[0] % 10];
  const std::string_view body = dte_fuzz::as_view(data + 1, size - 1);
  dte_fuzz::guarded("fuzz_rcv_answer", [&] {
    nlohmann::json answer = dte::rcv::detail::read_answer(status, body, "getDetalleCompraExport");
    (void)dte::rcv::detail::summary_rows(answer);
    std::string csv;
    for (const std::string& line : dte::rcv::detail::export_lines(answer)) csv += line + "\n";
    (void)dte::rcv::parse_csv(csv, data[0] % 2 ? "PENDIENTE" : "");
  });
  return 0;
}
