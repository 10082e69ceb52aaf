// dte_native._core: converts arguments, releases the GIL around C++ work, maps exceptions.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "dte/errors.hpp"
#include "dte/rut.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "dte_native C++ core (private; use the dte_native package)";
  m.attr("__version__") = DTE_VERSION;

  m.def("rut_normalize", [](const std::string& s) { return dte::Rut::parse(s).str(); });
}
