// Bindings of the normalization kernel family (placeholder until the family lands).
#include "common.hpp"

namespace faltung::py_binding {
void bind_normalization(py::module_& m) { (void)m; }
}  // namespace faltung::py_binding
