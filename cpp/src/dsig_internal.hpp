// Private to signer.cpp and verify.cpp: xmlsec handles and error capture.
#pragma once
#include <xmlsec/keys.h>
#include <xmlsec/xmldsig.h>

#include <memory>
#include <string>

#include "dte/handles.hpp"

namespace dte::detail {

using XmlSecKeyPtr = std::unique_ptr<xmlSecKey, CDeleter<xmlSecKeyDestroy>>;
using XmlSecDSigCtxPtr = std::unique_ptr<xmlSecDSigCtx, CDeleter<xmlSecDSigCtxDestroy>>;

// An xmlsec key around an in-memory EVP_PKEY (up-referenced, never re-parsed), with the
// certificate attached when given (so that signing can write X509Certificate).
XmlSecKeyPtr xmlsec_key(EVP_PKEY* pkey, X509* cert);

// xmlsec's error messages on this thread since the last call (then cleared).
std::string take_xmlsec_errors();

}  // namespace dte::detail
