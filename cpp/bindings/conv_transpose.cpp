// Bindings of the conv_transpose kernel family (placeholder until the family lands).
#include "common.hpp"

namespace faltung::py_binding {
void bind_conv_transpose(py::module_& m) { (void)m; }
}  // namespace faltung::py_binding
