// One unique_ptr type per C handle, with its deleter. No naked free() anywhere else.
#pragma once
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/pkcs12.h>

#include <memory>

namespace dte {

template <auto Fn>
struct CDeleter {
  template <typename T>
  void operator()(T* p) const noexcept {
    if (p) Fn(p);
  }
};

using XmlDocPtr = std::unique_ptr<xmlDoc, CDeleter<xmlFreeDoc>>;
using XmlXPathContextPtr = std::unique_ptr<xmlXPathContext, CDeleter<xmlXPathFreeContext>>;
using XmlXPathObjectPtr = std::unique_ptr<xmlXPathObject, CDeleter<xmlXPathFreeObject>>;
using XmlSchemaPtr = std::unique_ptr<xmlSchema, CDeleter<xmlSchemaFree>>;
using XmlSchemaParserCtxtPtr =
    std::unique_ptr<xmlSchemaParserCtxt, CDeleter<xmlSchemaFreeParserCtxt>>;
using XmlSchemaValidCtxtPtr = std::unique_ptr<xmlSchemaValidCtxt, CDeleter<xmlSchemaFreeValidCtxt>>;
using XmlBufferPtr = std::unique_ptr<xmlBuffer, CDeleter<xmlBufferFree>>;

inline void xml_char_free(xmlChar* p) noexcept { xmlFree(p); }
using XmlCharPtr = std::unique_ptr<xmlChar, CDeleter<xml_char_free>>;

using BioPtr = std::unique_ptr<BIO, CDeleter<BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, CDeleter<BN_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, CDeleter<EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, CDeleter<EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, CDeleter<X509_free>>;
using Pkcs12Ptr = std::unique_ptr<PKCS12, CDeleter<PKCS12_free>>;

inline void x509_stack_free(STACK_OF(X509) * s) noexcept { sk_X509_pop_free(s, X509_free); }
using X509StackPtr = std::unique_ptr<STACK_OF(X509), CDeleter<x509_stack_free>>;

}  // namespace dte
