// Bindings of the embedding kernel family: embedding_forward_f32/_f64,
// embedding_backward_f32/_f64. indices (any shape, int32), table (V,D),
// out / dout indices.shape + (D,).
#include "faltung/embedding.hpp"

#include "common.hpp"

namespace faltung::py_binding {

namespace {
using Idx = py::array_t<int32_t, py::array::c_style>;

// `indices` as a C-contiguous int32 array. Other dtypes raise TypeError instead of being
// cast here: a silent int64 -> int32 cast would wrap large indices into valid ones (the ops
// layer converts with a range check first).
Idx as_indices(const py::array& a, const std::string& op) {
  if (!a.dtype().is(py::dtype::of<int32_t>()))
    throw py::type_error(op + ": expected `indices` of dtype int32, received dtype " +
                         std::string(py::str(a.dtype())));
  return Idx::ensure(a);  // copies only a non-contiguous array
}

// indices (...) int32, table (V,D) -> out (..., D)
template <typename T>
Arr<T> embedding_forward_py(const py::array& indices, const Arr<T>& table, bool ref) {
  const std::string op = "embedding";
  const Idx idx = as_indices(indices, op);
  check_rank(table, 2, op, "table");
  const int64_t N = idx.size(), V = table.shape(0), D = table.shape(1);
  std::vector<int64_t> out_shape = shape_of(idx);
  out_shape.push_back(D);
  Arr<T> out = empty<T>(out_shape);
  const int32_t* idx_p = idx.data();
  const T* table_p = table.data();
  T* out_p = out.mutable_data();
  {
    py::gil_scoped_release nogil;  // the kernel's index check throws with the GIL released;
                                   // the guard takes it back while the exception unwinds
    if (ref) embedding_forward_naive<T>(out_p, idx_p, table_p, N, V, D);
    else embedding_forward<T>(out_p, idx_p, table_p, N, V, D);
  }
  return out;
}

// dout (..., D), indices (...) int32 -> dtable (input_dim, D)
template <typename T>
Arr<T> embedding_backward_py(const Arr<T>& dout, const py::array& indices, int64_t input_dim,
                             bool ref) {
  const std::string op = "embedding_backward";
  const Idx idx = as_indices(indices, op);
  if (input_dim < 0)
    throw py::value_error(op + ": expected `input_dim` >= 0, received " +
                          std::to_string(input_dim));
  if (dout.ndim() != idx.ndim() + 1)
    throw py::value_error(op + ": expected `dout` of rank " + std::to_string(idx.ndim() + 1) +
                          " (indices.shape + (output_dim,)), received shape " +
                          shape_str(shape_of(dout)));
  const int64_t N = idx.size(), V = input_dim, D = dout.shape(idx.ndim());
  std::vector<int64_t> expected = shape_of(idx);
  expected.push_back(D);
  check_shape(dout, expected, op, "dout");
  Arr<T> dtable = empty<T>({V, D});
  const int32_t* idx_p = idx.data();
  const T* dout_p = dout.data();
  T* dtable_p = dtable.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (ref) embedding_backward_naive<T>(dtable_p, dout_p, idx_p, N, V, D);
    else embedding_backward<T>(dtable_p, dout_p, idx_p, N, V, D);
  }
  return dtable;
}

template <typename T>
void bind_typed(py::module_& m, const std::string& sfx) {
  m.def(("embedding_forward" + sfx).c_str(), &embedding_forward_py<T>, py::arg("indices"),
        py::arg("table"), py::arg("ref") = false,
        "indices (...) int32, table (V,D) -> out (..., D) = table[indices]; ValueError for an "
        "index outside [0, V). ref=True runs the naive oracle.");
  m.def(("embedding_backward" + sfx).c_str(), &embedding_backward_py<T>, py::arg("dout"),
        py::arg("indices"), py::arg("input_dim"), py::arg("ref") = false,
        "dout (..., D), indices (...) int32 -> dtable (input_dim, D), the scatter-add of the "
        "dout rows (duplicated indices accumulate). ref=True runs the naive oracle.");
}

}  // namespace

void bind_embedding(py::module_& m) {
  bind_typed<float>(m, "_f32");
  bind_typed<double>(m, "_f64");
}

}  // namespace faltung::py_binding
