// Bindings of the document work: input model, rules, signing pipeline, envelopes, verification,
// schema validation and the TED barcode.
#include <memory>

#include "common.hpp"
#include "dte/document.hpp"
#include "dte/envelope.hpp"
#include "dte/pipeline.hpp"
#include "dte/ted.hpp"
#include "dte/verify.hpp"

namespace dte_py {

namespace {

using CafPtr = std::shared_ptr<dte::Caf>;

// JSON crosses the boundary as text: one copy, and nlohmann's ordered_json keeps the field order
// that the XML needs.
std::string dump(const dte::json& j) {
  return j.dump(-1, ' ', false, dte::json::error_handler_t::replace);
}

dte::SignOptions sign_options(const std::string& timestamp, const std::string& today,
                              const std::string& doc_id, const dte::SiiKeyring* keyring,
                              bool check_certificate_validity) {
  dte::SignOptions o;
  o.timestamp = timestamp;
  o.today = today;
  o.doc_id = doc_id;
  o.keyring = keyring;
  o.check_certificate_validity = check_certificate_validity;
  return o;
}

py::dict signed_dict(const dte::SignedDte& s) {
  py::dict d;
  d[DTE_PY_KEY("xml")] = py::bytes(s.xml);
  d[DTE_PY_KEY("id")] = s.id;
  d[DTE_PY_KEY("doc_type")] = s.doc_type;
  d[DTE_PY_KEY("folio")] = s.folio;
  d[DTE_PY_KEY("total")] = s.total;
  d[DTE_PY_KEY("issuer_rut")] = s.issuer_rut;
  d[DTE_PY_KEY("receiver_rut")] = s.receiver_rut;
  d[DTE_PY_KEY("issue_date")] = s.issue_date;
  d[DTE_PY_KEY("ted_xml")] = s.ted_xml;
  d[DTE_PY_KEY("warnings")] = to_list(s.warnings);
  return d;
}

py::dict report_dict(const dte::VerifyReport& r) {
  py::list docs;
  for (const auto& v : r.documents) {
    py::dict d = document_facts(v);
    d[DTE_PY_KEY("ok")] = v.ok;
    docs.append(std::move(d));
  }
  py::dict d;
  d[DTE_PY_KEY("kind")] = r.kind;
  d[DTE_PY_KEY("ok")] = r.ok();
  d[DTE_PY_KEY("checks")] = to_list(r.checks);
  d[DTE_PY_KEY("documents")] = std::move(docs);
  return d;
}

dte::BarcodeOptions barcode_options(int ecc_level, int columns, int module_px, int row_height,
                                    int quiet_zone) {
  dte::BarcodeOptions o;
  o.ecc_level = ecc_level;
  o.columns = columns;
  o.module_px = module_px;
  o.row_height = row_height;
  o.quiet_zone = quiet_zone;
  return o;
}

}  // namespace

void bind_documents(py::module_& m) {
  // --- input model ---------------------------------------------------------------------------
  py::list types;
  for (int t : dte::kSupportedTypes) types.append(t);
  m.attr("SUPPORTED_TYPES") = py::tuple(types);
  m.def("is_supported_type", &dte::is_supported_type, py::arg("doc_type"));
  m.def("is_boleta", &dte::is_boleta, py::arg("doc_type"));
  m.def("is_export", &dte::is_export, py::arg("doc_type"));
  m.def("is_exempt_type", &dte::is_exempt_type, py::arg("doc_type"));
  m.def("type_name", [](int t) { return std::string(dte::type_name(t)); }, py::arg("doc_type"));
  m.def(
      "normalize",
      [](const std::string& input_json) {
        return nogil([&] { return dump(dte::normalize(dte::parse_input(input_json))); });
      },
      py::arg("input_json"));
  m.def(
      "check_rules",
      [](const std::string& normalized_json, const std::string& today, long long caf_folio_from,
         long long caf_folio_to, int caf_doc_type, const std::string& caf_issuer_rut,
         const std::string& caf_expires_on) {
        dte::RuleContext ctx;
        ctx.today = today;
        ctx.caf_folio_from = caf_folio_from;
        ctx.caf_folio_to = caf_folio_to;
        ctx.caf_doc_type = caf_doc_type;
        ctx.caf_issuer_rut = caf_issuer_rut;
        ctx.caf_expires_on = caf_expires_on;
        return to_list(nogil([&] { return dte::check_rules(dte::parse_input(normalized_json), ctx); }));
      },
      py::arg("normalized_json"), py::arg("today") = "", py::arg("caf_folio_from") = 0,
      py::arg("caf_folio_to") = 0, py::arg("caf_doc_type") = 0, py::arg("caf_issuer_rut") = "",
      py::arg("caf_expires_on") = "");

  // --- schemas ---------------------------------------------------------------------------------
  py::class_<dte::SchemaSet, std::shared_ptr<dte::SchemaSet>>(m, "SchemaSet")
      .def(py::init([](const std::string& dir) {
             return nogil([&] { return std::make_shared<dte::SchemaSet>(dir); });
           }),
           py::arg("dir"))
      .def_static(
          "shared",
          [](const std::string& dir) { return nogil([&] { return dte::SchemaSet::shared(dir); }); },
          py::arg("dir"))
      .def_property_readonly("dir", &dte::SchemaSet::dir)
      .def(
          "validate_bytes",
          [](const dte::SchemaSet& s, const std::string& bytes) {
            return to_dict(nogil([&] { return s.validate_bytes(bytes); }));
          },
          py::arg("data"));

  // --- signing pipeline --------------------------------------------------------------------------
  m.def(
      "precheck",
      [](const std::string& input_json, const dte::Caf* caf, const dte::Certificate* cert,
         const std::string& timestamp, const std::string& today, const std::string& doc_id,
         const dte::SiiKeyring* keyring, bool check_certificate_validity) {
        auto options = sign_options(timestamp, today, doc_id, keyring, check_certificate_validity);
        return to_list(nogil([&] { return dte::precheck(input_json, caf, cert, options); }));
      },
      py::arg("input_json"), py::arg("caf") = nullptr, py::arg("cert") = nullptr,
      py::arg("timestamp") = "", py::arg("today") = "", py::arg("doc_id") = "",
      py::arg("keyring") = nullptr, py::arg("check_certificate_validity") = true);
  m.def(
      "sign_document",
      [](const std::string& input_json, const dte::Caf& caf, const dte::Certificate& cert,
         const std::string& timestamp, const std::string& today, const std::string& doc_id,
         const dte::SiiKeyring* keyring, bool check_certificate_validity) {
        auto options = sign_options(timestamp, today, doc_id, keyring, check_certificate_validity);
        return signed_dict(nogil([&] { return dte::sign_document(input_json, caf, cert, options); }));
      },
      py::arg("input_json"), py::arg("caf"), py::arg("cert"), py::arg("timestamp") = "",
      py::arg("today") = "", py::arg("doc_id") = "", py::arg("keyring") = nullptr,
      py::arg("check_certificate_validity") = true);
  m.def(
      "sign_many",
      [](const std::vector<std::string>& inputs, const std::vector<CafPtr>& cafs,
         const dte::Certificate& cert, const std::string& timestamp, const std::string& today,
         const dte::SiiKeyring* keyring, bool check_certificate_validity, unsigned threads) {
        std::vector<const dte::Caf*> caf_ptrs;
        for (const auto& c : cafs) caf_ptrs.push_back(c.get());
        auto options = sign_options(timestamp, today, "", keyring, check_certificate_validity);
        // The whole batch runs on the core's pool without the GIL.
        auto outcomes =
            nogil([&] { return dte::sign_many(inputs, caf_ptrs, cert, options, threads); });
        py::list out;
        for (const auto& o : outcomes) {
          py::dict d;
          d[DTE_PY_KEY("ok")] = o.ok;
          d[DTE_PY_KEY("dte")] = o.ok ? py::object(signed_dict(o.dte)) : py::object(py::none());
          d[DTE_PY_KEY("error_code")] = o.error_code;
          d[DTE_PY_KEY("error_message")] = o.error_message;
          out.append(std::move(d));
        }
        return out;
      },
      py::arg("inputs"), py::arg("cafs"), py::arg("cert"), py::arg("timestamp") = "",
      py::arg("today") = "", py::arg("keyring") = nullptr,
      py::arg("check_certificate_validity") = true, py::arg("threads") = 0U);

  // --- envelopes -----------------------------------------------------------------------------
  m.def(
      "build_envelope",
      [](const std::vector<std::string>& signed_dtes, const dte::Certificate& cert,
         const std::string& rut_emisor, const std::string& rut_envia,
         const std::string& rut_receptor, const std::string& fch_resol, int nro_resol,
         const std::string& tmst_firma_env, bool boleta, const std::string& set_id) {
        dte::Caratula caratula;
        caratula.rut_emisor = rut_emisor;
        caratula.rut_envia = rut_envia;
        caratula.rut_receptor = rut_receptor.empty() ? std::string(dte::kSiiRut) : rut_receptor;
        caratula.fch_resol = fch_resol;
        caratula.nro_resol = nro_resol;
        caratula.tmst_firma_env = tmst_firma_env;
        return py::bytes(nogil(
            [&] { return dte::build_envelope(signed_dtes, caratula, cert, boleta, set_id); }));
      },
      py::arg("signed_dtes"), py::arg("cert"), py::arg("rut_emisor"), py::arg("rut_envia") = "",
      py::arg("rut_receptor") = "", py::arg("fch_resol") = "", py::arg("nro_resol") = 0,
      py::arg("tmst_firma_env") = "", py::arg("boleta") = false, py::arg("set_id") = "SetDoc");

  // --- verification --------------------------------------------------------------------------
  m.def(
      "verify_document",
      [](const std::string& bytes, const dte::SiiKeyring* keyring, const dte::SchemaSet* schemas,
         bool check_cert_validity) {
        dte::VerifyOptions options;
        options.keyring = keyring;
        options.schemas = schemas;
        options.check_cert_validity = check_cert_validity;
        return report_dict(nogil([&] { return dte::verify_document(bytes, options); }));
      },
      py::arg("data"), py::arg("keyring") = nullptr, py::arg("schemas") = nullptr,
      py::arg("check_cert_validity") = true);

  // --- TED barcode ---------------------------------------------------------------------------
  m.def(
      "ted_barcode_payload",
      [](const std::string& ted_xml) {
        return py::bytes(nogil([&] { return dte::ted_barcode_payload(std::string_view(ted_xml)); }));
      },
      py::arg("ted_xml"));
  m.def(
      "pdf417_png",
      [](const std::string& payload, int ecc_level, int columns, int module_px, int row_height,
         int quiet_zone) {
        auto o = barcode_options(ecc_level, columns, module_px, row_height, quiet_zone);
        return py::bytes(nogil([&] { return dte::pdf417_png(payload, o); }));
      },
      py::arg("payload"), py::arg("ecc_level") = 5, py::arg("columns") = 0,
      py::arg("module_px") = 2, py::arg("row_height") = 3, py::arg("quiet_zone") = 2);
  m.def(
      "pdf417_svg",
      [](const std::string& payload, int ecc_level, int columns, int module_px, int row_height,
         int quiet_zone) {
        auto o = barcode_options(ecc_level, columns, module_px, row_height, quiet_zone);
        return nogil([&] { return dte::pdf417_svg(payload, o); });
      },
      py::arg("payload"), py::arg("ecc_level") = 5, py::arg("columns") = 0,
      py::arg("module_px") = 2, py::arg("row_height") = 3, py::arg("quiet_zone") = 2);
}

}  // namespace dte_py
