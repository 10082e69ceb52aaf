// Bindings of the key material: signer certificate, SII keyring, CAF, testkit, seed signing.
#include <memory>

#include "common.hpp"
#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/signer.hpp"
#include "dte/testkit.hpp"

namespace dte_py {

namespace {

py::dict cert_info(const dte::CertificateInfo& i) {
  py::dict d;
  d["subject"] = i.subject;
  d["issuer"] = i.issuer;
  d["common_name"] = i.common_name;
  d["serial_number"] = i.serial_number;
  d["signer_rut"] = i.signer_rut;
  d["rut_source"] = i.rut_source;
  d["email"] = i.email;
  d["not_before"] = i.not_before;
  d["not_after"] = i.not_after;
  d["sha256_fingerprint"] = i.sha256_fingerprint;
  return d;
}

py::dict caf_info(const dte::CafInfo& i) {
  py::dict d;
  d["issuer_rut"] = i.issuer_rut;
  d["issuer_name"] = i.issuer_name;
  d["doc_type"] = i.doc_type;
  d["folio_from"] = i.folio_from;
  d["folio_to"] = i.folio_to;
  d["authorized_on"] = i.authorized_on;
  d["idk"] = i.idk;
  d["expires_on"] = i.expires_on;
  d["has_private_key"] = i.has_private_key;
  return d;
}

using CertPtr = std::shared_ptr<dte::Certificate>;
using CafPtr = std::shared_ptr<dte::Caf>;
using KeyringPtr = std::shared_ptr<dte::SiiKeyring>;

}  // namespace

void bind_crypto(py::module_& m) {
  py::class_<dte::Certificate, CertPtr>(m, "Certificate")
      .def_static(
          "from_pkcs12",
          [](const std::string& der, const std::string& password) {
            return nogil([&] {
              return std::make_shared<dte::Certificate>(dte::Certificate::from_pkcs12(der, password));
            });
          },
          py::arg("der"), py::arg("password"))
      .def_static(
          "from_pem",
          [](const std::string& cert_pem, const std::string& key_pem, const std::string& pw) {
            return nogil([&] {
              return std::make_shared<dte::Certificate>(
                  dte::Certificate::from_pem(cert_pem, key_pem, pw));
            });
          },
          py::arg("cert_pem"), py::arg("key_pem"), py::arg("key_password") = "")
      .def_static(
          "public_only",
          [](const std::string& data) {
            return nogil([&] {
              return std::make_shared<dte::Certificate>(dte::Certificate::public_only(data));
            });
          },
          py::arg("pem_or_der"))
      .def("info", [](const dte::Certificate& c) { return cert_info(c.info()); })
      .def_property_readonly("has_private_key", &dte::Certificate::has_private_key)
      .def(
          "check_valid_at",
          [](const dte::Certificate& c, const std::string& when) {
            nogil([&] { c.check_valid_at(when); });
          },
          py::arg("when") = "")
      .def(
          "valid_at", [](const dte::Certificate& c, const std::string& when) {
            return c.valid_at(when);
          },
          py::arg("when") = "")
      .def("cert_der", [](const dte::Certificate& c) { return py::bytes(c.cert_der()); })
      .def("cert_base64", &dte::Certificate::cert_base64);

  py::class_<dte::SiiKeyring, KeyringPtr>(m, "SiiKeyring")
      .def(py::init<>())
      .def(
          "add_pem",
          [](dte::SiiKeyring& k, int idk, const std::string& pem) {
            nogil([&] { k.add_pem(idk, pem); });
          },
          py::arg("idk"), py::arg("pem"))
      .def(
          "add_dir",
          [](dte::SiiKeyring& k, const std::string& dir) {
            return nogil([&] { return k.add_dir(dir); });
          },
          py::arg("dir"))
      .def("idks", &dte::SiiKeyring::idks);

  py::class_<dte::Caf, CafPtr>(m, "Caf")
      .def_static(
          "parse",
          [](const std::string& xml) {
            return nogil([&] { return std::make_shared<dte::Caf>(dte::Caf::parse(xml)); });
          },
          py::arg("xml"))
      .def("info", [](const dte::Caf& c) { return caf_info(c.info()); })
      .def(
          "check",
          [](const dte::Caf& c, const dte::SiiKeyring& keyring) {
            return to_list(nogil([&] { return c.check(keyring); }));
          },
          py::arg("keyring"))
      .def(
          "verify",
          [](const dte::Caf& c, const dte::SiiKeyring& keyring) {
            nogil([&] { c.verify(keyring); });
          },
          py::arg("keyring"))
      .def(
          "check_fits",
          [](const dte::Caf& c, const std::string& rut, int doc_type, long long folio,
             const std::string& on_date) {
            nogil([&] { c.check_fits(rut, doc_type, folio, on_date); });
          },
          py::arg("issuer_rut"), py::arg("doc_type"), py::arg("folio"), py::arg("on_date") = "")
      .def("caf_xml", [](const dte::Caf& c) { return c.caf_xml(); });

  m.def(
      "sign_seed",
      [](const std::string& seed, const dte::Certificate& cert) {
        return nogil([&] { return dte::sign_seed(seed, cert); });
      },
      py::arg("seed"), py::arg("cert"));

  m.def(
      "testkit_make_rsa_key",
      [](int bits, unsigned long exponent) {
        auto kp = nogil([&] { return dte::testkit::make_rsa_key(bits, exponent); });
        return py::make_tuple(kp.private_pem, kp.public_pem);
      },
      py::arg("bits") = 1024, py::arg("exponent") = 65537UL);
  m.def(
      "testkit_make_caf",
      [](const std::string& issuer_rut, int doc_type, long long folio_from, long long folio_to,
         const std::string& sii_private_pem, const std::string& issuer_name,
         const std::string& authorized_on, int idk) {
        dte::testkit::CafSpec spec;
        spec.issuer_rut = issuer_rut;
        spec.doc_type = doc_type;
        spec.folio_from = folio_from;
        spec.folio_to = folio_to;
        spec.issuer_name = issuer_name;
        spec.authorized_on = authorized_on;
        spec.idk = idk;
        return py::bytes(nogil([&] { return dte::testkit::make_caf(spec, sii_private_pem); }));
      },
      py::arg("issuer_rut"), py::arg("doc_type"), py::arg("folio_from"), py::arg("folio_to"),
      py::arg("sii_private_pem"), py::arg("issuer_name") = "EMPRESA DE PRUEBA",
      py::arg("authorized_on") = "", py::arg("idk") = 100);
  m.def(
      "testkit_make_certificate",
      [](const std::string& rut, const std::string& password, const std::string& name,
         const std::string& email, int days_valid, int days_offset, bool rut_in_san,
         bool rut_in_serial_number, bool legacy_pkcs12) {
        dte::testkit::CertSpec spec;
        spec.rut = rut;
        spec.name = name;
        spec.email = email;
        spec.days_valid = days_valid;
        spec.days_offset = days_offset;
        spec.rut_in_san = rut_in_san;
        spec.rut_in_serial_number = rut_in_serial_number;
        spec.legacy_pkcs12 = legacy_pkcs12;
        auto b = nogil([&] { return dte::testkit::make_certificate(spec, password); });
        return py::make_tuple(py::bytes(b.p12), b.cert_pem, b.key_pem);
      },
      py::arg("rut"), py::arg("password"), py::arg("name") = "Firmante de Prueba",
      py::arg("email") = "firmante@example.cl", py::arg("days_valid") = 365,
      py::arg("days_offset") = 0, py::arg("rut_in_san") = true,
      py::arg("rut_in_serial_number") = true, py::arg("legacy_pkcs12") = false);
}

}  // namespace dte_py
