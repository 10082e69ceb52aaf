// Bindings of the SII client (dte/sii_client.hpp): every call releases the GIL; results are dicts
// that dte_native/sii.py turns into dataclasses; SII errors map to dte_native.errors classes.
#include <memory>

#include "common.hpp"
#include "dte/cert.hpp"
#include "dte/sii_client.hpp"
#include "dte/redis.hpp"

namespace dte_py {

namespace {

using dte::sii::Client;

struct SiiErrorClasses {
  py::object transport, auth, rejected, malformed;
};
SiiErrorClasses* g_sii = nullptr;  // leaked on purpose, like the core's error classes

[[noreturn]] void raise_obj(const py::object& cls, py::object instance) {
  PyErr_SetObject(cls.ptr(), instance.ptr());
  throw py::error_already_set();
}

void translate_sii(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const dte::SiiTransportError& e) {
    py::object inst = g_sii->transport(py::str(e.what()), py::str(e.code()));
    inst.attr("maybe_delivered") = e.maybe_delivered();
    raise_obj(g_sii->transport, inst);
  } catch (const dte::SiiAuthError& e) {
    raise_obj(g_sii->auth, g_sii->auth(py::str(e.what()), py::str(e.code())));
  } catch (const dte::SiiRejected& e) {
    raise_obj(g_sii->rejected, g_sii->rejected(py::str(e.what()), py::str(e.code()), py::str(e.sii_code()),
                                               py::cast(e.details())));
  } catch (const dte::SiiMalformedAnswer& e) {
    raise_obj(g_sii->malformed, g_sii->malformed(py::str(e.what()), py::str(e.code())));
  }
}

template <typename T>
T get_or(const py::dict& d, const char* key, T fallback) {
  if (!d.contains(key) || d[key].is_none()) return fallback;
  return d[key].cast<T>();
}

dte::sii::ClientConfig config_from(const py::dict& d) {
  dte::sii::ClientConfig c;
  c.environment = dte::sii::environment_from_string(get_or<std::string>(d, "environment", "certification"));
  c.endpoints = dte::sii::default_endpoints(c.environment, get_or<std::string>(d, "base_url", ""));
  auto& ep = c.endpoints;
  ep.soap_base = get_or<std::string>(d, "soap_base", ep.soap_base);
  ep.upload_base = get_or<std::string>(d, "upload_base", ep.upload_base);
  ep.claims_url = get_or<std::string>(d, "claims_url", ep.claims_url);
  ep.boleta_api_base = get_or<std::string>(d, "boleta_api_base", ep.boleta_api_base);
  ep.boleta_envio_base = get_or<std::string>(d, "boleta_envio_base", ep.boleta_envio_base);
  c.upload_user_agent = get_or<std::string>(d, "upload_user_agent", c.upload_user_agent);
  c.boleta_user_agent = get_or<std::string>(d, "boleta_user_agent", c.boleta_user_agent);
  c.connect_timeout_s = get_or<double>(d, "connect_timeout_s", c.connect_timeout_s);
  c.timeout_s = get_or<double>(d, "timeout_s", c.timeout_s);
  c.token_ttl_s = get_or<double>(d, "token_ttl_s", c.token_ttl_s);
  c.retry.max_attempts = get_or<int>(d, "max_attempts", c.retry.max_attempts);
  c.retry.base_delay_s = get_or<double>(d, "base_delay_s", c.retry.base_delay_s);
  c.retry.max_delay_s = get_or<double>(d, "max_delay_s", c.retry.max_delay_s);
  c.retry.jitter = get_or<double>(d, "jitter", c.retry.jitter);
  c.breaker.failure_threshold = get_or<int>(d, "breaker_failures", c.breaker.failure_threshold);
  c.breaker.open_seconds = get_or<double>(d, "breaker_open_s", c.breaker.open_seconds);
  c.breaker.half_open_successes = get_or<int>(d, "breaker_half_open_successes", c.breaker.half_open_successes);
  c.verify_tls = get_or<bool>(d, "verify_tls", c.verify_tls);
  c.ca_file = get_or<std::string>(d, "ca_file", c.ca_file);
  c.batch_threads = get_or<unsigned>(d, "batch_threads", c.batch_threads);
  c.random_seed = get_or<std::uint64_t>(d, "random_seed", c.random_seed);
  // Shared tokens, breakers and rate limit over every process (dte/redis.hpp).
  std::string redis_url = get_or<std::string>(d, "redis_url", "");
  if (!redis_url.empty())
    c.shared = dte::redis::shared_state(redis_url, get_or<std::string>(d, "redis_prefix", "dte"));
  c.rate_per_s = get_or<double>(d, "rate_per_s", c.rate_per_s);
  c.rate_burst = get_or<double>(d, "rate_burst", c.rate_burst);
  return c;
}

py::dict to_dict(const dte::sii::UploadResult& r) {
  py::dict d;
  d["track_id"] = r.track_id;
  d["duplicate"] = r.duplicate;
  d["verified"] = r.verified;
  d["status"] = r.status;
  d["timestamp"] = r.timestamp;
  d["family"] = r.family;
  d["attempts"] = r.attempts;
  return d;
}

py::dict to_dict(const dte::sii::EnvelopeStatus& s) {
  py::list counts, details;
  for (const auto& c : s.counts) {
    py::dict x;
    x["doc_type"] = c.doc_type;
    x["informed"] = c.informed;
    x["accepted"] = c.accepted;
    x["rejected"] = c.rejected;
    x["objections"] = c.objections;
    counts.append(x);
  }
  for (const auto& o : s.details) {
    py::dict x;
    x["doc_type"] = o.doc_type;
    x["folio"] = o.folio;
    x["state"] = o.state;
    x["description"] = o.description;
    x["errors"] = o.errors;
    details.append(x);
  }
  py::dict d;
  d["track_id"] = s.track_id;
  d["state"] = dte::sii::to_string(s.state);
  d["sii_state"] = s.sii_state;
  d["glosa"] = s.glosa;
  d["final"] = s.final;
  d["duplicate"] = s.duplicate;
  d["counts"] = counts;
  d["details"] = details;
  d["num_atencion"] = s.num_atencion;
  return d;
}

py::dict to_dict(const dte::sii::DocumentStatus& s) {
  py::dict d;
  d["state"] = dte::sii::to_string(s.state);
  d["sii_state"] = s.sii_state;
  d["err_code"] = s.err_code;
  d["glosa"] = s.glosa;
  d["description"] = s.description;
  d["final"] = s.final;
  d["verdict"] = s.verdict;
  return d;
}

py::dict to_dict(const dte::sii::MailResendResult& m) {
  py::dict d;
  d["code"] = m.code;
  d["glosa"] = m.glosa;
  d["description"] = m.description;
  d["ok"] = m.ok();
  return d;
}

py::dict to_dict(const dte::sii::ClaimResult& c) {
  py::dict d;
  d["code"] = c.code;
  d["description"] = c.description;
  d["ok"] = c.ok();
  return d;
}

py::dict to_dict(const dte::sii::EventsResult& r) {
  py::list events;
  for (const auto& e : r.events) {
    py::dict x;
    x["code"] = e.code;
    x["description"] = e.description;
    x["responsible_rut"] = e.responsible_rut;
    x["date"] = e.date;
    events.append(x);
  }
  py::dict d;
  d["code"] = r.code;
  d["description"] = r.description;
  d["events"] = events;
  return d;
}

template <typename T>
py::list batch_to_list(const std::vector<dte::sii::BatchItem<T>>& items) {
  py::list out;
  for (const auto& it : items) {
    py::dict d;
    d["value"] = it.value ? py::object(to_dict(*it.value)) : py::object(py::none());
    d["error_kind"] = it.error_kind;
    d["error_code"] = it.error_code;
    d["error_message"] = it.error_message;
    d["sii_code"] = it.sii_code;
    out.append(d);
  }
  return out;
}

dte::sii::DocumentQuery query_from(const py::dict& d) {
  dte::sii::DocumentQuery q;
  q.issuer_rut = get_or<std::string>(d, "issuer_rut", "");
  q.receiver_rut = get_or<std::string>(d, "receiver_rut", "");
  q.doc_type = get_or<int>(d, "doc_type", 0);
  q.folio = get_or<long long>(d, "folio", 0);
  q.date = get_or<std::string>(d, "date", "");
  q.amount = get_or<long long>(d, "amount", 0);
  q.signature_value = get_or<std::string>(d, "signature_value", "");
  return q;
}

py::dict endpoints_dict(const dte::sii::Endpoints& e) {
  py::dict d;
  d["soap_base"] = e.soap_base;
  d["upload_base"] = e.upload_base;
  d["claims_url"] = e.claims_url;
  d["boleta_api_base"] = e.boleta_api_base;
  d["boleta_envio_base"] = e.boleta_envio_base;
  return d;
}

py::dict query_to_dict(const dte::sii::DocumentQuery& q) {
  py::dict d;
  d["issuer_rut"] = q.issuer_rut;
  d["receiver_rut"] = q.receiver_rut;
  d["doc_type"] = q.doc_type;
  d["folio"] = q.folio;
  d["date"] = q.date;
  d["amount"] = q.amount;
  d["signature_value"] = q.signature_value;
  return d;
}

}  // namespace

void bind_sii(py::module_& m) {
  py::module_ errors = py::module_::import("dte_native.errors");
  g_sii = new SiiErrorClasses{errors.attr("SiiTransportError"), errors.attr("SiiAuthError"),
                              errors.attr("SiiRejected"), errors.attr("SiiMalformedAnswer")};
  // Registered after the core's translator, so pybind11 tries it first.
  py::register_exception_translator(&translate_sii);

  py::class_<Client, std::shared_ptr<Client>>(m, "SiiClient")
      .def(py::init([](const py::dict& config, std::shared_ptr<dte::Certificate> cert) {
             auto cfg = config_from(config);
             std::shared_ptr<const dte::Certificate> c = cert;
             return nogil([&] { return std::make_shared<Client>(std::move(cfg), std::move(c)); });
           }),
           py::arg("config"), py::arg("cert"))
      .def_property_readonly("signer_rut", &Client::signer_rut)
      .def("endpoints",
           [](const Client& c) {
             py::dict d = endpoints_dict(c.config().endpoints);
             d["environment"] = dte::sii::to_string(c.config().environment);
             return d;
           })
      .def(
          "token",
          [](Client& c, const std::string& family, bool force_new) {
            return nogil([&] { return c.token(family, force_new); });
          },
          py::arg("family") = "soap", py::arg("force_new") = false)
      .def(
          "invalidate_token", [](Client& c, const std::string& family) { c.invalidate_token(family); },
          py::arg("family") = "soap")
      .def(
          "upload",
          [](Client& c, const py::bytes& envelope, const std::string& company, const std::string& filename,
             bool force_dte_upload) {
            dte::sii::UploadRequest req{std::string(envelope), company, filename};
            return to_dict(nogil([&] { return c.upload(req, force_dte_upload); }));
          },
          py::arg("envelope"), py::arg("company_rut") = "", py::arg("filename") = "envio.xml",
          py::arg("force_dte_upload") = false)
      .def(
          "envelope_status",
          [](Client& c, const std::string& track_id, const std::string& company, bool boleta,
             const std::string& kind) {
            auto k = dte::sii::envelope_kind_from_string(kind);
            return to_dict(nogil([&] { return c.envelope_status(track_id, company, boleta, k); }));
          },
          py::arg("track_id"), py::arg("company_rut"), py::arg("boleta") = false, py::arg("kind") = "auto")
      .def(
          "resend_mail",
          [](Client& c, const std::string& track_id, const std::string& company) {
            return to_dict(nogil([&] { return c.resend_mail(track_id, company); }));
          },
          py::arg("track_id"), py::arg("company_rut"))
      .def(
          "document_status",
          [](Client& c, const py::dict& q, bool advanced) {
            auto query = query_from(q);
            return to_dict(nogil([&] { return c.document_status(query, advanced); }));
          },
          py::arg("query"), py::arg("advanced") = false)
      .def(
          "boleta_document_status",
          [](Client& c, const py::dict& q) {
            auto query = query_from(q);
            return to_dict(nogil([&] { return c.boleta_document_status(query); }));
          },
          py::arg("query"))
      .def(
          "claim",
          [](Client& c, const std::string& issuer, int type, long long folio, const std::string& action) {
            return to_dict(nogil([&] { return c.claim(issuer, type, folio, action); }));
          },
          py::arg("issuer_rut"), py::arg("doc_type"), py::arg("folio"), py::arg("action"))
      .def(
          "claim_events",
          [](Client& c, const std::string& issuer, int type, long long folio) {
            return to_dict(nogil([&] { return c.claim_events(issuer, type, folio); }));
          },
          py::arg("issuer_rut"), py::arg("doc_type"), py::arg("folio"))
      .def(
          "transferable",
          [](Client& c, const std::string& issuer, int type, long long folio) {
            return to_dict(nogil([&] { return c.transferable(issuer, type, folio); }));
          },
          py::arg("issuer_rut"), py::arg("doc_type"), py::arg("folio"))
      .def(
          "reception_date",
          [](Client& c, const std::string& issuer, int type, long long folio) {
            return nogil([&] { return c.reception_date(issuer, type, folio); });
          },
          py::arg("issuer_rut"), py::arg("doc_type"), py::arg("folio"))
      .def(
          "upload_many",
          [](Client& c, const py::list& items) {
            std::vector<dte::sii::UploadRequest> reqs;
            for (const auto& item : items) {
              auto d = item.cast<py::dict>();
              reqs.push_back({d["envelope"].cast<std::string>(), get_or<std::string>(d, "company_rut", ""),
                              get_or<std::string>(d, "filename", "envio.xml")});
            }
            return batch_to_list(nogil([&] { return c.upload_many(reqs); }));
          },
          py::arg("items"))
      .def(
          "status_many",
          [](Client& c, const std::vector<std::pair<std::string, std::string>>& items, bool boleta) {
            return batch_to_list(nogil([&] { return c.status_many(items, boleta); }));
          },
          py::arg("items"), py::arg("boleta") = false)
      .def("breaker_states", [](Client& c) { return c.breaker_states(); });

  m.def(
      "sii_documents_of_envelope",
      [](const py::bytes& envelope) {
        std::string data(envelope);
        auto docs = nogil([&] { return dte::sii::documents_of_envelope(data); });
        py::list out;
        for (const auto& q : docs) out.append(query_to_dict(q));
        return out;
      },
      py::arg("envelope"));
  m.def("sii_state_table", [] {
    py::list out;
    for (const auto& r : dte::sii::state_table()) {
      py::dict d;
      d["service"] = r.service;
      d["code"] = r.code;
      d["meaning"] = r.meaning;
      d["final"] = r.final;
      d["verdict"] = r.verdict;
      d["source"] = r.source;
      out.append(d);
    }
    return out;
  });
  m.def(
      "sii_envelope_kind_of_root",
      [](const std::string& root) { return dte::sii::to_string(dte::sii::envelope_kind_of_root(root)); },
      py::arg("root"));
  m.def("sii_default_endpoints", [](const std::string& env, const std::string& base) {
    return endpoints_dict(dte::sii::default_endpoints(dte::sii::environment_from_string(env), base));
  }, py::arg("environment"), py::arg("base_url") = "");
}

}  // namespace dte_py

// The entry point module.cpp calls (declared there at global scope).
void register_sii(pybind11::module_& m) { dte_py::bind_sii(m); }
