// The document model: input JSON with SII's own field names (the same shape as the XML, see
// docs/INPUT.md) -> normalised document (defaults, line amounts, totals) -> rule findings ->
// the unsigned <Documento> XML in XSD order.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dte/handles.hpp"
#include "dte/report.hpp"

namespace dte {

using json = nlohmann::ordered_json;

// Document types we emit.
inline constexpr int kSupportedTypes[] = {33, 34, 39, 41, 43, 46, 52, 56, 61, 110, 111, 112};
bool is_supported_type(int tipo) noexcept;
bool is_boleta(int tipo) noexcept;     // 39, 41
bool is_export(int tipo) noexcept;     // 110, 111, 112
bool is_exempt_type(int tipo) noexcept;  // 34, 41, 110, 111, 112
const char* type_name(int tipo) noexcept;  // "Factura electrónica", ...

// Parses JSON text; throws DocumentError "input.json" with position on a syntax error.
json parse_input(std::string_view json_text);

// Fills what the issuer need not type: FchEmis (today), NroLinDet, MontoItem from quantities,
// prices, discounts and surcharges, Totales (MntNeto, MntExe, TasaIVA, IVA, ImptoReten,
// MntTotal) with SII's half-up rounding, boleta gross->net, lists given as single objects.
// Amounts the input already states are kept (the rules then check them). Throws DocumentError
// "input.type" / "input.field" for values of the wrong type.
json normalize(const json& input);

// Every condition SII is known to reject, on a normalised document. `context` may narrow checks.
struct RuleContext {
  std::string today;             // YYYY-MM-DD; empty = today in Chile
  long long caf_folio_from = 0;  // 0 = do not check the folio against a CAF
  long long caf_folio_to = 0;
  int caf_doc_type = 0;
  std::string caf_issuer_rut;
  std::string caf_expires_on;    // YYYY-MM-DD or ""
};
std::vector<Finding> check_rules(const json& normalized, const RuleContext& context = {});

// Builds <DTE version="1.0" xmlns="http://www.sii.cl/SiiDte"><Documento ID="..."> ... with every
// element in XSD order, text truncated to SII's lengths, ready for the TED (inserted before
// TmstFirma by the caller via insert_ted()). `doc_id` defaults to "T{TipoDTE}F{Folio}".
XmlDocPtr build_document_xml(const json& normalized, std::string doc_id = {});

// Helpers the TED and envelope need from a normalised document.
int doc_type_of(const json& normalized);
long long folio_of(const json& normalized);

}  // namespace dte
