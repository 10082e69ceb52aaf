// Test material for the pipeline and envelope tests: a throwaway "SII" key, CAFs signed with it,
// a signer certificate, the example inputs, and the independent checkers (xmlsec1, XSDs).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/document.hpp"
#include "dte/envelope.hpp"
#include "dte/pipeline.hpp"
#include "dte/schema.hpp"
#include "dte/testkit.hpp"

namespace dte::test {

namespace fs = std::filesystem;

inline constexpr const char* kIssuer = "76543210-3";  // the RUT of dte_native/examples/*.json
inline constexpr const char* kSigner = "11111111-1";

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string xsd_dir() {
  const char* env = std::getenv("DTE_XSD_DIR");
  return env && *env ? env : std::string(DTE_SHARED_DIR) + "/xsd";
}

inline bool have_xsds() { return fs::exists(fs::path(xsd_dir()) / "DTE_v10.xsd"); }

inline const SchemaSet* schemas() {
  static std::shared_ptr<SchemaSet> set = have_xsds() ? SchemaSet::shared(xsd_dir()) : nullptr;
  return set.get();
}

inline const testkit::KeyPair& sii_key() {
  static const testkit::KeyPair key = testkit::make_rsa_key(1024);
  return key;
}

inline const SiiKeyring& keyring() {
  static const SiiKeyring ring = [] {
    SiiKeyring k;
    k.add_pem(100, sii_key().public_pem);
    return k;
  }();
  return ring;
}

inline Caf make_caf(int type, long long from = 1, long long to = 100,
                    const std::string& issuer = kIssuer) {
  testkit::CafSpec s;
  s.issuer_rut = issuer;
  s.doc_type = type;
  s.folio_from = from;
  s.folio_to = to;
  s.idk = 100;
  return Caf::parse(testkit::make_caf(s, sii_key().private_pem));
}

// One CAF per type, 1..100, made once (CAF keys are cheap, but tests sign a lot).
inline const Caf& caf_for(int type) {
  static std::mutex mu;
  static std::map<int, std::unique_ptr<Caf>> cafs;
  std::lock_guard lock(mu);
  auto& slot = cafs[type];
  if (!slot) slot = std::make_unique<Caf>(make_caf(type));
  return *slot;
}

inline Certificate make_cert(int days_valid = 365, int days_offset = 0) {
  testkit::CertSpec spec;
  spec.rut = kSigner;
  spec.days_valid = days_valid;
  spec.days_offset = days_offset;
  auto bundle = testkit::make_certificate(spec, "secret");
  return Certificate::from_pem(bundle.cert_pem, bundle.key_pem);
}

inline const Certificate& cert() {
  static const Certificate c = make_cert();
  return c;
}

// Signing options fixed for a test: the test keyring, one timestamp (so outputs are reproducible:
// RSA PKCS#1 v1.5 is deterministic) and the date of that timestamp as today.
inline SignOptions fixed_sign_options() {
  SignOptions o;
  o.keyring = &keyring();
  o.timestamp = now_timestamp();
  o.today = o.timestamp.substr(0, 10);
  return o;
}

// The Caratula of the examples' issuer, as SII's certification resolution gives it.
inline Caratula example_caratula() {
  Caratula c;
  c.rut_emisor = kIssuer;
  c.fch_resol = "2014-08-22";
  c.nro_resol = 80;
  return c;
}

// The example input of a type with its folio replaced.
inline std::string example_input(int type, long long folio) {
  fs::path p = fs::path(DTE_SOURCE_DIR) / "dte_native" / "examples" / (std::to_string(type) + ".json");
  std::string text = read_file(p);
  if (text.empty()) return {};
  json j = json::parse(text);
  j["Encabezado"]["IdDoc"]["Folio"] = folio;
  return j.dump();
}

struct CommandResult {
  int status = -1;
  std::string output;
};

inline CommandResult run(const std::string& command) {
  CommandResult r;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen((command + " 2>&1").c_str(), "r"), pclose);
  if (!pipe) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe.get())) > 0) r.output.append(buf, n);
  r.status = pclose(pipe.release());
  return r;
}

inline bool have_xmlsec1() { return run("xmlsec1 --version").status == 0; }

// Verifies one signature with the xmlsec1 command line, key from KeyValue (the certificate is
// self-signed, hence --insecure). `id_element`: space-separated names of the elements whose
// ID attribute is an XML ID; `xpath` picks the Signature.
inline CommandResult xmlsec1_verify(const std::string& bytes, const std::string& id_element,
                                    const std::string& xpath) {
  static std::atomic<int> counter{0};
  fs::path file = fs::temp_directory_path() /
                  ("dte_xmlsec_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".xml");
  {
    std::ofstream out(file, std::ios::binary);
    out << bytes;
  }
  std::string ids;
  std::istringstream names(id_element);
  for (std::string name; names >> name;) ids += " --id-attr:ID " + name;
  CommandResult r = run("xmlsec1 --verify --insecure" + ids + " --node-xpath \"" + xpath + "\" " +
                        file.string());
  fs::remove(file);
  return r;
}

inline std::string issues_text(const ValidationResult& r) {
  std::string out = r.schema + "\n";
  for (const auto& e : r.errors)
    out += std::to_string(e.line) + " " + e.path + ": " + e.message + "\n";
  return out;
}

}  // namespace dte::test
