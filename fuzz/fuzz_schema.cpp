// XSD validation with SII's schemas (root-based schema choice, synthesised EnvioBOLETA for bare
// boletas). Needs the XSDs: DTE_XSD_DIR, else <DTE_SHARED_DIR>/xsd; without them it does nothing.
// Differential: the fast validator (cpp/src/fast_schema.cpp) may only accept what libxml2
// accepts, so a set with it must give exactly the verdict and issues of libxml2 alone.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "dte/schema.hpp"
#include "fuzz_common.hpp"

namespace {

std::string dump(const dte::ValidationResult& r) {
  std::string out = (r.valid ? "valid " : "invalid ") + r.schema + "\n";
  for (const dte::SchemaIssue& i : r.errors)
    out += std::to_string(i.line) + " " + i.path + ": " + i.message + "\n";
  return out;
}

std::shared_ptr<dte::SchemaSet> schemas(bool fast) {
  static std::shared_ptr<dte::SchemaSet> reference;
  static std::shared_ptr<dte::SchemaSet> set = []() -> std::shared_ptr<dte::SchemaSet> {
    const std::string dir =
        dte_fuzz::env_or("DTE_XSD_DIR", dte_fuzz::env_or("DTE_SHARED_DIR", DTE_SHARED_DIR) + "/xsd");
    if (!std::filesystem::exists(dir + "/DTE_v10.xsd")) {
      std::fprintf(stderr, "fuzz_schema: no XSDs in %s, nothing to fuzz\n", dir.c_str());
      return nullptr;
    }
    reference = std::make_shared<dte::SchemaSet>(dir, false);
    return std::make_shared<dte::SchemaSet>(dir, true);
  }();
  return fast ? set : reference;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto set = schemas(true);
  if (!set) return 0;
  dte_fuzz::guarded("fuzz_schema", [&] {
    const std::string_view bytes = dte_fuzz::as_view(data, size);
    dte::ValidationResult r = set->validate_bytes(bytes);
    dte::ValidationResult ref = schemas(false)->validate_bytes(bytes);
    if (dump(r) != dump(ref)) {
      std::fprintf(stderr, "fast validator disagrees with libxml2:\n%s---\n%s", dump(r).c_str(),
                   dump(ref).c_str());
      std::abort();
    }
  });
  return 0;
}
