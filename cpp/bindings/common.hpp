// Shared helpers of the binding translation units (private to cpp/bindings/).
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <unordered_map>
#include <utility>

#include "dte/report.hpp"
#include "dte/schema.hpp"
#include "dte/verify.hpp"

namespace dte_py {

namespace py = pybind11;

// Runs pure C++ work without the GIL. Arguments must already be C++ values and the result must
// be a C++ value: the GIL is taken back before anything touches a Python object.
template <typename F>
auto nogil(F&& fn) -> decltype(fn()) {
  py::gil_scoped_release release;
  return std::forward<F>(fn)();
}

// A Python string made once per call site and kept for the life of the process: the keys of the
// dicts we return come with every check of every document, and making them anew each time was a
// large part of converting a verification report.
#define DTE_PY_KEY(text)                                        \
  ([]() -> py::handle {                                         \
    static const py::handle interned = py::str(text).release(); \
    return interned;                                            \
  }())

// The same for values from a small vocabulary (check names, statuses, empty reasons); the GIL
// guards the table, which stops growing at a few hundred entries (then values are made anew).
inline py::object vocabulary_str(const std::string& s) {
  static auto* table = new std::unordered_map<std::string, py::handle>;
  auto it = table->find(s);
  if (it != table->end()) return py::reinterpret_borrow<py::object>(it->second);
  py::str made(s);
  if (table->size() < 512) table->emplace(s, made.inc_ref());
  return made;
}

inline py::dict to_dict(const dte::Check& c) {
  py::dict d;
  d[DTE_PY_KEY("name")] = vocabulary_str(c.name);
  d[DTE_PY_KEY("subject")] = c.subject;
  d[DTE_PY_KEY("status")] = vocabulary_str(dte::to_string(c.status));
  d[DTE_PY_KEY("reason")] = c.reason.empty() ? vocabulary_str(c.reason) : py::str(c.reason);
  return d;
}

// The facts of a verified document (verify's report and reception's documents), without `ok`,
// which each caller states its own way.
inline py::dict document_facts(const dte::VerifiedDocument& v) {
  py::dict d;
  d[DTE_PY_KEY("id")] = v.id;
  d[DTE_PY_KEY("doc_type")] = v.doc_type;
  d[DTE_PY_KEY("folio")] = v.folio;
  d[DTE_PY_KEY("issuer_rut")] = v.issuer_rut;
  d[DTE_PY_KEY("receiver_rut")] = v.receiver_rut;
  d[DTE_PY_KEY("issue_date")] = v.issue_date;
  d[DTE_PY_KEY("total")] = v.total;
  d[DTE_PY_KEY("signed_at")] = v.signed_at;
  return d;
}

inline py::dict to_dict(const dte::Finding& f) {
  py::dict d;
  d["severity"] = dte::to_string(f.severity);
  d["code"] = f.code;
  d["field"] = f.field;
  d["message"] = f.message;
  return d;
}

inline py::dict to_dict(const dte::ValidationResult& r) {
  py::list errors;
  for (const auto& issue : r.errors) {
    py::dict e;
    e["line"] = issue.line;
    e["path"] = issue.path;
    e["message"] = issue.message;
    errors.append(std::move(e));
  }
  py::dict d;
  d["valid"] = r.valid;
  d["schema"] = r.schema;
  d["errors"] = std::move(errors);
  return d;
}

template <typename T>
py::list to_list(const std::vector<T>& items) {
  py::list out;
  for (const auto& item : items) out.append(to_dict(item));
  return out;
}

void bind_errors(py::module_& m);
void bind_crypto(py::module_& m);
void bind_documents(py::module_& m);

}  // namespace dte_py
