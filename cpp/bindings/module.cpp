// dte_native._core: converts arguments, releases the GIL around C++ work, maps exceptions.
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "dte/errors.hpp"
#include "dte/rut.hpp"

namespace dte_py {

namespace {

// The exception classes live in Python (dte_native/errors.py) so that each can inherit both
// DteError and the builtin that fits; the translator only instantiates them. The objects are
// deliberately leaked: they must outlive every translation, including during interpreter exit.
struct ErrorClasses {
  py::object base, xml, rut, cert, caf, signature, document, schema;
};
ErrorClasses* g_errors = nullptr;

[[noreturn]] void raise_as(const py::object& cls, const dte::DteError& e) {
  py::object instance = cls(py::str(e.what()), py::str(e.code()));
  PyErr_SetObject(cls.ptr(), instance.ptr());
  throw py::error_already_set();
}

void translate(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const dte::XmlSyntaxError& e) {
    raise_as(g_errors->xml, e);
  } catch (const dte::RutError& e) {
    raise_as(g_errors->rut, e);
  } catch (const dte::CertificateError& e) {
    raise_as(g_errors->cert, e);
  } catch (const dte::CafError& e) {
    raise_as(g_errors->caf, e);
  } catch (const dte::SignatureError& e) {
    raise_as(g_errors->signature, e);
  } catch (const dte::DocumentError& e) {
    raise_as(g_errors->document, e);
  } catch (const dte::SchemaError& e) {
    raise_as(g_errors->schema, e);
  } catch (const dte::DteError& e) {
    raise_as(g_errors->base, e);
  } catch (const nlohmann::json::exception& e) {
    // A JSON value of the wrong kind that a module did not catch is still bad input.
    raise_as(g_errors->document, dte::DocumentError("input.json", e.what()));
  }
}

}  // namespace

void bind_errors(py::module_& m) {
  py::module_ errors = py::module_::import("dte_native.errors");
  g_errors = new ErrorClasses{errors.attr("DteError"),         errors.attr("XmlSyntaxError"),
                              errors.attr("RutError"),         errors.attr("CertificateError"),
                              errors.attr("CafError"),         errors.attr("SignatureError"),
                              errors.attr("DocumentError"),    errors.attr("SchemaError")};
  py::register_exception_translator(&translate);
  m.def("_raise_for_test", [](const std::string& kind, const std::string& code) {
    // Lets the tests check the mapping of every C++ class without needing a failing module.
    if (kind == "xml") throw dte::XmlSyntaxError(code, "xml");
    if (kind == "rut") throw dte::RutError(code, "rut");
    if (kind == "cert") throw dte::CertificateError(code, "cert");
    if (kind == "caf") throw dte::CafError(code, "caf");
    if (kind == "signature") throw dte::SignatureError(code, "signature");
    if (kind == "document") throw dte::DocumentError(code, "document");
    if (kind == "schema") throw dte::SchemaError(code, "schema");
    throw dte::DteError(code, "base");
  });
}

}  // namespace dte_py

void register_sii(pybind11::module_& m);  // cpp/bindings/sii.cpp
void register_reception(pybind11::module_& m);  // cpp/bindings/reception.cpp
void register_books(pybind11::module_& m);  // cpp/bindings/books.cpp
void register_redis(pybind11::module_& m);  // cpp/bindings/redis.cpp

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "dte_native C++ core (private; use the dte_native package)";
  m.attr("__version__") = DTE_VERSION;

  dte_py::bind_errors(m);

  m.def("rut_normalize", [](const std::string& s) { return dte::Rut::parse(s).str(); },
        py::arg("text"));
  m.def("rut_format", [](const std::string& s) { return dte::Rut::parse(s).formatted(); },
        py::arg("text"));
  m.def("rut_is_valid", [](const std::string& s) { return dte::Rut::try_parse(s).has_value(); },
        py::arg("text"));
  m.def("rut_check_digit",
        [](std::uint32_t body) { return std::string(1, dte::Rut::check_digit(body)); },
        py::arg("body"));

  dte_py::bind_crypto(m);
  dte_py::bind_documents(m);
  register_sii(m);
  register_reception(m);
  register_books(m);
  register_redis(m);
}
