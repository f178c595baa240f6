// Bindings of the resampling family: nearest / bilinear upsampling of NHWC images and
// their backward passes. Suffix _f32 / _f64 = dtype. Zero padding and cropping are plain
// numpy slicing in python/faltung/ops/resampling.py.
#include <pybind11/stl.h>

#include <array>

#include "common.hpp"
#include "faltung/resampling.hpp"

namespace faltung::py_binding {

namespace {
using Pair = std::array<int64_t, 2>;

void check_positive(Pair p, const std::string& op, const std::string& what) {
  if (p[0] < 1 || p[1] < 1)
    throw py::value_error(op + ": expected positive `" + what + "`, received " + shape_str({p[0], p[1]}));
}

template <typename T>
Arr<T> nearest(Arr<T> x, Pair size) {
  const std::string op = "upsample_nearest2d";
  check_rank(x, 4, op, "x");
  check_positive(size, op, "size");
  const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
  auto y = empty<T>({N, size_mul(H, size[0], op.c_str(), "output height H * size[0]"),
                      size_mul(W, size[1], op.c_str(), "output width W * size[1]"), C});
  T* yp = y.mutable_data();
  const T* xp = x.data();
  {
    py::gil_scoped_release release;
    upsample_nearest2d_forward<T>(yp, xp, N, H, W, C, size[0], size[1]);
  }
  return y;
}

template <typename T>
Arr<T> nearest_backward(Arr<T> dy, Pair size) {
  const std::string op = "upsample_nearest2d_backward";
  check_rank(dy, 4, op, "dy");
  check_positive(size, op, "size");
  const int64_t N = dy.shape(0), OH = dy.shape(1), OW = dy.shape(2), C = dy.shape(3);
  if (OH % size[0] || OW % size[1])
    throw py::value_error(op + ": `dy` spatial size " + shape_str({OH, OW}) + " is not a multiple of size " +
                          shape_str({size[0], size[1]}));
  const int64_t H = OH / size[0], W = OW / size[1];
  auto dx = empty<T>({N, H, W, C});
  T* dxp = dx.mutable_data();
  const T* dyp = dy.data();
  {
    py::gil_scoped_release release;
    upsample_nearest2d_backward<T>(dxp, dyp, N, H, W, C, size[0], size[1]);
  }
  return dx;
}

template <typename T>
Arr<T> bilinear(Arr<T> x, Pair out_hw) {
  const std::string op = "resize_bilinear2d";
  check_rank(x, 4, op, "x");
  check_positive(out_hw, op, "out_hw");
  const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
  if (H < 1 || W < 1) throw py::value_error(op + ": empty input, received shape " + shape_str(shape_of(x)));
  auto y = empty<T>({N, out_hw[0], out_hw[1], C});
  T* yp = y.mutable_data();
  const T* xp = x.data();
  {
    py::gil_scoped_release release;
    resize_bilinear2d_forward<T>(yp, xp, N, H, W, C, out_hw[0], out_hw[1]);
  }
  return y;
}

template <typename T>
Arr<T> bilinear_backward(Arr<T> dy, Pair in_hw) {
  const std::string op = "resize_bilinear2d_backward";
  check_rank(dy, 4, op, "dy");
  check_positive(in_hw, op, "in_hw");
  const int64_t N = dy.shape(0), OH = dy.shape(1), OW = dy.shape(2), C = dy.shape(3);
  auto dx = empty<T>({N, in_hw[0], in_hw[1], C});
  T* dxp = dx.mutable_data();
  const T* dyp = dy.data();
  {
    py::gil_scoped_release release;
    resize_bilinear2d_backward<T>(dxp, dyp, N, in_hw[0], in_hw[1], C, OH, OW);
  }
  return dx;
}

template <typename T>
void bind_dtype(py::module_& m, const std::string& sfx) {
  m.def(("upsample_nearest2d" + sfx).c_str(), &nearest<T>, py::arg("x"), py::arg("size"),
        "x (N,H,W,C) -> (N,H*SH,W*SW,C), each pixel repeated.");
  m.def(("upsample_nearest2d_backward" + sfx).c_str(), &nearest_backward<T>, py::arg("dy"), py::arg("size"),
        "dy (N,H*SH,W*SW,C) -> dx (N,H,W,C), block sums.");
  m.def(("resize_bilinear2d" + sfx).c_str(), &bilinear<T>, py::arg("x"), py::arg("out_hw"),
        "x (N,H,W,C) -> (N,OH,OW,C), bilinear, half-pixel centres (Keras ops.image.resize).");
  m.def(("resize_bilinear2d_backward" + sfx).c_str(), &bilinear_backward<T>, py::arg("dy"), py::arg("in_hw"),
        "dy (N,OH,OW,C) -> dx (N,H,W,C), the adjoint of resize_bilinear2d.");
}
}  // namespace

void bind_resampling(py::module_& m) {
  bind_dtype<float>(m, "_f32");
  bind_dtype<double>(m, "_f64");
}

}  // namespace faltung::py_binding
