// EnvioDTE / EnvioBOLETA: Caratula + SubTotDTE, signed DTEs inserted byte for byte, SetDTE
// signed last.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "dte/cert.hpp"

namespace dte {

inline constexpr const char* kSiiRut = "60803000-K";

struct Caratula {
  std::string rut_emisor;
  std::string rut_envia;                  // empty: the certificate's signer RUT
  std::string rut_receptor = kSiiRut;     // SII, or the customer for the customer's copy
  std::string fch_resol;                  // YYYY-MM-DD
  int nro_resol = 0;
  std::string tmst_firma_env;             // empty: now (Chile)
};

// `signed_dtes` are DTE documents as `sign_document` returns them (ISO-8859-1 bytes, with or
// without XML declaration). Throws DocumentError "envelope.empty", "envelope.too_many_types"
// (> 20, or > 2 for boletas), "envelope.too_many" (> 2000, or > 500 boletas),
// "envelope.mixed" (boletas with other types), "envelope.issuer" (a DTE of another issuer),
// "envelope.not_dte" / "envelope.unsigned" (an item that is not a signed SiiDte <DTE>),
// "envelope.duplicate" (two DTEs with one ID), "envelope.caratula" (a Caratula field that is
// not a valid RUT/date/number, or no RutEnvia from either argument); XmlSyntaxError for a DTE
// that is not well-formed; CertificateError "cert.no_private_key", or "cert.expired" /
// "cert.not_yet_valid" at TmstFirmaEnv; SignatureError from signing.
// Returns the signed envelope, ISO-8859-1 bytes with declaration.
std::string build_envelope(const std::vector<std::string>& signed_dtes, const Caratula& caratula,
                           const Certificate& cert, bool boleta, std::string_view set_id = "SetDoc");

}  // namespace dte
