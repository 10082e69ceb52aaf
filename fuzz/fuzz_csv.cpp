// Semicolon CSVs: SII's RCV export (rcv::parse_csv) and the books' detail CSV
// (books::entries_from_csv, IECV and guías). The first byte picks the parser.
#include <cstdint>

#include "dte/books.hpp"
#include "dte/rcv.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text = dte_fuzz::as_view(data + 1, size - 1);
  dte_fuzz::guarded("fuzz_csv", [&] {
    switch (data[0] % 4) {
      case 0: (void)dte::rcv::parse_csv(text); break;
      case 1: (void)dte::rcv::parse_csv(text, "PENDIENTE"); break;
      case 2: (void)dte::books::entries_from_csv(text, "cv"); break;
      case 3: (void)dte::books::entries_from_csv(text, "guia"); break;
    }
  });
  return 0;
}
