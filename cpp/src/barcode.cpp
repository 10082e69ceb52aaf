// PDF417 of the TED with libzint. zint 2.11 writes PNG only to files, so the raster is taken
// from ZBarcode_Buffer and encoded with libpng's simplified (setjmp-free) API instead.
#include <png.h>
#include <zint.h>

#include <cstdio>
#include <memory>

#include "dte/errors.hpp"
#include "dte/ted.hpp"

namespace dte {
namespace {

using ZintPtr = std::unique_ptr<zint_symbol, CDeleter<ZBarcode_Delete>>;

void png_image_release(png_image* image) noexcept { png_image_free(image); }

ZintPtr encode_pdf417(std::string_view payload, const BarcodeOptions& o) {
  if (payload.empty()) throw DteError("barcode.encode", "PDF417 payload is empty");
  if (o.ecc_level < 0 || o.ecc_level > 8)
    throw DteError("barcode.encode", "PDF417 error-correction level must be 0-8, got " +
                                         std::to_string(o.ecc_level));
  if (o.columns < 0 || o.columns > 30)
    throw DteError("barcode.encode", "PDF417 columns must be 0-30, got " + std::to_string(o.columns));
  if (o.module_px < 1 || o.row_height < 1 || o.quiet_zone < 0)
    throw DteError("barcode.encode", "PDF417 module size and row height must be positive");
  ZintPtr sym(ZBarcode_Create());
  if (!sym) throw DteError("barcode.encode", "cannot allocate a zint symbol");
  sym->symbology = BARCODE_PDF417;
  sym->option_1 = o.ecc_level;
  sym->option_2 = o.columns;
  // The payload is already ISO-8859-1 bytes: binary mode encodes them as they are, no ECI.
  sym->input_mode = DATA_MODE;
  sym->show_hrt = 0;
  sym->whitespace_width = o.quiet_zone;
  sym->whitespace_height = o.quiet_zone;
  int rc = ZBarcode_Encode(sym.get(), reinterpret_cast<const unsigned char*>(payload.data()),
                           static_cast<int>(payload.size()));
  if (rc >= ZINT_ERROR)
    throw DteError("barcode.encode", std::string("PDF417 encoding failed: ") + sym->errtxt);
  sym->height = static_cast<float>(sym->rows * o.row_height);
  return sym;
}

}  // namespace

std::string pdf417_png(std::string_view payload, const BarcodeOptions& options) {
  ZintPtr sym = encode_pdf417(payload, options);
  // zint's raster scale 0.5 is one pixel per module.
  sym->scale = 0.5f * static_cast<float>(options.module_px);
  int rc = ZBarcode_Buffer(sym.get(), 0);
  if (rc >= ZINT_ERROR || !sym->bitmap)
    throw DteError("barcode.encode", std::string("PDF417 rendering failed: ") + sym->errtxt);
  const int w = sym->bitmap_width;
  const int h = sym->bitmap_height;
  std::string gray(static_cast<std::size_t>(w) * static_cast<std::size_t>(h), '\0');
  for (std::size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<char>(sym->bitmap[i * 3]);

  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(w);
  image.height = static_cast<png_uint_32>(h);
  image.format = PNG_FORMAT_GRAY;
  std::unique_ptr<png_image, CDeleter<png_image_release>> guard(&image);
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, gray.data(), 0, nullptr) || size == 0)
    throw DteError("barcode.encode", std::string("PNG encoding failed: ") + image.message);
  std::string png(size, '\0');
  if (!png_image_write_to_memory(&image, png.data(), &size, 0, gray.data(), 0, nullptr))
    throw DteError("barcode.encode", std::string("PNG encoding failed: ") + image.message);
  png.resize(size);
  return png;
}

std::string pdf417_svg(std::string_view payload, const BarcodeOptions& options) {
  ZintPtr sym = encode_pdf417(payload, options);
  sym->scale = 0.5f;  // vector units = modules
  int rc = ZBarcode_Buffer_Vector(sym.get(), 0);
  if (rc >= ZINT_ERROR || !sym->vector)
    throw DteError("barcode.encode", std::string("PDF417 rendering failed: ") + sym->errtxt);
  auto num = [](float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
    return std::string(buf);
  };
  const float w = sym->vector->width;
  const float h = sym->vector->height;
  const float px = static_cast<float>(options.module_px);
  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" +
                    num(w * px) + "\" height=\"" + num(h * px) + "\" viewBox=\"0 0 " + num(w) +
                    " " + num(h) + "\" shape-rendering=\"crispEdges\">\n" +
                    "<rect width=\"" + num(w) + "\" height=\"" + num(h) + "\" fill=\"#FFFFFF\"/>\n" +
                    "<path fill=\"#000000\" d=\"";
  for (const zint_vector_rect* r = sym->vector->rectangles; r; r = r->next) {
    svg += "M" + num(r->x) + " " + num(r->y) + "h" + num(r->width) + "v" + num(r->height) + "h" +
           num(-r->width) + "Z";
  }
  svg += "\"/>\n</svg>\n";
  return svg;
}

}  // namespace dte
