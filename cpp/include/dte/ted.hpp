// TED (Timbre Electrónico DTE): the DD stamped with the CAF key, and its PDF417 barcode.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "dte/caf.hpp"
#include "dte/handles.hpp"
#include "dte/report.hpp"

namespace dte {

struct TedData {
  std::string re;    // issuer RUT
  int td = 0;        // type
  long long f = 0;   // folio
  std::string fe;    // FchEmis
  std::string rr;    // receiver RUT
  std::string rsr;   // receiver name (truncated to 40 chars here)
  std::string mnt;   // MntTotal as the document writes it (exports: decimals in their currency)
  std::string it1;   // first item name (truncated to 40 chars here)
  std::string tsted; // YYYY-MM-DDTHH:MM:SS
};

// Reads the TED data out of a <Documento>/<Exportaciones>/<Liquidacion> element.
TedData ted_data_from_document(const xmlNode* documento, std::string tsted);

// Builds and signs the TED; returns "<TED version=\"1.0\"><DD>...</DD><FRMT ...>...</FRMT></TED>"
// flattened, as UTF-8 text. The CAF must have its private key and fit re/td/f.
std::string stamp_ted(const TedData& data, const Caf& caf);

// Inserts a TED (text as stamp_ted returns it) and TmstFirma into a built Documento.
void insert_ted(xmlDoc* dte_doc, std::string_view ted_xml, std::string_view tmst_firma);

// Checks of one TED element: "ted.frmt" (FRMT over the flattened DD with DD/CAF/DA/RSAPK),
// "ted.caf" (FRMA with the keyring), "ted.consistency" (RE/TD/F/MNT/FE/RR match the document
// when `documento` is given, folio inside RNG).
std::vector<Check> verify_ted(const xmlNode* ted, const xmlNode* documento,
                              const class SiiKeyring& keyring, std::string_view subject);

// The PDF417 payload: the TED element flattened, as ISO-8859-1 bytes.
std::string ted_barcode_payload(const xmlNode* ted);
std::string ted_barcode_payload(std::string_view ted_xml);

struct BarcodeOptions {
  int ecc_level = 5;     // SII: error-correction level 5
  int columns = 0;       // 0 = let the encoder pick (SII does not fix it)
  int module_px = 2;     // X dimension in pixels
  int row_height = 3;    // row height in modules
  int quiet_zone = 2;    // modules
};
// PDF417 rendered by libzint as a PNG image (bytes); throws DteError "barcode.encode".
std::string pdf417_png(std::string_view payload, const BarcodeOptions& options = {});
// The same as SVG text (vector, for print at any resolution).
std::string pdf417_svg(std::string_view payload, const BarcodeOptions& options = {});

}  // namespace dte
