// XSD validation with SII's schemas (root-based schema choice, synthesised EnvioBOLETA for bare
// boletas). Needs the XSDs: DTE_XSD_DIR, else <DTE_SHARED_DIR>/xsd; without them it does nothing.
#include <cstdint>
#include <filesystem>
#include <memory>

#include "dte/schema.hpp"
#include "fuzz_common.hpp"

namespace {

std::shared_ptr<dte::SchemaSet> schemas() {
  static std::shared_ptr<dte::SchemaSet> set = []() -> std::shared_ptr<dte::SchemaSet> {
    const std::string dir =
        dte_fuzz::env_or("DTE_XSD_DIR", dte_fuzz::env_or("DTE_SHARED_DIR", DTE_SHARED_DIR) + "/xsd");
    if (!std::filesystem::exists(dir + "/DTE_v10.xsd")) {
      std::fprintf(stderr, "fuzz_schema: no XSDs in %s, nothing to fuzz\n", dir.c_str());
      return nullptr;
    }
    return dte::SchemaSet::shared(dir);
  }();
  return set;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto set = schemas();
  if (!set) return 0;
  dte_fuzz::guarded("fuzz_schema", [&] {
    dte::ValidationResult r = set->validate_bytes(dte_fuzz::as_view(data, size));
    (void)r;
  });
  return 0;
}
