// Bindings of the pooling kernel family: max/average pooling, their backward passes and
// the scatter/gather kernels that max unpooling reuses. Suffix _f32 / _f64 = dtype.
// Shapes: x (N,H,W,C), y / dy / argmax (N,OH,OW,C); pool, strides = (KH,KW), (SH,SW).
#include <pybind11/stl.h>

#include <array>

#include "common.hpp"
#include "faltung/pooling.hpp"

namespace faltung::py_binding {

namespace {
using Pair = std::array<int64_t, 2>;

Pool2dShape shape_for(const py::array& x, const std::string& op, Pair pool, Pair strides,
                      const std::string& padding) {
  check_rank(x, 4, op, "x");
  return pool2d_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), pool[0], pool[1], strides[0],
                      strides[1], padding, op);
}

// Geometry from the output-side array and the input's spatial size (backward passes).
Pool2dShape shape_from_out(const py::array& dy, Pair input_hw, const std::string& op, Pair pool,
                           Pair strides, const std::string& padding, const std::string& what) {
  check_rank(dy, 4, op, what);
  Pool2dShape s = pool2d_shape(dy.shape(0), input_hw[0], input_hw[1], dy.shape(3), pool[0], pool[1],
                               strides[0], strides[1], padding, op);
  check_shape(dy, {s.N, s.OH, s.OW, s.C}, op, what);
  return s;
}

template <typename T>
py::object max_pool2d(Arr<T> x, Pair pool, Pair strides, const std::string& padding, bool with_argmax,
                      bool ref) {
  const Pool2dShape s = shape_for(x, "max_pool2d", pool, strides, padding);
  auto y = empty<T>({s.N, s.OH, s.OW, s.C});
  py::array_t<int32_t> arg;
  if (with_argmax) arg = py::array_t<int32_t>(std::vector<py::ssize_t>{s.N, s.OH, s.OW, s.C});
  T* yp = y.mutable_data();
  int32_t* ap = with_argmax ? arg.mutable_data() : nullptr;
  const T* xp = x.data();
  {
    py::gil_scoped_release release;
    if (ref) max_pool2d_forward_ref<T>(yp, ap, xp, s);
    else max_pool2d_forward<T>(yp, ap, xp, s);
  }
  if (with_argmax) return py::make_tuple(y, arg);
  return std::move(y);
}

// ValueError unless every argmax index lies in [0, hw). A branch-free pass (one unsigned
// compare per element, vectorized) first; the slow search only when something is wrong.
// (The per-element branching loop took a quarter of a 2x2 max-pool backward.)
void check_argmax(const int32_t* ap, int64_t n, int64_t hw, const std::string& op) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= static_cast<uint32_t>(static_cast<uint32_t>(ap[i]) >= hw);
  if (!bad) return;
  for (int64_t i = 0; i < n; ++i)
    if (ap[i] < 0 || ap[i] >= hw)
      throw py::value_error(op + ": `argmax` holds index " + std::to_string(ap[i]) + " outside [0, H*W=" +
                            std::to_string(hw) + ")");
}

template <typename T>
Arr<T> max_pool2d_scatter_b(Arr<T> dy, py::array_t<int32_t, py::array::c_style | py::array::forcecast> argmax,
                            Pair input_hw, Pair pool, Pair strides, const std::string& padding) {
  const std::string op = "max_pool2d_scatter";
  const Pool2dShape s = shape_from_out(dy, input_hw, op, pool, strides, padding, "dy");
  check_shape(argmax, {s.N, s.OH, s.OW, s.C}, op, "argmax");
  auto dx = empty<T>({s.N, s.H, s.W, s.C});
  T* dxp = dx.mutable_data();
  const T* dyp = dy.data();
  const int32_t* ap = argmax.data();
  check_argmax(ap, s.N * s.OH * s.OW * s.C, s.H * s.W, op);  // out of range would write out of bounds
  {
    py::gil_scoped_release release;
    max_pool2d_scatter<T>(dxp, dyp, ap, s);
  }
  return dx;
}

template <typename T>
Arr<T> max_pool2d_gather_b(Arr<T> full, py::array_t<int32_t, py::array::c_style | py::array::forcecast> argmax,
                           Pair pool, Pair strides, const std::string& padding) {
  const std::string op = "max_pool2d_gather";
  const Pool2dShape s = shape_for(full, op, pool, strides, padding);
  check_shape(argmax, {s.N, s.OH, s.OW, s.C}, op, "argmax");
  const int32_t* ap = argmax.data();
  check_argmax(ap, s.N * s.OH * s.OW * s.C, s.H * s.W, op);  // out of range would read out of bounds
  auto y = empty<T>({s.N, s.OH, s.OW, s.C});
  T* yp = y.mutable_data();
  const T* fp = full.data();
  {
    py::gil_scoped_release release;
    max_pool2d_gather<T>(yp, fp, ap, s);
  }
  return y;
}

template <typename T>
Arr<T> avg_pool2d(Arr<T> x, Pair pool, Pair strides, const std::string& padding, bool ref) {
  const Pool2dShape s = shape_for(x, "avg_pool2d", pool, strides, padding);
  auto y = empty<T>({s.N, s.OH, s.OW, s.C});
  T* yp = y.mutable_data();
  const T* xp = x.data();
  {
    py::gil_scoped_release release;
    if (ref) avg_pool2d_forward_ref<T>(yp, xp, s);
    else avg_pool2d_forward<T>(yp, xp, s);
  }
  return y;
}

template <typename T>
Arr<T> avg_pool2d_backward_b(Arr<T> dy, Pair input_hw, Pair pool, Pair strides, const std::string& padding) {
  const Pool2dShape s = shape_from_out(dy, input_hw, "avg_pool2d_backward", pool, strides, padding, "dy");
  auto dx = empty<T>({s.N, s.H, s.W, s.C});
  T* dxp = dx.mutable_data();
  const T* dyp = dy.data();
  {
    py::gil_scoped_release release;
    avg_pool2d_backward<T>(dxp, dyp, s);
  }
  return dx;
}

template <typename T>
void bind_dtype(py::module_& m, const std::string& sfx) {
  m.def(("max_pool2d" + sfx).c_str(), &max_pool2d<T>, py::arg("x"), py::arg("pool"), py::arg("strides"),
        py::arg("padding"), py::arg("with_argmax") = false, py::arg("ref") = false,
        "x (N,H,W,C) -> y (N,OH,OW,C) [, argmax (N,OH,OW,C) int32 flat h*W+w]. "
        "Ties: first maximum in row-major window order. ref=True runs the naive kernel.");
  m.def(("max_pool2d_scatter" + sfx).c_str(), &max_pool2d_scatter_b<T>, py::arg("dy"), py::arg("argmax"),
        py::arg("input_hw"), py::arg("pool"), py::arg("strides"), py::arg("padding"),
        "dy (N,OH,OW,C), argmax -> dx (N,H,W,C): max-pool backward / max-unpool forward.");
  m.def(("max_pool2d_gather" + sfx).c_str(), &max_pool2d_gather_b<T>, py::arg("full"), py::arg("argmax"),
        py::arg("pool"), py::arg("strides"), py::arg("padding"),
        "full (N,H,W,C), argmax (N,OH,OW,C) -> (N,OH,OW,C): max-unpool backward.");
  m.def(("avg_pool2d" + sfx).c_str(), &avg_pool2d<T>, py::arg("x"), py::arg("pool"), py::arg("strides"),
        py::arg("padding"), py::arg("ref") = false,
        "x (N,H,W,C) -> y (N,OH,OW,C), mean over in-bounds window elements.");
  m.def(("avg_pool2d_backward" + sfx).c_str(), &avg_pool2d_backward_b<T>, py::arg("dy"),
        py::arg("input_hw"), py::arg("pool"), py::arg("strides"), py::arg("padding"),
        "dy (N,OH,OW,C) -> dx (N,H,W,C): avg-pool backward / average-unpool forward.");
}
}  // namespace

void bind_pooling(py::module_& m) {
  bind_dtype<float>(m, "_f32");
  bind_dtype<double>(m, "_f64");
}

}  // namespace faltung::py_binding
