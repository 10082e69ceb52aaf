// DTE / EnvioDTE / EnvioBOLETA / RespuestaDTE parsing and full verification (XMLDSig, TED, CAF,
// certificate), without schemas (fuzz_schema covers those) so each run stays fast.
#include <cstdint>
#include <fstream>
#include <sstream>

#include "dte/verify.hpp"
#include "fuzz_common.hpp"

namespace {

const dte::SiiKeyring& keyring() {
  static const dte::SiiKeyring ring = [] {
    dte::SiiKeyring r;
    // SII's certification CAF key when the shared kit is present: the CAF checks then run
    // their whole path on seeds made from SII samples.
    const std::string dir = dte_fuzz::env_or("DTE_SHARED_DIR", DTE_SHARED_DIR) + "/certs";
    for (int idk : {100, 300}) {
      std::ifstream in(dir + "/sii-caf-idk" + std::to_string(idk) + ".cer", std::ios::binary);
      if (!in) continue;
      std::stringstream ss;
      ss << in.rdbuf();
      try {
        r.add_pem(idk, ss.str());
      } catch (const dte::DteError&) {
      }
    }
    return r;
  }();
  return ring;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dte_fuzz::guarded("fuzz_verify", [&] {
    dte::VerifyOptions options;
    options.keyring = &keyring();
    options.check_cert_validity = (size % 2) == 0;
    dte::VerifyReport report = dte::verify_document(dte_fuzz::as_view(data, size), options);
    (void)report.ok();
  });
  return 0;
}
