// Bindings of the dense kernel family: dense_forward_f32/_f64, dense_backward_f32/_f64.
#include "faltung/dense.hpp"

#include "common.hpp"

namespace faltung::py_binding {

namespace {

// inp (B,IN), weight (IN,OUT), bias (OUT) or None -> out (B,OUT)
template <typename T>
Arr<T> dense_forward_py(const Arr<T>& inp, const Arr<T>& weight, const py::object& bias_obj) {
  const std::string op = "dense";
  check_rank(inp, 2, op, "inp");
  check_rank(weight, 2, op, "weight");
  const int64_t B = inp.shape(0), IN = inp.shape(1), OUT = weight.shape(1);
  check_shape(weight, {IN, OUT}, op, "weight");
  Arr<T> bias;
  if (!bias_obj.is_none()) {
    bias = bias_obj.cast<Arr<T>>();
    check_shape(bias, {OUT}, op, "bias");
  }
  Arr<T> out = empty<T>({B, OUT});
  const T* bias_p = bias_obj.is_none() ? nullptr : bias.data();
  const T *inp_p = inp.data(), *w_p = weight.data();
  T* out_p = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    dense_forward<T>(out_p, inp_p, w_p, bias_p, B, IN, OUT);
  }
  return out;
}

// dout (B,OUT), inp (B,IN), weight (IN,OUT) -> (dinp (B,IN) | None, dweight (IN,OUT) | None,
// dbias (OUT) | None)
template <typename T>
py::tuple dense_backward_py(const Arr<T>& dout, const Arr<T>& inp, const Arr<T>& weight,
                            bool need_dinp, bool need_dweight, bool need_dbias) {
  const std::string op = "dense_backward";
  check_rank(inp, 2, op, "inp");
  check_rank(weight, 2, op, "weight");
  const int64_t B = inp.shape(0), IN = inp.shape(1), OUT = weight.shape(1);
  check_shape(weight, {IN, OUT}, op, "weight");
  check_shape(dout, {B, OUT}, op, "dout");
  py::object dinp = py::none(), dweight = py::none(), dbias = py::none();
  T *dinp_p = nullptr, *dweight_p = nullptr, *dbias_p = nullptr;
  if (need_dinp) {
    auto a = empty<T>({B, IN});
    dinp_p = a.mutable_data();
    dinp = a;
  }
  if (need_dweight) {
    auto a = empty<T>({IN, OUT});
    dweight_p = a.mutable_data();
    dweight = a;
  }
  if (need_dbias) {
    auto a = empty<T>({OUT});
    dbias_p = a.mutable_data();
    dbias = a;
  }
  const T *dout_p = dout.data(), *inp_p = inp.data(), *w_p = weight.data();
  {
    py::gil_scoped_release nogil;
    dense_backward<T>(dinp_p, dweight_p, dbias_p, dout_p, inp_p, w_p, B, IN, OUT);
  }
  return py::make_tuple(dinp, dweight, dbias);
}

template <typename T>
void bind_typed(py::module_& m, const std::string& sfx) {
  m.def(("dense_forward" + sfx).c_str(), &dense_forward_py<T>, py::arg("inp"), py::arg("weight"),
        py::arg("bias") = py::none(),
        "inp (B,IN) @ weight (IN,OUT) + bias (OUT) -> out (B,OUT)");
  m.def(("dense_backward" + sfx).c_str(), &dense_backward_py<T>, py::arg("dout"), py::arg("inp"),
        py::arg("weight"), py::arg("need_dinp") = true, py::arg("need_dweight") = true,
        py::arg("need_dbias") = true,
        "-> (dinp (B,IN), dweight (IN,OUT), dbias (OUT)); None where not needed");
}

}  // namespace

void bind_dense(py::module_& m) {
  bind_typed<float>(m, "_f32");
  bind_typed<double>(m, "_f64");
}

}  // namespace faltung::py_binding
