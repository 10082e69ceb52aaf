// Books SII still takes as XML: the IECV (LibroCompraVenta, purchases and sales), the Libro de
// Guías and the boleta daily summary (ConsumoFolios, RCOF/RVD). Input is JSON with the XSD's own
// field names, like the document model; the summaries (ResumenPeriodo, Resumen) are always
// computed from the detail, so they cannot disagree with it. Output is signed over the inner ID
// element (EnvioLibro / DocumentoConsumoFolios), ISO-8859-1 bytes with declaration.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dte/cert.hpp"
#include "dte/schema.hpp"

namespace dte::books {

using json = nlohmann::ordered_json;

// One problem of one CSV row: `row` is the physical line in the file (header = 1), `column` the
// header name of the offending cell ("" for the whole row).
struct RowIssue {
  int row = 0;
  std::string column;
  std::string message;
};

struct SignOptions {
  std::string tmst;                  // TmstFirma / TmstFirmaEnv; empty = now (Chile)
  const SchemaSet* schemas = nullptr;  // when set, the signed bytes must validate, else
                                       // DocumentError "libro.schema" listing the issues
};

// ---- IECV (LibroCV_v10.xsd) ----
// {"Caratula": {"RutEmisorLibro", "RutEnvia" (optional: the certificate's RUT), "PeriodoTributario"
//   "YYYY-MM", "FchResol", "NroResol", "TipoOperacion" COMPRA|VENTA, "TipoLibro"
//   MENSUAL|ESPECIAL|RECTIFICA, "TipoEnvio" TOTAL|PARCIAL|FINAL, "NroSegmento" (segments),
//   "FolioNotificacion" (ESPECIAL), "CodAutRec"
//   (RECTIFICA)}, "FctProp" (optional, purchases with IVA de uso común, percent),
//  "Detalle": [{"TpoDoc", "NroDoc", "TasaImp", "FchDoc", "RUTDoc", "RznSoc", "MntExe", "MntNeto",
//   "MntIVA", "IVANoRec": [{"CodIVANoRec", "MntIVANoRec"}], "OtrosImp": [{"CodImp", "TasaImp",
//   "MntImp"}], "MntTotal", ... every Detalle field of the XSD}]}
// normalize_libro_cv fills MntIVA (MntNeto x TasaImp, half up; into IVANoRec when a no-recoverable
// code has no amount), OtrosImp.MntImp from its rate, MntTotal when absent, and adds the computed
// "ResumenPeriodo": [{"TpoDoc", "TotDoc", ...}] in XSD order. Throws DocumentError
// "libro.caratula" / "libro.field" / "libro.unsupported" naming the field.
json normalize_libro_cv(const json& input);
std::string sign_libro_cv(const json& input, const Certificate& cert, const SignOptions& options = {});

// Segmented sends (Caratula TipoEnvio PARCIAL/FINAL with NroSegmento, for books too big for one
// upload): each segment carries "ResumenSegmento" (TotalesSegmento: the totals of its own
// detail); the FINAL one also "ResumenPeriodo", the totals of the whole period, which
// normalize_libro_cv takes from the FINAL segment's input (segment_libro_cv computes them).
// segment_libro_cv cuts a book into inputs of at most `max_detail` Detalle entries each, numbered
// from 1, the last one FINAL; a book that fits in one comes back as one TOTAL input. Each segment
// is signed on its own (ID "LV_2024-05_S2").
std::vector<json> segment_libro_cv(const json& input, std::size_t max_detail);
std::vector<std::string> sign_libro_cv_segments(const json& input, const Certificate& cert,
                                                std::size_t max_detail, const SignOptions& options = {});

// ---- Libro de Guías (LibroGuia_v10.xsd) ----
// {"Caratula": {"RutEmisorLibro", "RutEnvia", "PeriodoTributario", "FchResol", "NroResol",
//   "TipoLibro" ESPECIAL, "TipoEnvio" TOTAL|PARCIAL|FINAL, "NroSegmento", "FolioNotificacion"},
//  "Detalle": [{"Folio", "Anulado" 1|2|3, "Operacion", "TpoOper", "FchDoc", "RUTDoc", "RznSoc",
//   "MntNeto", "TasaImp", "IVA", "MntTotal", "MntModificado", "TpoDocRef", "FolioDocRef", "FchDocRef"}]}
json normalize_libro_guia(const json& input);
std::string sign_libro_guia(const json& input, const Certificate& cert, const SignOptions& options = {});
// The same segmentation for the Libro de Guías (ResumenSegmento / ResumenPeriodo).
std::vector<json> segment_libro_guia(const json& input, std::size_t max_detail);
std::vector<std::string> sign_libro_guia_segments(const json& input, const Certificate& cert,
                                                  std::size_t max_detail, const SignOptions& options = {});

// ---- ConsumoFolios / RVD (ConsumoFolio_v10.xsd) ----
// {"Caratula": {"RutEmisor", "RutEnvia", "FchResol", "NroResol", "FchInicio", "FchFinal"
//   (default FchInicio), "SecEnvio" (default 1), "Correlativo"},
//  "Documentos": [{"TipoDTE" 39|41|61, "Folio", "MntTotal", "MntExe", "MntNeto", "MntIVA",
//   "TasaIVA"}],          boletas carry gross totals: net and IVA are derived when absent
//  "Anulados": [{"TipoDTE", "Folio"}],
//  "Tipos": [39]}         types reported even without movement (a day without sales: zeros)
// Adds "Resumen": [{"TipoDocumento", "MntNeto", "MntIva", "TasaIVA", "MntExento", "MntTotal",
// "FoliosEmitidos", "FoliosAnulados", "FoliosUtilizados", "RangoUtilizados": [{"Inicial",
// "Final"}], "RangoAnulados": [...]}].
json normalize_consumo_folios(const json& input);
std::string sign_consumo_folios(const json& input, const Certificate& cert,
                                const SignOptions& options = {});

// ---- CSV -> entries ----
// Semicolon CSV with a header row: XSD column names (TpoDoc;NroDoc;...; a TasaImp after CodImp
// belongs to OtrosImp), or LibreDTE's purchase-book layout ("Tipo Doc;Folio;Rut Contraparte;...").
// `kind`: "cv" (IECV detail) or "guia". Bad cells give RowIssues; their rows are left out.
struct CsvEntries {
  json detalle = json::array();
  json extra = json::object();  // book-level values found in the rows ("FctProp")
  std::vector<RowIssue> issues;
};
CsvEntries entries_from_csv(std::string_view csv, std::string_view kind = "cv");

}  // namespace dte::books
