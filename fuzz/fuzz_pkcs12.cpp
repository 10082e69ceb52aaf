// PKCS#12 loading (DER, legacy RC2/3DES too) with a fixed password, then inspection of what loaded.
// Seeds are testkit bundles made with the same password (see make_seeds.py).
#include <cstdint>

#include "dte/cert.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dte_fuzz::guarded("fuzz_pkcs12", [&] {
    dte::Certificate cert = dte::Certificate::from_pkcs12(dte_fuzz::as_view(data, size), "fuzz");
    (void)cert.info();
    (void)cert.cert_base64();
    (void)cert.valid_at("2024-01-01T00:00:00");
    if (cert.has_private_key()) {
      (void)cert.rsa_modulus_base64();
      (void)cert.rsa_exponent_base64();
    }
  });
  dte_fuzz::guarded("fuzz_pkcs12/public_only", [&] {
    (void)dte::Certificate::public_only(dte_fuzz::as_view(data, size)).info();
  });
  return 0;
}
