// Temporary: link-time placeholders for functions whose module is being written. Each
// module's author deletes the matching block when the real implementation lands.
#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/document.hpp"
#include "dte/envelope.hpp"
#include "dte/errors.hpp"
#include "dte/pipeline.hpp"
#include "dte/schema.hpp"
#include "dte/signer.hpp"
#include "dte/ted.hpp"
#include "dte/testkit.hpp"
#include "dte/verify.hpp"

namespace dte {
[[noreturn]] static void missing(const char* what) {
  throw DteError("unimplemented", std::string(what) + " is not implemented yet");
}
// BEGIN cert (owner: crypto)
void ensure_openssl_providers() { missing("ensure_openssl_providers"); }
Certificate::Certificate(X509Ptr, EvpPkeyPtr) { missing("Certificate"); }
Certificate Certificate::from_pkcs12(std::string_view, std::string_view) { missing("from_pkcs12"); }
Certificate Certificate::from_pem(std::string_view, std::string_view, std::string_view) { missing("from_pem"); }
Certificate Certificate::public_only(std::string_view) { missing("public_only"); }
void Certificate::check_valid_at(std::string_view) const { missing("check_valid_at"); }
bool Certificate::valid_at(std::string_view) const noexcept { return false; }
std::string Certificate::cert_der() const { missing("cert_der"); }
std::string Certificate::cert_base64() const { missing("cert_base64"); }
std::string Certificate::rsa_modulus_base64() const { missing("rsa_modulus_base64"); }
std::string Certificate::rsa_exponent_base64() const { missing("rsa_exponent_base64"); }
namespace testkit {
Pkcs12Bundle make_certificate(const CertSpec&, const std::string&) { missing("make_certificate"); }
}
// END cert
// BEGIN signer (owner: crypto)
void init_xmlsec() { missing("init_xmlsec"); }
void append_signature(xmlDoc*, xmlNode*, std::string_view, const Certificate&) { missing("append_signature"); }
std::string sign_seed(std::string_view, const Certificate&) { missing("sign_seed"); }
// END signer
// BEGIN verify (owner: crypto)
bool VerifyReport::ok() const noexcept { return false; }
VerifyReport verify_document(std::string_view, const VerifyOptions&) { missing("verify_document"); }
bool verify_signature_node(xmlDoc*, xmlNode*, std::string*, xmlNode**) { missing("verify_signature_node"); }
// END verify
// BEGIN caf (owner: caf)
void SiiKeyring::add_pem(int, std::string_view) { missing("SiiKeyring::add_pem"); }
int SiiKeyring::add_dir(const std::string&) { missing("SiiKeyring::add_dir"); }
std::vector<std::shared_ptr<EVP_PKEY>> SiiKeyring::keys_for(int) const { missing("keys_for"); }
std::vector<int> SiiKeyring::idks() const { missing("idks"); }
Caf Caf::parse(std::string_view) { missing("Caf::parse"); }
std::vector<Check> Caf::check(const SiiKeyring&) const { missing("Caf::check"); }
void Caf::verify(const SiiKeyring&) const { missing("Caf::verify"); }
void Caf::check_fits(std::string_view, int, long long, std::string_view) const { missing("check_fits"); }
std::string Caf::sign(std::string_view) const { missing("Caf::sign"); }
bool Caf::verify_signature(std::string_view, std::string_view) const { missing("verify_signature"); }
namespace testkit {
KeyPair make_rsa_key(int, unsigned long) { missing("make_rsa_key"); }
std::string make_caf(const CafSpec&, const std::string&) { missing("make_caf"); }
}
// END caf
// BEGIN ted (owner: caf)
TedData ted_data_from_document(const xmlNode*, std::string) { missing("ted_data_from_document"); }
std::string stamp_ted(const TedData&, const Caf&) { missing("stamp_ted"); }
void insert_ted(xmlDoc*, std::string_view, std::string_view) { missing("insert_ted"); }
std::vector<Check> verify_ted(const xmlNode*, const xmlNode*, const SiiKeyring&, std::string_view) { missing("verify_ted"); }
std::string ted_barcode_payload(const xmlNode*) { missing("ted_barcode_payload"); }
std::string ted_barcode_payload(std::string_view) { missing("ted_barcode_payload"); }
std::string pdf417_png(std::string_view, const BarcodeOptions&) { missing("pdf417_png"); }
std::string pdf417_svg(std::string_view, const BarcodeOptions&) { missing("pdf417_svg"); }
// END ted
// BEGIN document (owner: document)
bool is_supported_type(int) noexcept { return false; }
bool is_boleta(int) noexcept { return false; }
bool is_export(int) noexcept { return false; }
bool is_exempt_type(int) noexcept { return false; }
const char* type_name(int) noexcept { return ""; }
json parse_input(std::string_view) { missing("parse_input"); }
json normalize(const json&) { missing("normalize"); }
std::vector<Finding> check_rules(const json&, const RuleContext&) { missing("check_rules"); }
XmlDocPtr build_document_xml(const json&, std::string) { missing("build_document_xml"); }
int doc_type_of(const json&) { missing("doc_type_of"); }
long long folio_of(const json&) { missing("folio_of"); }
// END document
// BEGIN schema (owner: envelope)
SchemaSet::SchemaSet(std::string dir) : dir_(std::move(dir)) { missing("SchemaSet"); }
std::shared_ptr<SchemaSet> SchemaSet::shared(const std::string&) { missing("SchemaSet::shared"); }
ValidationResult SchemaSet::validate(xmlDoc*) const { missing("validate"); }
ValidationResult SchemaSet::validate_bytes(std::string_view, const ParseLimits&) const { missing("validate_bytes"); }
ValidationResult SchemaSet::validate_with(xmlDoc*, const std::string&) const { missing("validate_with"); }
xmlSchema* SchemaSet::compiled(const std::string&) const { missing("compiled"); }
// END schema
// BEGIN envelope (owner: envelope)
std::string build_envelope(const std::vector<std::string>&, const Caratula&, const Certificate&, bool, std::string_view) { missing("build_envelope"); }
// END envelope
// BEGIN pipeline (owner: envelope)
std::vector<Finding> precheck(std::string_view, const Caf*, const Certificate*, const SignOptions&) { missing("precheck"); }
SignedDte sign_document(std::string_view, const Caf&, const Certificate&, const SignOptions&) { missing("sign_document"); }
std::vector<SignOutcome> sign_many(const std::vector<std::string>&, const std::vector<const Caf*>&, const Certificate&, const SignOptions&, unsigned) { missing("sign_many"); }
// END pipeline
}  // namespace dte
