// Private to the signing pipeline (pipeline.cpp, sign_fast.cpp, document_xml.cpp, ted.cpp,
// signer.cpp): the direct text path that writes a signed DTE without building, serialising and
// re-parsing a libxml2 tree, and the DOM path it must match byte for byte.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/document.hpp"
#include "dte/pipeline.hpp"
#include "dte/ted.hpp"

namespace dte::detail {

// Today's pipeline through a libxml2 tree, xmlsec's template and a re-parse of the formatted
// bytes: the reference the fast path is tested against, and what it falls back to.
SignedDte sign_via_dom(const json& normalized, const Caf& caf, const Certificate& cert,
                       const SignOptions& options, const std::string& doc_id);

// sign_document's first check: CafError when the CAF does not fit the document's issuer,
// type, folio or date, as far as the input states them cleanly (the rules report the rest).
void check_caf_fit_first(const json& normalized, const Caf& caf, const SignOptions& options);

// The same document by the direct text path, or nullopt when that path declines (anything
// unusual: odd IDs, characters the shortcut does not model, a certificate whose KeyInfo xmlsec
// has not written yet, any error). Checks (rules, CAF, certificate) are the caller's.
std::optional<SignedDte> sign_fast(const json& normalized, const Caf& caf, const Certificate& cert,
                                   const std::string& timestamp, const std::string& doc_id);

// The texts ted_data_from_document reads from a built Documento, by index:
// RUTEmisor, TipoDTE, Folio, FchEmis, RUTRecep, RznSocRecep, MntTotal, first Detalle/NmbItem.
inline constexpr std::array<const char*, 8> kTedPaths = {
    "Encabezado/Emisor/RUTEmisor", "Encabezado/IdDoc/TipoDTE",      "Encabezado/IdDoc/Folio",
    "Encabezado/IdDoc/FchEmis",    "Encabezado/Receptor/RUTRecep", "Encabezado/Receptor/RznSocRecep",
    "Encabezado/Totales/MntTotal", "Detalle/NmbItem"};
using TedTexts = std::array<std::string, 8>;

// TedData from those texts, with ted_data_from_document's trimming, cuts and errors.
TedData ted_data_from_texts(const TedTexts& texts, std::string tsted);

// stamp_ted's TED text without parsing the DD back (the flattened CAF is kept per CAF); nullopt
// when a field holds what the parse would change or refuse. With `c14n`, that TED's formatted
// text too, appended there: what formatted_c14n(TED text, 2) gives (nullopt when that declines,
// `c14n` then in an unspecified state).
std::optional<std::string> stamp_ted_direct(const TedData& data, const Caf& caf,
                                            std::string* c14n = nullptr);

// The Documento's content written from the normalised input by the table walk
// build_document_xml uses, appended to `c14n`: the canonical form (UTF-8, <x></x> for empty
// elements) of what comes after the Documento start tag once the tree is serialised with
// formatting and parsed back, whitespace included, up to the last element before the TED (the
// caller writes the start tag, the TED, TmstFirma and the end tag); `ted_texts` gets the TED's
// field texts. false to decline, `c14n` then in an unspecified state, for bad input too: the
// DOM path then reports the error.
bool append_document_text(const json& normalized, std::string& c14n, TedTexts& ted_texts);

// The formatted text (C14N form, as above) of a flat element (libxml2's flattened output) at
// indent level `level` (2..29; a TED's is 2); nullopt for anything it does not model.
std::optional<std::string> formatted_c14n(std::string_view flat, int level);

// The <Signature> element append_signature writes for a "#reference_id" Reference whose target
// has canonical form `target_c14n`, as serialised bytes; nullopt when the certificate's KeyInfo
// text is not known yet (xmlsec has not signed with it) or anything is off.
std::optional<std::string> signature_text(std::string_view target_c14n, std::string_view reference_id,
                                          const Certificate& cert);

}  // namespace dte::detail
