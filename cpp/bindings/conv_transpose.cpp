// Bindings of the conv_transpose kernel family (2D; the ops layer maps 1D onto it).
//
//   conv_transpose2d_{f32,f64}(x, kernel, bias, strides, padding, output_padding,
//                              dilation_rate, algorithm) -> y
//   conv_transpose2d_backward_{f32,f64}(dy, x, kernel, strides, padding, output_padding,
//                              dilation_rate, need_dx, need_dkernel, need_dbias, algorithm)
//                              -> (dx | None, dkernel | None, dbias | None)
// x (N,IH,IW,CI), kernel (KH,KW,F,CI) (Keras layout), bias (F,) or None -> y (N,H,W,F).
// padding "valid" | "same"; output_padding None or (ph, pw); algorithm "auto" | "reference" |
// "gemm" | "phased" (forward algorithms; see use_reference).
#include <pybind11/stl.h>

#include <array>
#include <optional>

#include "common.hpp"
#include "faltung/conv_transpose.hpp"

namespace faltung::py_binding {
namespace {

using Pair = std::array<int64_t, 2>;
const char* kOp = "conv_transpose";

bool parse_padding(const std::string& padding) {
  if (padding != "valid" && padding != "same")
    throw py::value_error(std::string(kOp) + ": expected padding 'valid' or 'same', received '" +
                          padding + "'");
  return padding == "same";
}

// "auto" | "reference" | "gemm" | "phased" (the last two choose the forward's fast algorithm;
// the backward has one fast path, which all three non-reference names run).
bool use_reference(const std::string& algorithm) {
  if (algorithm != "auto" && algorithm != "reference" && algorithm != "gemm" && algorithm != "phased")
    throw py::value_error(std::string(kOp) + ": expected algorithm 'auto', 'reference', 'gemm' or 'phased', "
                          "received '" + algorithm + "'");
  return algorithm == "reference";
}

// Checks x and kernel and returns the geometry (throws ValueError on bad input).
template <typename T>
Conv2dShape geometry(const Arr<T>& x, const Arr<T>& kernel, Pair strides, const std::string& padding,
                     std::optional<Pair> output_padding, Pair dilation) {
  check_rank(x, 4, kOp, "inputs");
  check_rank(kernel, 4, kOp, "kernel");
  const auto xs = shape_of(x), ks = shape_of(kernel);
  if (ks[3] != xs[3])
    throw py::value_error(std::string(kOp) + ": expected `kernel` of shape " +
                          shape_str({ks[0], ks[1], ks[2], xs[3]}) + " (last axis = input channels " +
                          std::to_string(xs[3]) + "), received shape " + shape_str(ks));
  const Pair op = output_padding ? *output_padding : Pair{-1, -1};
  if (output_padding && (op[0] < 0 || op[1] < 0))
    throw py::value_error(std::string(kOp) + ": expected output_padding >= 0, received " +
                          shape_str({op[0], op[1]}));
  return conv_transpose2d_shape(xs[0], xs[1], xs[2], xs[3], ks[0], ks[1], ks[2], strides[0],
                                strides[1], dilation[0], dilation[1], parse_padding(padding), op[0],
                                op[1]);
}

template <typename T>
Arr<T> forward(const Arr<T>& x, const Arr<T>& kernel, const std::optional<Arr<T>>& bias, Pair strides,
               const std::string& padding, std::optional<Pair> output_padding, Pair dilation,
               const std::string& algorithm) {
  const Conv2dShape s = geometry(x, kernel, strides, padding, output_padding, dilation);
  const bool ref = use_reference(algorithm);
  if (bias) check_shape(*bias, {s.C}, kOp, "bias");
  Arr<T> y = empty<T>({s.N, s.H, s.W, s.C});
  const T* b = bias ? bias->data() : nullptr;
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    if (ref)
      conv_transpose2d_forward_ref<T>(yp, x.data(), kernel.data(), b, s);
    else if (algorithm == "gemm")
      conv_transpose2d_forward_gemm<T>(yp, x.data(), kernel.data(), b, s);
    else if (algorithm == "phased")
      conv_transpose2d_forward_phased<T>(yp, x.data(), kernel.data(), b, s);
    else
      conv_transpose2d_forward<T>(yp, x.data(), kernel.data(), b, s);
  }
  return y;
}

template <typename T>
py::tuple backward(const Arr<T>& dy, const Arr<T>& x, const Arr<T>& kernel, Pair strides,
                   const std::string& padding, std::optional<Pair> output_padding, Pair dilation,
                   bool need_dx, bool need_dkernel, bool need_dbias, const std::string& algorithm) {
  const Conv2dShape s = geometry(x, kernel, strides, padding, output_padding, dilation);
  const bool ref = use_reference(algorithm);
  check_shape(dy, {s.N, s.H, s.W, s.C}, kOp, "dy");
  py::object dx = py::none(), dk = py::none(), db = py::none();
  T *dxp = nullptr, *dkp = nullptr, *dbp = nullptr;
  if (need_dx) {
    auto a = empty<T>({s.N, s.OH, s.OW, s.K});
    dxp = a.mutable_data();
    dx = a;
  }
  if (need_dkernel) {
    auto a = empty<T>({s.KH, s.KW, s.C, s.K});
    dkp = a.mutable_data();
    dk = a;
  }
  if (need_dbias) {
    auto a = empty<T>({s.C});
    dbp = a.mutable_data();
    db = a;
  }
  {
    py::gil_scoped_release release;
    if (ref)
      conv_transpose2d_backward_ref<T>(dxp, dkp, dbp, dy.data(), x.data(), kernel.data(), s);
    else
      conv_transpose2d_backward<T>(dxp, dkp, dbp, dy.data(), x.data(), kernel.data(), s);
  }
  return py::make_tuple(dx, dk, db);
}

template <typename T>
void bind_dtype(py::module_& m, const std::string& suffix) {
  m.def(("conv_transpose2d" + suffix).c_str(), &forward<T>, py::arg("x"), py::arg("kernel"),
        py::arg("bias"), py::arg("strides"), py::arg("padding"), py::arg("output_padding"),
        py::arg("dilation_rate"), py::arg("algorithm") = "auto",
        "Transposed 2D convolution, Keras 3 semantics: x (N,IH,IW,CI), kernel (KH,KW,F,CI), "
        "bias (F,) or None -> y (N,H,W,F).");
  m.def(("conv_transpose2d_backward" + suffix).c_str(), &backward<T>, py::arg("dy"), py::arg("x"),
        py::arg("kernel"), py::arg("strides"), py::arg("padding"), py::arg("output_padding"),
        py::arg("dilation_rate"), py::arg("need_dx") = true, py::arg("need_dkernel") = true,
        py::arg("need_dbias") = true, py::arg("algorithm") = "auto",
        "Gradients of conv_transpose2d: -> (dx, dkernel, dbias), None where not needed.");
}

}  // namespace

void bind_conv_transpose(py::module_& m) {
  bind_dtype<float>(m, "_f32");
  bind_dtype<double>(m, "_f64");
  m.def(
      "conv_transpose_output_length",
      [](int64_t in, int64_t k, int64_t stride, int64_t dil, const std::string& padding,
         std::optional<int64_t> output_padding) {
        return conv_transpose_dim(in, k, stride, dil, parse_padding(padding), output_padding.value_or(-1))
            .out;
      },
      py::arg("length"), py::arg("kernel_size"), py::arg("stride"), py::arg("dilation_rate"),
      py::arg("padding"), py::arg("output_padding") = py::none(),
      "Keras 3's conv_transpose output length for one spatial dimension.");
}

}  // namespace faltung::py_binding
