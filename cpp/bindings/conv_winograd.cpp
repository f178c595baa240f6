// Bindings of the Winograd 3x3 convolution kernels (conv_winograd.hpp), float32 and float64
// overloads of the same names. Arguments follow the kernels: x (N,H,W,C), w (3,3,C,K),
// b (K,) or None, dout (N,OH,OW,K).
#include <pybind11/stl.h>

#include <optional>

#include "common.hpp"
#include "faltung/conv_winograd.hpp"

namespace faltung::py_binding {

namespace {

Conv2dShape make_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t OH,
                       int64_t OW, int64_t pad_top, int64_t pad_left) {
  Conv2dShape s{N, H, W, C, K, 3, 3, OH, OW, 1, 1, 1, 1, pad_top, pad_left, 1};
  return s;
}

void check_sizes(int64_t OH, int64_t OW, const std::string& op, const char* a, const char* b) {
  if (OH < 0 || OW < 0)
    throw py::value_error(op + ": expected non-negative `" + a + "` and `" + b + "`, received " +
                          std::to_string(OH) + " and " + std::to_string(OW));
}

template <class T>
Arr<T> forward(Arr<T> x, Arr<T> w, std::optional<Arr<T>> b, int64_t pad_top, int64_t pad_left,
               int64_t OH, int64_t OW, bool relu) {
  const std::string op = "conv2d_winograd_forward";
  check_rank(x, 4, op, "x");
  check_rank(w, 4, op, "w");
  const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3), K = w.shape(3);
  check_shape(w, {3, 3, C, K}, op, "w");
  if (b) check_shape(*b, {K}, op, "b");
  check_sizes(OH, OW, op, "OH", "OW");
  const Conv2dShape s = make_shape(N, H, W, C, K, OH, OW, pad_top, pad_left);
  Arr<T> out = empty<T>({N, OH, OW, K});
  const T* bp = b ? b->data() : nullptr;
  T* op_ = out.mutable_data();
  {
    py::gil_scoped_release release;
    conv2d_winograd_forward<T>(op_, x.data(), w.data(), bp, s, relu);
  }
  return out;
}

template <class T>
Arr<T> backward_data(Arr<T> dout, Arr<T> w, int64_t H, int64_t W, int64_t pad_top, int64_t pad_left) {
  const std::string op = "conv2d_winograd_backward_data";
  check_rank(dout, 4, op, "dout");
  check_rank(w, 4, op, "w");
  const int64_t N = dout.shape(0), OH = dout.shape(1), OW = dout.shape(2), K = dout.shape(3);
  const int64_t C = w.shape(2);
  check_shape(w, {3, 3, C, K}, op, "w");
  check_sizes(H, W, op, "H", "W");
  const Conv2dShape s = make_shape(N, H, W, C, K, OH, OW, pad_top, pad_left);
  Arr<T> dinp = empty<T>({N, H, W, C});
  T* dp = dinp.mutable_data();
  {
    py::gil_scoped_release release;
    conv2d_winograd_backward_data<T>(dp, dout.data(), w.data(), s);
  }
  return dinp;
}

template <class T>
Arr<T> backward_filter(Arr<T> dout, Arr<T> x, int64_t pad_top, int64_t pad_left) {
  const std::string op = "conv2d_winograd_backward_filter";
  check_rank(dout, 4, op, "dout");
  check_rank(x, 4, op, "x");
  const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
  const int64_t OH = dout.shape(1), OW = dout.shape(2), K = dout.shape(3);
  check_shape(dout, {N, OH, OW, K}, op, "dout");
  const Conv2dShape s = make_shape(N, H, W, C, K, OH, OW, pad_top, pad_left);
  Arr<T> dw = empty<T>({3, 3, C, K});
  T* dp = dw.mutable_data();
  {
    py::gil_scoped_release release;
    conv2d_winograd_backward_filter<T>(dp, dout.data(), x.data(), s);
  }
  return dw;
}

template <class T>
void def_all(py::module_& m) {
  m.def("conv2d_winograd_forward", &forward<T>, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("pad_top"), py::arg("pad_left"), py::arg("OH"), py::arg("OW"), py::arg("relu") = false,
        "Winograd 3x3 stride-1 conv: x (N,H,W,C), w (3,3,C,K), b (K,) or None -> (N,OH,OW,K); "
        "relu=True applies max(., 0).");
  m.def("conv2d_winograd_backward_data", &backward_data<T>, py::arg("dout"), py::arg("w"),
        py::arg("H"), py::arg("W"), py::arg("pad_top"), py::arg("pad_left"),
        "Gradient wrt the input: dout (N,OH,OW,K), w (3,3,C,K) -> (N,H,W,C).");
  m.def("conv2d_winograd_backward_filter", &backward_filter<T>, py::arg("dout"), py::arg("x"),
        py::arg("pad_top"), py::arg("pad_left"),
        "Gradient wrt the kernel: dout (N,OH,OW,K), x (N,H,W,C) -> (3,3,C,K).");
}

}  // namespace

void bind_conv_winograd(py::module_& m) {
  def_all<float>(m);
  def_all<double>(m);
  m.def("winograd_set_tile", &winograd_set_tile, py::arg("m"),
        "Output tile size of the Winograd kernels: 0 (auto, default), 4 (F(4x4,3x3)) or 2.");
  m.def("winograd_get_tile", &winograd_get_tile);
  m.def("winograd_set_filter_algo", &winograd_set_filter_algo, py::arg("algo"),
        "Backward-filter algorithm: 0 Winograd-domain GEMMs, 1 im2col^T @ dout.");
  m.def("winograd_get_filter_algo", &winograd_get_filter_algo);
}

}  // namespace faltung::py_binding
