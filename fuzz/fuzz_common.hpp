// Shared by the libFuzzer targets: the contract under fuzzing is "hostile bytes give a DteError
// (or a value saying no), never a crash, a hang, a leak or any other exception type".
#pragma once
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>

#include "dte/errors.hpp"

namespace dte_fuzz {

// Runs one input through `body`. DteError is the documented way to refuse input; any other
// exception escaping the core (std::out_of_range, nlohmann::json::type_error, ...) breaks the
// contract, so it aborts and libFuzzer keeps the input as a crash.
template <typename Body>
void guarded(const char* target, Body&& body) {
  try {
    body();
  } catch (const dte::DteError&) {
    // refused with a named cause: the expected outcome for garbage
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: non-DteError exception escaped: %s: %s\n", target,
                 typeid(e).name(), e.what());
    std::abort();
  }
}

inline std::string_view as_view(const unsigned char* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

}  // namespace dte_fuzz
