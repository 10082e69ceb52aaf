// CAF (Código de Autorización de Folios): SII's authorization of a folio range, carrying the
// range's RSA key pair. Parse, verify SII's signature (FRMA) and check it fits a document.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "dte/handles.hpp"
#include "dte/report.hpp"

namespace dte {

// SII's "aplanado" of one element, shared by FRMA (over DA) and FRMT (over DD) at signing and at
// verification so the two can never disagree: a canonical serialisation (C14N text and attribute
// escaping, attributes sorted) with every namespace declaration and prefix dropped, whitespace
// between tags removed. UTF-8; SII signs to_latin1() of it.
std::string flattened_element(const xmlNode* element);

// SII's CAF-signing public keys by IDK (100 certification, 300 production), plus any extra
// keys trusted by configuration (tests, certification with a test SII key).
class SiiKeyring {
 public:
  SiiKeyring() = default;
  // Copies share the (immutable) keys; the mutex only guards the map.
  SiiKeyring(const SiiKeyring& other);
  SiiKeyring& operator=(const SiiKeyring& other);

  // Keys shipped with the package (dte_native/sii_keys/<IDK>.pem|.cer) are added by the
  // facade through add_dir(); the C++ core knows no path by itself.
  void add_pem(int idk, std::string_view pem_cert_or_pubkey);  // throws CafError "caf.bad_key"
  // Adds every "<IDK>.pem" / "<IDK>.cer" / "<IDK>.pub" file in a folder. Returns count.
  int add_dir(const std::string& dir);
  // nullptr when unknown. Several keys may be registered for one IDK; all are tried.
  std::vector<std::shared_ptr<EVP_PKEY>> keys_for(int idk) const;
  std::vector<int> idks() const;

 private:
  mutable std::mutex mu_;
  std::multimap<int, std::shared_ptr<EVP_PKEY>> keys_;
};

struct CafInfo {
  std::string issuer_rut;  // RE
  std::string issuer_name; // RS
  int doc_type = 0;        // TD
  long long folio_from = 0;  // RNG/D
  long long folio_to = 0;    // RNG/H
  std::string authorized_on;  // FA, YYYY-MM-DD
  int idk = 0;
  std::string expires_on;  // FA + 6 months for 33/43/46/56/61, "" when it does not expire
  bool has_private_key = false;
};

class Caf {
 public:
  // Parses an AUTORIZACION file (or a bare <CAF> element, public part only), ISO-8859-1 or UTF-8.
  // Throws CafError "caf.unreadable" / "caf.missing_field" / XmlSyntaxError.
  static Caf parse(std::string_view xml_bytes);

  const CafInfo& info() const noexcept { return info_; }

  // The <CAF> element exactly as in the file (UTF-8 text), to copy verbatim into TED/DD.
  const std::string& caf_xml() const noexcept { return caf_xml_; }
  // The flattened DA bytes (ISO-8859-1) that FRMA signs.
  const std::string& flattened_da() const noexcept { return da_flat_; }

  // Returns every check with its outcome: SII signature with `keyring` (skipped when the IDK is
  // unknown to it), RSASK matches RSAPK, RSAPUBK matches RSAPK.
  std::vector<Check> check(const SiiKeyring& keyring) const;
  // Throws the first failing check as CafError (codes "caf.sii_signature", "caf.unknown_idk",
  // "caf.key_pair").
  void verify(const SiiKeyring& keyring) const;

  // Throws CafError "caf.wrong_rut", "caf.wrong_type", "caf.folio_out_of_range", "caf.expired"
  // ("caf.expired" when `on_date` (YYYY-MM-DD, empty = today) is after expires_on).
  void check_fits(std::string_view issuer_rut, int doc_type, long long folio,
                  std::string_view on_date = {}) const;

  // RSA-SHA1 PKCS#1 v1.5 with RSASK over `data`; CafError "caf.no_private_key" without it.
  std::string sign(std::string_view data) const;
  // Verifies RSA-SHA1 with RSAPK (the public part in DA).
  bool verify_signature(std::string_view data, std::string_view signature) const;

 private:
  CafInfo info_;
  std::string caf_xml_;
  std::string da_flat_;
  std::string frma_;  // raw signature bytes
  std::shared_ptr<EVP_PKEY> public_key_;   // from RSAPK M/E
  std::shared_ptr<EVP_PKEY> private_key_;  // from RSASK
  std::shared_ptr<EVP_PKEY> rsapubk_;      // from RSAPUBK (optional)
};

}  // namespace dte
