// The document input JSON: parse, normalise (amounts, rounding, lists), SII's rules, and the DTE
// XML build with truncation to SII's lengths.
#include <cstdint>

#include "dte/document.hpp"
#include "dte/xml.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dte_fuzz::guarded("fuzz_input", [&] {
    dte::json input = dte::parse_input(dte_fuzz::as_view(data, size));
    dte::json normalized = dte::normalize(input);
    dte::RuleContext context;
    context.today = "2025-01-15";
    (void)dte::check_rules(normalized, context);
    dte::XmlDocPtr doc = dte::build_document_xml(normalized);
    (void)dte::serialize(doc.get());
  });
  return 0;
}
