// XSD validation with SII's schemas, each compiled once and shared between threads.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "dte/handles.hpp"
#include "dte/report.hpp"
#include "dte/xml.hpp"

namespace dte {

namespace detail {
class FastSchema;
}

class SchemaSet {
 public:
  // `dir` holds SII's XSDs (DTE_v10.xsd, EnvioDTE_v10.xsd, ...). Throws SchemaError
  // "schema.dir_missing" when the folder does not exist.
  explicit SchemaSet(std::string dir);
  // `fast_validator` false: libxml2 validates every document alone (the reference the tests
  // compare the fast validator with). The one-argument form enables it unless DTE_XSD_FAST=0.
  SchemaSet(std::string dir, bool fast_validator);

  // One shared instance per folder (compiled schemas live as long as the process).
  static std::shared_ptr<SchemaSet> shared(const std::string& dir);

  const std::string& dir() const noexcept { return dir_; }

  // The compiled XSD SII declares for a root element of this local name, and its file name;
  // nullptr when none does. (validate() checks a bare boleta <DTE> in a synthesised envelope
  // instead: callers that stream must leave those to it.)
  xmlSchema* schema_for_root(std::string_view root_local, std::string* xsd_file,
                             const detail::FastSchema** fast = nullptr) const;

  // The accept-only fast validator's tables for an XSD (cpp/src/fast_schema.hpp), compiled
  // with it; nullptr when the XSD uses more than the fast validator models, or when the
  // environment sets DTE_XSD_FAST=0. A document it accepts is valid; any other goes to libxml2.
  const detail::FastSchema* fast_schema(const std::string& xsd_file) const;

  // Picks the XSD from the root element (DTE, EnvioDTE, EnvioBOLETA, RespuestaDTE,
  // EnvioRecibos, LibroCompraVenta, LibroGuia, ConsumoFolios, AEC...). A bare boleta <DTE>
  // (39/41) is validated inside a synthesised EnvioBOLETA, since SII's schema only declares it
  // there (ValidationResult.schema then says "EnvioBOLETA_v11.xsd (synthesised envelope)" and
  // issues carry the lines and paths of the caller's document). Throws SchemaError
  // "schema.unknown_root" / "schema.compile". XSDs may include only files of the same folder
  // (checked before compiling: the schema parser must never reach the network).
  ValidationResult validate(xmlDoc* doc) const;
  ValidationResult validate_bytes(std::string_view bytes, const ParseLimits& limits = {}) const;
  // Validates against a named XSD file of the folder. Throws SchemaError "schema.file_missing"
  // when the folder has no such file (or an XSD it includes).
  ValidationResult validate_with(xmlDoc* doc, const std::string& xsd_file) const;

 private:
  // Compiles on first use; `fast`, when given, receives the fast validator's tables.
  xmlSchema* compiled(const std::string& xsd_file, const detail::FastSchema** fast = nullptr) const;
  std::string dir_;
  mutable std::mutex mu_;
  struct Compiled {
    XmlSchemaPtr schema;
    std::shared_ptr<const detail::FastSchema> fast;  // null: libxml2 validates alone
  };
  mutable std::map<std::string, Compiled> cache_;
  bool fast_enabled_ = true;
};

}  // namespace dte
