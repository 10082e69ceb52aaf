// XMLDSig in SII's profile: inclusive C14N 20010315, RSA-SHA1, SHA-1 digest, one Reference,
// KeyInfo = KeyValue/RSAKeyValue then X509Data/X509Certificate, no prefix.
#pragma once
#include <string>
#include <string_view>

#include "dte/cert.hpp"
#include "dte/handles.hpp"

namespace dte {

// Initialises xmlsec1 with its OpenSSL crypto once; idempotent and thread-safe.
void init_xmlsec();

// Appends a <Signature> as the last child of `parent` and signs the element whose ID attribute
// is `reference_id` (no transform), or the whole document when `reference_id` is empty
// (URI="" with the enveloped-signature transform, as getToken wants). IDs must be registered
// (register_ids). Throws SignatureError "sign.failed" with xmlsec's reason.
void append_signature(xmlDoc* doc, xmlNode* parent, std::string_view reference_id,
                      const Certificate& cert);

// The signed getToken document for a seed (SOAP and boleta REST), as UTF-8 text with declaration.
std::string sign_seed(std::string_view seed, const Certificate& cert);

}  // namespace dte
