// Bindings of the pooling kernel family (placeholder until the family lands).
#include "common.hpp"

namespace faltung::py_binding {
void bind_pooling(py::module_& m) { (void)m; }
}  // namespace faltung::py_binding
