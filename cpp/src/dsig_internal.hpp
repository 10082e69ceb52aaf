// Private to signer.cpp and verify.cpp: xmlsec handles and error capture.
#pragma once
#include <xmlsec/keys.h>
#include <xmlsec/xmldsig.h>

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "dte/handles.hpp"

namespace dte::detail {

using XmlSecKeyPtr = std::unique_ptr<xmlSecKey, CDeleter<xmlSecKeyDestroy>>;
using XmlSecDSigCtxPtr = std::unique_ptr<xmlSecDSigCtx, CDeleter<xmlSecDSigCtxDestroy>>;

// An xmlsec key around an in-memory EVP_PKEY (up-referenced, never re-parsed), with the
// certificate attached when given (so that signing can write X509Certificate).
XmlSecKeyPtr xmlsec_key(EVP_PKEY* pkey, X509* cert);

// xmlsec's error messages on this thread since the last call (then cleared).
std::string take_xmlsec_errors();

// An RSA-SHA1 DigestVerify context for `key`, initialised once per thread and key and copied
// for each use: initialising looks the algorithm up in OpenSSL's provider tables every time.
// nullptr when OpenSSL refuses the key.
EvpMdCtxPtr rsa_sha1_verify_context(EVP_PKEY* key);

// RSA-SHA1 PKCS#1 v1.5 signature of `data` with `key`: SHA-1 of the data, then EVP_PKEY_sign
// through a context set up once per thread and key (the same per-thread memo of 8 keys as
// rsa_sha1_verify_context). The same bytes as EVP_DigestSign, without a
// context copy per call and the context duplicate EVP_DigestSignFinal makes. Empty when OpenSSL
// refuses (its error queue cleared).
std::string rsa_sha1_sign(EVP_PKEY* key, std::string_view data);

// SHA-1 fetched from OpenSSL's providers once (EVP_sha1() looks it up on every use).
const EVP_MD* sha1_md();

// Inclusive C14N 1.0 without comments of the subtree of `top`, in its document's context: what
// xmlsec computes for a same-document "#ID" Reference and for SignedInfo, by the same libxml2
// engine, with an O(depth) visibility test.
bool c14n_subtree(xmlDoc* doc, xmlNode* top, std::string* out);

// The same canonical form written directly (several times faster than libxml2's C14N, which
// allocates per node). False, with `out` empty, for what it leaves to libxml2: processing
// instructions, entity references, xml:* attributes inherited from outside the subtree.
// Verification uses it only as a shortcut: a mismatch is re-checked with c14n_subtree.
bool fast_c14n_subtree(const xmlNode* top, std::string* out);

// False when libxml2's C14N (hence xmlsec) would refuse the document: an entity reference or a
// relative namespace URI anywhere in it.
bool c14n_document_ok(const xmlDoc* doc);

}  // namespace dte::detail
