// Bindings of dte/books.hpp and dte/rcv.hpp. Book input and normalised output cross as JSON text
// (like the document model); RCV rows and findings as dicts that dte_native/books.py turns into
// dataclasses. Every call converts first, then releases the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common.hpp"
#include "dte/books.hpp"
#include "dte/document.hpp"
#include "dte/rcv.hpp"
#include "dte/sii_client.hpp"

namespace dte_py {
namespace {

std::string dump_json(const dte::books::json& j) {
  return j.dump(-1, ' ', false, dte::books::json::error_handler_t::replace);
}

dte::books::json parse_json(const std::string& text) { return dte::parse_input(text); }

py::dict issue_dict(const dte::books::RowIssue& i) {
  py::dict d;
  d["row"] = i.row;
  d["column"] = i.column;
  d["message"] = i.message;
  return d;
}

py::dict row_dict(const dte::rcv::Row& r) {
  py::dict d;
  d["line"] = r.line;
  d["nro"] = r.nro;
  d["register_kind"] = r.register_kind;
  d["state"] = r.state;
  d["doc_type"] = r.doc_type;
  d["operation"] = r.operation;
  d["issuer_rut"] = r.issuer_rut;
  d["counterpart_rut"] = r.counterpart_rut;
  d["counterpart_name"] = r.counterpart_name;
  d["folio"] = r.folio;
  d["issue_date"] = r.issue_date;
  d["received_at"] = r.received_at;
  d["acknowledged_at"] = r.acknowledged_at;
  d["claimed_at"] = r.claimed_at;
  d["exempt"] = r.exempt;
  d["net"] = r.net;
  d["vat"] = r.vat;
  d["vat_non_recoverable"] = r.vat_non_recoverable;
  d["vat_non_recoverable_code"] = r.vat_non_recoverable_code;
  d["total"] = r.total;
  py::list taxes;
  for (const auto& t : r.other_taxes) {
    py::dict x;
    x["code"] = t.code;
    x["amount"] = t.amount;
    x["rate"] = t.rate;
    taxes.append(std::move(x));
  }
  d["other_taxes"] = std::move(taxes);
  py::list refs;
  for (const auto& ref : r.references) {
    py::dict x;
    x["doc_type"] = ref.doc_type;
    x["folio"] = ref.folio;
    refs.append(std::move(x));
  }
  d["references"] = std::move(refs);
  d["cells"] = r.cells;
  return d;
}

template <typename T>
T get(const py::dict& d, const char* key, T fallback) {
  if (!d.contains(key) || d[key].is_none()) return fallback;
  return d[key].cast<T>();
}

dte::rcv::Row row_from(const py::dict& d) {
  dte::rcv::Row r;
  r.line = get<int>(d, "line", 0);
  r.nro = get<long long>(d, "nro", 0);
  r.register_kind = get<std::string>(d, "register_kind", "");
  r.state = get<std::string>(d, "state", "");
  r.doc_type = get<int>(d, "doc_type", 0);
  r.issuer_rut = get<std::string>(d, "issuer_rut", "");
  r.counterpart_rut = get<std::string>(d, "counterpart_rut", "");
  r.counterpart_name = get<std::string>(d, "counterpart_name", "");
  r.folio = get<long long>(d, "folio", 0);
  r.exempt = get<long long>(d, "exempt", 0);
  r.net = get<long long>(d, "net", 0);
  r.vat = get<long long>(d, "vat", 0);
  r.vat_non_recoverable = get<long long>(d, "vat_non_recoverable", 0);
  r.total = get<long long>(d, "total", 0);
  return r;
}

dte::rcv::LocalDocument doc_from(const py::dict& d) {
  dte::rcv::LocalDocument x;
  x.issuer_rut = get<std::string>(d, "issuer_rut", "");
  x.doc_type = get<int>(d, "doc_type", 0);
  x.folio = get<long long>(d, "folio", 0);
  x.exempt = get<long long>(d, "exempt", -1);
  x.net = get<long long>(d, "net", -1);
  x.vat = get<long long>(d, "vat", -1);
  x.total = get<long long>(d, "total", -1);
  x.state = get<std::string>(d, "state", "");
  x.reference = get<std::string>(d, "reference", "");
  return x;
}

py::dict parse_result_dict(const dte::rcv::ParseResult& r) {
  py::dict d;
  d["register_kind"] = r.register_kind;
  d["state"] = r.state;
  d["columns"] = r.columns;
  py::list rows;
  for (const auto& row : r.rows) rows.append(row_dict(row));
  d["rows"] = std::move(rows);
  py::list errors;
  for (const auto& e : r.errors) errors.append(issue_dict(e));
  d["errors"] = std::move(errors);
  d["warnings"] = r.warnings;
  return d;
}

dte::books::SignOptions sign_options(const std::string& tmst, const dte::SchemaSet* schemas) {
  dte::books::SignOptions o;
  o.tmst = tmst;
  o.schemas = schemas;
  return o;
}

}  // namespace
}  // namespace dte_py

void register_books(pybind11::module_& m) {
  namespace py = pybind11;
  using dte_py::nogil;
  using Signer = std::string (*)(const dte::books::json&, const dte::Certificate&,
                                 const dte::books::SignOptions&);
  using Normalizer = dte::books::json (*)(const dte::books::json&);
  struct Book {
    const char* name;
    Normalizer normalize;
    Signer sign;
  };
  for (const Book& b : {Book{"libro_cv", &dte::books::normalize_libro_cv, &dte::books::sign_libro_cv},
                        Book{"libro_guia", &dte::books::normalize_libro_guia, &dte::books::sign_libro_guia},
                        Book{"consumo_folios", &dte::books::normalize_consumo_folios,
                             &dte::books::sign_consumo_folios}}) {
    Normalizer normalize = b.normalize;
    Signer sign = b.sign;
    m.def(
        (std::string("normalize_") + b.name).c_str(),
        [normalize](const std::string& input_json) {
          return nogil([&] { return dte_py::dump_json(normalize(dte_py::parse_json(input_json))); });
        },
        py::arg("input_json"));
    m.def(
        (std::string("sign_") + b.name).c_str(),
        [sign](const std::string& input_json, const dte::Certificate& cert, const std::string& tmst,
               const dte::SchemaSet* schemas) {
          return py::bytes(nogil([&] {
            return sign(dte_py::parse_json(input_json), cert, dte_py::sign_options(tmst, schemas));
          }));
        },
        py::arg("input_json"), py::arg("cert"), py::arg("tmst") = "", py::arg("schemas") = nullptr);
  }
  using Segmenter = std::vector<dte::books::json> (*)(const dte::books::json&, std::size_t);
  using SegmentSigner = std::vector<std::string> (*)(const dte::books::json&, const dte::Certificate&,
                                                     std::size_t, const dte::books::SignOptions&);
  struct Segmented {
    const char* name;
    Segmenter segment;
    SegmentSigner sign;
  };
  for (const Segmented& b :
       {Segmented{"libro_cv", &dte::books::segment_libro_cv, &dte::books::sign_libro_cv_segments},
        Segmented{"libro_guia", &dte::books::segment_libro_guia, &dte::books::sign_libro_guia_segments}}) {
    Segmenter segment = b.segment;
    SegmentSigner sign = b.sign;
    m.def(
        (std::string("segment_") + b.name).c_str(),
        [segment](const std::string& input_json, std::size_t max_detail) {
          return nogil([&] {
            std::vector<std::string> out;
            for (const auto& seg : segment(dte_py::parse_json(input_json), max_detail))
              out.push_back(dte_py::dump_json(seg));
            return out;
          });
        },
        py::arg("input_json"), py::arg("max_detail"));
    m.def(
        (std::string("sign_") + b.name + "_segments").c_str(),
        [sign](const std::string& input_json, const dte::Certificate& cert, std::size_t max_detail,
               const std::string& tmst, const dte::SchemaSet* schemas) {
          auto signed_parts = nogil([&] {
            return sign(dte_py::parse_json(input_json), cert, max_detail, dte_py::sign_options(tmst, schemas));
          });
          py::list out;
          for (const auto& x : signed_parts) out.append(py::bytes(x));
          return out;
        },
        py::arg("input_json"), py::arg("cert"), py::arg("max_detail"), py::arg("tmst") = "",
        py::arg("schemas") = nullptr);
  }
  m.def(
      "book_entries_from_csv",
      [](const std::string& csv, const std::string& kind) {
        auto r = nogil([&] { return dte::books::entries_from_csv(csv, kind); });
        py::dict d;
        d["detalle_json"] = dte_py::dump_json(r.detalle);
        d["extra_json"] = dte_py::dump_json(r.extra);
        py::list issues;
        for (const auto& i : r.issues) issues.append(dte_py::issue_dict(i));
        d["issues"] = std::move(issues);
        return d;
      },
      py::arg("csv"), py::arg("kind") = "cv");
  m.def(
      "rcv_parse_csv",
      [](const std::string& text, const std::string& state) {
        auto r = nogil([&] { return dte::rcv::parse_csv(text, state); });
        return dte_py::parse_result_dict(r);
      },
      py::arg("text"), py::arg("state") = "");
  m.def(
      "rcv_download",
      [](dte::sii::Client& client, const std::string& company_rut, const std::string& period,
         const std::string& kind, const std::string& state, const std::vector<int>& doc_types,
         const std::string& base_url) {
        dte::rcv::DownloadRequest req{company_rut, period, kind, state, doc_types, base_url};
        auto r = nogil([&] { return dte::rcv::download(client, req); });
        py::dict d;
        d["period"] = r.period;
        d["kind"] = r.kind;
        d["state"] = r.state;
        py::list summary;
        for (const auto& t : r.summary) {
          py::dict x;
          x["doc_type"] = t.doc_type;
          x["documents"] = t.documents;
          x["exempt"] = t.exempt;
          x["net"] = t.net;
          x["vat"] = t.vat;
          x["total"] = t.total;
          summary.append(std::move(x));
        }
        d["summary"] = std::move(summary);
        d["csv"] = py::bytes(r.csv);
        d["parsed"] = dte_py::parse_result_dict(r.parsed);
        d["requests"] = r.requests;
        return d;
      },
      py::arg("client"), py::arg("company_rut"), py::arg("period"), py::arg("kind"),
      py::arg("state") = "", py::arg("doc_types") = std::vector<int>{}, py::arg("base_url") = "");
  m.def(
      "rcv_reconcile",
      [](const py::list& rows, const py::list& documents, const std::string& owner_rut,
         long long tolerance) {
        std::vector<dte::rcv::Row> r;
        for (const auto& item : rows) r.push_back(dte_py::row_from(item.cast<py::dict>()));
        std::vector<dte::rcv::LocalDocument> docs;
        for (const auto& item : documents) docs.push_back(dte_py::doc_from(item.cast<py::dict>()));
        dte::rcv::ReconcileOptions options;
        options.owner_rut = owner_rut;
        options.tolerance = tolerance;
        auto found = nogil([&] { return dte::rcv::reconcile(r, docs, options); });
        py::list out;
        for (const auto& f : found) {
          py::dict d;
          d["kind"] = f.kind;
          d["issuer_rut"] = f.issuer_rut;
          d["doc_type"] = f.doc_type;
          d["folio"] = f.folio;
          d["field"] = f.field;
          d["ours"] = f.ours;
          d["sii"] = f.sii;
          d["reference"] = f.reference;
          d["rcv_line"] = f.rcv_line;
          d["message"] = f.message;
          out.append(std::move(d));
        }
        return out;
      },
      py::arg("rows"), py::arg("documents"), py::arg("owner_rut") = "", py::arg("tolerance") = 0);
}
