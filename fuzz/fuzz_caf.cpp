// CAF (AUTORIZACION) parsing, its checks, and the flattening SII signs.
#include <cstdint>

#include "dte/caf.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dte_fuzz::guarded("fuzz_caf", [&] {
    dte::Caf caf = dte::Caf::parse(dte_fuzz::as_view(data, size));
    static const dte::SiiKeyring empty;
    (void)caf.check(empty);
    const auto& info = caf.info();
    try {
      caf.check_fits(info.issuer_rut, info.doc_type, info.folio_from, "2020-01-01");
    } catch (const dte::DteError&) {
    }
    if (info.has_private_key) {
      std::string sig = caf.sign("fuzz");
      (void)caf.verify_signature("fuzz", sig);
    }
  });
  return 0;
}
