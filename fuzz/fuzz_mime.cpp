// E-mail reception: MIME parsing (multipart nesting, transfer encodings, charsets) of raw messages
// as fetched by IMAP, and the XML sniffing of attachments.
#include <cstdint>

#include "dte/mime.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dte_fuzz::guarded("fuzz_mime", [&] {
    (void)dte::mime::parse_message(dte_fuzz::as_view(data, size));
    (void)dte::mime::looks_like_xml(dte_fuzz::as_view(data, size));
  });
  return 0;
}
