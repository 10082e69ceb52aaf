// Outcomes that are values, not exceptions: checks of a verification, rule-engine findings,
// schema issues.
#pragma once
#include <string>
#include <vector>

namespace dte {

enum class CheckStatus { kPass, kFail, kSkip };

inline const char* to_string(CheckStatus s) noexcept {
  switch (s) {
    case CheckStatus::kPass: return "pass";
    case CheckStatus::kFail: return "fail";
    case CheckStatus::kSkip: return "skip";
  }
  return "?";
}

// One check of a verification. `name` is stable ("dte.signature", "ted.frmt", "caf.sii_signature",
// "envelope.signature", "schema", "cert.validity", ...); `subject` says which part ("SetDoc",
// "T33F60"); `reason` explains a failure or a skip in plain words.
struct Check {
  std::string name;
  std::string subject;
  CheckStatus status = CheckStatus::kPass;
  std::string reason;
};

// A rule-engine finding: what SII would reject (error) or likely object to (warning), naming the
// field to fix as a path in the input ("Encabezado.Totales.MntTotal", "Detalle[2].QtyItem").
struct Finding {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string code;     // stable, e.g. "totals.mnt_total_mismatch"
  std::string field;
  std::string message;  // Spanish-free plain English; the addon translates by code
};

inline const char* to_string(Finding::Severity s) noexcept {
  return s == Finding::Severity::kError ? "error" : "warning";
}

// One schema violation, with the line in the validated bytes and the element path.
struct SchemaIssue {
  int line = 0;
  std::string path;     // "/EnvioDTE/SetDTE/DTE[1]/Documento/Encabezado/Totales/MntTotal"
  std::string message;
};

struct ValidationResult {
  bool valid = false;
  std::string schema;   // file name of the XSD used ("EnvioDTE_v10.xsd")
  std::vector<SchemaIssue> errors;
};

}  // namespace dte
