// Bindings of the resampling kernel family (placeholder until the family lands).
#include "common.hpp"

namespace faltung::py_binding {
void bind_resampling(py::module_& m) { (void)m; }
}  // namespace faltung::py_binding
