// Bindings of reception (dte/mime.hpp, dte/imap.hpp, dte/reception.hpp): plain dicts out, dicts
// in; dte_native/reception.py turns them into dataclasses. Every C++ call releases the GIL.
#include <set>

#include "common.hpp"
#include "dte/cert.hpp"
#include "dte/imap.hpp"
#include "dte/mime.hpp"
#include "dte/reception.hpp"

namespace dte_py {
namespace {

namespace rc = dte::reception;

template <typename T>
T get_or(const py::dict& d, const char* key, T fallback) {
  if (!d.contains(key) || d[key].is_none()) return fallback;
  return d[key].cast<T>();
}

py::list checks_list(const std::vector<dte::Check>& checks) { return to_list(checks); }

py::dict envelope_dict(const rc::ReceivedEnvelope& e) {
  py::dict d;
  d[DTE_PY_KEY("kind")] = e.kind;
  d[DTE_PY_KEY("set_id")] = e.set_id;
  d[DTE_PY_KEY("digest")] = e.digest;
  d[DTE_PY_KEY("rut_emisor")] = e.rut_emisor;
  d[DTE_PY_KEY("rut_envia")] = e.rut_envia;
  d[DTE_PY_KEY("rut_receptor")] = e.rut_receptor;
  d[DTE_PY_KEY("tmst_firma_env")] = e.tmst_firma_env;
  d[DTE_PY_KEY("state")] = e.state;
  d[DTE_PY_KEY("glosa")] = e.glosa;
  d[DTE_PY_KEY("ok")] = e.ok();
  d[DTE_PY_KEY("checks")] = checks_list(e.checks);
  py::list docs;
  for (const auto& r : e.documents) {
    py::dict x = document_facts(r.doc);
    x[DTE_PY_KEY("key")] = r.key;
    x[DTE_PY_KEY("state")] = r.state;
    x[DTE_PY_KEY("glosa")] = r.glosa;
    x[DTE_PY_KEY("duplicate")] = r.duplicate;
    x[DTE_PY_KEY("ok")] = r.ok();
    x[DTE_PY_KEY("checks")] = checks_list(r.checks);
    x[DTE_PY_KEY("xml")] = py::bytes(r.xml);
    docs.append(std::move(x));
  }
  d[DTE_PY_KEY("documents")] = std::move(docs);
  return d;
}

py::dict mime_dict(const dte::mime::Message& m) {
  py::dict d;
  d["ok"] = m.ok;
  d["error_code"] = m.error_code;
  d["error"] = m.error;
  d["message_id"] = m.message_id;
  d["from"] = m.from;
  d["reply_to"] = m.reply_to;
  d["subject"] = m.subject;
  d["date"] = m.date;
  py::list xml;
  for (const auto& a : m.xml) {
    py::dict x;
    x["filename"] = a.filename;
    x["content_type"] = a.content_type;
    x["charset"] = a.charset;
    x["part_path"] = a.part_path;
    x["data"] = py::bytes(a.data);
    xml.append(std::move(x));
  }
  d["xml"] = std::move(xml);
  py::list refused;
  for (const auto& r : m.refused) {
    py::dict x;
    x["filename"] = r.filename;
    x["content_type"] = r.content_type;
    x["part_path"] = r.part_path;
    x["code"] = r.code;
    x["reason"] = r.reason;
    refused.append(std::move(x));
  }
  d["refused"] = std::move(refused);
  return d;
}

rc::ReceptionOptions options_from(const std::string& company_rut, const dte::SiiKeyring* keyring,
                                  const dte::SchemaSet* schemas, bool check_cert_validity,
                                  const std::set<std::string>& known) {
  rc::ReceptionOptions o;
  o.company_rut = company_rut;
  o.keyring = keyring;
  o.schemas = schemas;
  o.check_cert_validity = check_cert_validity;
  o.known = &known;
  return o;
}

rc::ResponseCaratula caratula_from(const py::dict& d) {
  rc::ResponseCaratula c;
  c.rut_responde = get_or<std::string>(d, "rut_responde", "");
  c.rut_recibe = get_or<std::string>(d, "rut_recibe", "");
  c.id_respuesta = get_or<long long>(d, "id_respuesta", 1);
  c.nmb_contacto = get_or<std::string>(d, "nmb_contacto", "");
  c.fono_contacto = get_or<std::string>(d, "fono_contacto", "");
  c.mail_contacto = get_or<std::string>(d, "mail_contacto", "");
  c.tmst_firma = get_or<std::string>(d, "tmst_firma", "");
  return c;
}

template <typename Item>
void doc_fields(Item& i, const py::dict& d, const char* type_key) {
  i.folio = get_or<long long>(d, "folio", 0);
  i.fch_emis = get_or<std::string>(d, "fch_emis", "");
  i.rut_emisor = get_or<std::string>(d, "rut_emisor", "");
  i.rut_recep = get_or<std::string>(d, "rut_recep", "");
  i.mnt_total = get_or<long long>(d, "mnt_total", 0);
  (void)type_key;
}

}  // namespace
}  // namespace dte_py

void register_reception(pybind11::module_& m) {
  using namespace dte_py;
  namespace mime = dte::mime;

  m.def(
      "reception_classify",
      [](const std::string& bytes) {
        auto c = nogil([&] { return rc::classify_xml(bytes); });
        py::dict d;
        d["kind"] = rc::to_string(c.kind);
        d["root"] = c.root;
        d["readable"] = c.readable;
        d["reason"] = c.reason;
        return d;
      },
      py::arg("data"));
  m.def(
      "mime_parse",
      [](const std::string& raw, std::size_t max_attachment_bytes) {
        mime::MimeLimits limits;
        if (max_attachment_bytes) limits.max_attachment_bytes = max_attachment_bytes;
        return mime_dict(nogil([&] { return mime::parse_message(raw, limits); }));
      },
      py::arg("raw"), py::arg("max_attachment_bytes") = 0);
  m.def(
      "mime_build_message",
      [](const std::string& from, const std::string& to, const std::string& subject,
         const std::string& body, const std::vector<std::tuple<std::string, std::string, std::string>>& atts) {
        std::vector<mime::OutgoingAttachment> list;
        for (const auto& [name, type, data] : atts) list.push_back({name, type, data});
        return py::bytes(nogil([&] { return mime::build_message(from, to, subject, body, list); }));
      },
      py::arg("sender"), py::arg("to"), py::arg("subject"), py::arg("body"), py::arg("attachments"));
  m.def(
      "reception_verify",
      [](const std::string& bytes, const std::string& company_rut, const dte::SiiKeyring* keyring,
         const dte::SchemaSet* schemas, const std::set<std::string>& known, bool check_cert_validity) {
        auto o = options_from(company_rut, keyring, schemas, check_cert_validity, known);
        return envelope_dict(nogil([&] { return rc::verify_received(bytes, o); }));
      },
      py::arg("data"), py::arg("company_rut"), py::arg("keyring") = nullptr, py::arg("schemas") = nullptr,
      py::arg("known") = std::set<std::string>{}, py::arg("check_cert_validity") = true);
  m.def(
      "reception_process_message",
      [](const std::string& raw, const std::string& company_rut, const dte::SiiKeyring* keyring,
         const dte::SchemaSet* schemas, const std::set<std::string>& known, bool check_cert_validity,
         std::size_t max_attachment_bytes) {
        auto o = options_from(company_rut, keyring, schemas, check_cert_validity, known);
        mime::MimeLimits limits;
        if (max_attachment_bytes) limits.max_attachment_bytes = max_attachment_bytes;
        rc::MessageOutcome out = nogil([&] { return rc::process_message(raw, o, limits); });
        py::dict d;
        d["mime"] = mime_dict(out.mime);
        d["quarantined"] = out.quarantined;
        d["reason"] = out.reason;
        py::list items;
        for (const auto& i : out.items) {
          py::dict x;
          x["filename"] = i.filename;
          x["part_path"] = i.part_path;
          x["kind"] = rc::to_string(i.classification.kind);
          x["root"] = i.classification.root;
          x["status"] = i.status;
          x["reason"] = i.reason;
          x["xml"] = py::bytes(i.xml);
          x["envelope"] = i.has_envelope ? py::object(envelope_dict(i.envelope)) : py::none();
          x["checks"] = checks_list(i.checks);
          items.append(std::move(x));
        }
        d["items"] = std::move(items);
        return d;
      },
      py::arg("raw"), py::arg("company_rut"), py::arg("keyring") = nullptr, py::arg("schemas") = nullptr,
      py::arg("known") = std::set<std::string>{}, py::arg("check_cert_validity") = true,
      py::arg("max_attachment_bytes") = 0);

  m.def(
      "reception_build_recepcion",
      [](const py::dict& caratula, const py::list& items, const dte::Certificate& cert) {
        rc::ResponseCaratula c = caratula_from(caratula);
        std::vector<rc::RecepcionEnvioItem> list;
        for (auto h : items) {
          py::dict d = h.cast<py::dict>();
          rc::RecepcionEnvioItem e;
          e.nmb_envio = get_or<std::string>(d, "nmb_envio", "");
          e.fch_recep = get_or<std::string>(d, "fch_recep", "");
          e.cod_envio = get_or<long long>(d, "cod_envio", 1);
          e.envio_dte_id = get_or<std::string>(d, "envio_dte_id", "");
          e.digest = get_or<std::string>(d, "digest", "");
          e.rut_emisor = get_or<std::string>(d, "rut_emisor", "");
          e.rut_receptor = get_or<std::string>(d, "rut_receptor", "");
          e.estado = get_or<int>(d, "estado", 0);
          e.glosa = get_or<std::string>(d, "glosa", "");
          if (d.contains("documents")) {
            for (auto hd : d["documents"].cast<py::list>()) {
              py::dict dd = hd.cast<py::dict>();
              rc::RecepcionDteItem r;
              r.tipo_dte = get_or<int>(dd, "tipo_dte", 0);
              doc_fields(r, dd, "tipo_dte");
              r.estado = get_or<int>(dd, "estado", 0);
              r.glosa = get_or<std::string>(dd, "glosa", "");
              e.documents.push_back(std::move(r));
            }
          }
          list.push_back(std::move(e));
        }
        return py::bytes(nogil([&] { return rc::build_recepcion_envio(c, list, cert); }));
      },
      py::arg("caratula"), py::arg("items"), py::arg("cert"));
  m.def(
      "reception_build_resultado",
      [](const py::dict& caratula, const py::list& items, const dte::Certificate& cert) {
        rc::ResponseCaratula c = caratula_from(caratula);
        std::vector<rc::ResultadoDteItem> list;
        for (auto h : items) {
          py::dict d = h.cast<py::dict>();
          rc::ResultadoDteItem r;
          r.tipo_dte = get_or<int>(d, "tipo_dte", 0);
          doc_fields(r, d, "tipo_dte");
          r.cod_envio = get_or<long long>(d, "cod_envio", 1);
          r.estado = get_or<int>(d, "estado", 0);
          r.glosa = get_or<std::string>(d, "glosa", "");
          r.cod_rch_dsc = get_or<int>(d, "cod_rch_dsc", 0);
          list.push_back(std::move(r));
        }
        return py::bytes(nogil([&] { return rc::build_resultado_dte(c, list, cert); }));
      },
      py::arg("caratula"), py::arg("items"), py::arg("cert"));
  m.def(
      "reception_build_recibos",
      [](const py::dict& caratula, const py::list& items, const dte::Certificate& cert) {
        rc::ResponseCaratula c = caratula_from(caratula);
        std::vector<rc::ReciboItem> list;
        for (auto h : items) {
          py::dict d = h.cast<py::dict>();
          rc::ReciboItem r;
          r.tipo_doc = get_or<int>(d, "tipo_doc", 0);
          doc_fields(r, d, "tipo_doc");
          r.recinto = get_or<std::string>(d, "recinto", "");
          r.rut_firma = get_or<std::string>(d, "rut_firma", "");
          r.tmst_firma = get_or<std::string>(d, "tmst_firma", "");
          list.push_back(std::move(r));
        }
        return py::bytes(nogil([&] { return rc::build_envio_recibos(c, list, cert); }));
      },
      py::arg("caratula"), py::arg("items"), py::arg("cert"));
  m.attr("RECIBO_DECLARACION") = rc::kDeclaracionRecibo;

  py::class_<dte::imap::Client>(m, "ImapClient")
      .def(py::init([](const std::string& url, const std::string& user, const std::string& password,
                       bool verify_tls, const std::string& ca_file, double timeout_s) {
             dte::imap::ImapConfig c;
             c.url = url;
             c.user = user;
             c.password = password;
             c.verify_tls = verify_tls;
             c.ca_file = ca_file;
             c.timeout_s = timeout_s;
             return dte::imap::Client(std::move(c));
           }),
           py::arg("url"), py::arg("user"), py::arg("password"), py::arg("verify_tls") = true,
           py::arg("ca_file") = "", py::arg("timeout_s") = 120.0)
      .def("status",
           [](dte::imap::Client& c) {
             auto s = nogil([&] { return c.status(); });
             py::dict d;
             d["uid_validity"] = s.uid_validity;
             d["uid_next"] = s.uid_next;
             d["messages"] = s.messages;
             return d;
           })
      .def("uids_above", [](dte::imap::Client& c, std::uint64_t uid) { return nogil([&] { return c.uids_above(uid); }); },
           py::arg("uid"))
      .def("fetch", [](dte::imap::Client& c, std::uint64_t uid) { return py::bytes(nogil([&] { return c.fetch(uid); })); },
           py::arg("uid"))
      .def("append", [](dte::imap::Client& c, const std::string& raw) { nogil([&] { c.append(raw); }); },
           py::arg("raw"));
}
