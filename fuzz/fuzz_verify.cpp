// DTE / EnvioDTE / EnvioBOLETA / RespuestaDTE parsing and full verification (XMLDSig, TED, CAF,
// certificate), without schemas (fuzz_schema covers those) so each run stays fast. Differential:
// the report with the streaming verifier allowed must be the DOM verifier's, check for check
// (the streaming pass answers only what it fully understands; anything else is the DOM's).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

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

std::string dump(const dte::VerifyReport& r) {
  std::string out = r.kind + "\n";
  for (const dte::Check& c : r.checks)
    out += c.name + " [" + c.subject + "] " + dte::to_string(c.status) + " " + c.reason + "\n";
  for (const dte::VerifiedDocument& d : r.documents)
    out += d.id + " " + std::to_string(d.doc_type) + " " + std::to_string(d.folio) + " " +
           d.issuer_rut + " " + d.receiver_rut + " " + d.issue_date + " " + std::to_string(d.total) +
           " " + d.signed_at + (d.ok ? " ok\n" : " not-ok\n");
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dte_fuzz::guarded("fuzz_verify", [&] {
    dte::VerifyOptions options;
    options.keyring = &keyring();
    options.check_cert_validity = (size % 2) == 0;
    dte::VerifyReport report = dte::verify_document(dte_fuzz::as_view(data, size), options);
    (void)report.ok();
    options.streaming = false;
    dte::VerifyReport dom = dte::verify_document(dte_fuzz::as_view(data, size), options);
    if (dump(report) != dump(dom)) {
      std::fprintf(stderr, "fuzz_verify: streaming and DOM reports differ\n--- streaming\n%s--- dom\n%s",
                   dump(report).c_str(), dump(dom).c_str());
      std::abort();
    }
  });
  return 0;
}
