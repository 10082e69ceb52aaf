// Test material for CAFs: an RSA key maker and an AUTORIZACION file maker in SII's layout.
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "dte/caf.hpp"
#include "dte/errors.hpp"
#include "dte/testkit.hpp"
#include "dte/xml.hpp"

namespace dte::testkit {
namespace {

EvpPkeyPtr generate_rsa(int bits, unsigned long exponent) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  BignumPtr e(BN_new());
  EVP_PKEY* pkey = nullptr;
  if (!ctx || !e || !BN_set_word(e.get(), exponent) || EVP_PKEY_keygen_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), bits) <= 0 ||
      EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx.get(), e.get()) <= 0 ||
      EVP_PKEY_keygen(ctx.get(), &pkey) <= 0) {
    ERR_clear_error();
    throw DteError("testkit.keygen", "cannot generate an RSA-" + std::to_string(bits) + " key");
  }
  return EvpPkeyPtr(pkey);
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string private_pem(EVP_PKEY* key, bool traditional) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  int ok = traditional
               ? PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)
               : PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  if (!ok) throw DteError("testkit.keygen", "cannot write the private key as PEM");
  return bio_text(bio.get());
}

std::string public_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PUBKEY(bio.get(), key))
    throw DteError("testkit.keygen", "cannot write the public key as PEM");
  return bio_text(bio.get());
}

std::string bn_param_b64(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (!EVP_PKEY_get_bn_param(key, name, &raw)) throw DteError("testkit.keygen", "no RSA parameter");
  BignumPtr bn(raw);
  std::string bytes(static_cast<std::size_t>(BN_num_bytes(bn.get())), '\0');
  BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(bytes.data()));
  return base64_encode(bytes);
}

std::string rsa_sha1(EVP_PKEY* key, std::string_view data) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  std::size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha1(), nullptr, key) <= 0 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) <= 0)
    throw DteError("testkit.sign", "cannot sign the CAF DA");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, data.size()) <= 0)
    throw DteError("testkit.sign", "cannot sign the CAF DA");
  sig.resize(len);
  return sig;
}

}  // namespace

KeyPair make_rsa_key(int bits, unsigned long exponent) {
  EvpPkeyPtr key = generate_rsa(bits, exponent);
  return {private_pem(key.get(), false), public_pem(key.get())};
}

std::string make_caf(const CafSpec& spec, const std::string& sii_private_pem) {
  BioPtr bio(BIO_new_mem_buf(sii_private_pem.data(), static_cast<int>(sii_private_pem.size())));
  EvpPkeyPtr sii(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!sii) {
    ERR_clear_error();
    throw DteError("testkit.bad_key", "the SII private key PEM cannot be read");
  }
  // CAF range keys are RSA-512 with e=3 in every real CAF seen.
  EvpPkeyPtr range = generate_rsa(512, 3);
  std::string fa = spec.authorized_on.empty() ? today_date() : spec.authorized_on;

  // One element per line as SII writes them; FRMA covers the flattened form anyway.
  std::string da = "<DA>\n<RE>" + escape_text(spec.issuer_rut) + "</RE>\n<RS>" +
                   escape_text(truncate_chars(spec.issuer_name, 40)) + "</RS>\n<TD>" +
                   std::to_string(spec.doc_type) + "</TD>\n<RNG><D>" +
                   std::to_string(spec.folio_from) + "</D><H>" + std::to_string(spec.folio_to) +
                   "</H></RNG>\n<FA>" + escape_text(fa) + "</FA>\n<RSAPK><M>" +
                   bn_param_b64(range.get(), OSSL_PKEY_PARAM_RSA_N) + "</M><E>" +
                   bn_param_b64(range.get(), OSSL_PKEY_PARAM_RSA_E) + "</E></RSAPK>\n<IDK>" +
                   std::to_string(spec.idk) + "</IDK>\n</DA>";
  // Sign exactly what a verifier reconstructs from the parsed DA.
  XmlDocPtr da_doc = parse_xml(da);
  std::string signed_da = to_latin1(flattened_element(xmlDocGetRootElement(da_doc.get())));
  std::string frma = base64_encode(rsa_sha1(sii.get(), signed_da));

  std::string xml = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<AUTORIZACION>\n<CAF version=\"1.0\">\n" +
                    da + "\n<FRMA algoritmo=\"SHA1withRSA\">" + frma + "</FRMA>\n</CAF>\n<RSASK>" +
                    private_pem(range.get(), true) + "</RSASK>\n<RSAPUBK>" +
                    public_pem(range.get()) + "</RSAPUBK>\n</AUTORIZACION>\n";
  return to_latin1(xml);
}

}  // namespace dte::testkit
