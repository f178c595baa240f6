// Bindings of the dense kernel family (placeholder until the family lands).
#include "common.hpp"

namespace faltung::py_binding {
void bind_dense(py::module_& m) { (void)m; }
}  // namespace faltung::py_binding
