// Bindings of the image-transform family: affine_transform_f32 / _f64 over NHWC batches.
#include <cmath>

#include "common.hpp"
#include "faltung/image_transform.hpp"

namespace faltung::py_binding {

namespace {

FillMode fill_mode_of(const std::string& name, const std::string& op) {
  if (name == "constant") return FillMode::Constant;
  if (name == "grid-constant") return FillMode::GridConstant;
  if (name == "nearest") return FillMode::Nearest;
  if (name == "reflect") return FillMode::Reflect;
  if (name == "mirror") return FillMode::Mirror;
  if (name == "wrap") return FillMode::Wrap;
  if (name == "grid-wrap") return FillMode::GridWrap;
  throw py::value_error(op + ": expected `mode` in {constant, grid-constant, nearest, reflect, mirror, wrap, "
                        "grid-wrap}, received '" + name + "'");
}

template <typename T>
Arr<T> affine(Arr<T> x, Arr<double> matrices, int order, const std::string& mode, double cval) {
  const std::string op = "affine_transform";
  check_rank(x, 4, op, "x");
  const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
  check_shape(matrices, {N, 2, 3}, op, "matrices");
  if (H < 1 || W < 1) throw py::value_error(op + ": empty images, received shape " + shape_str(shape_of(x)));
  if (order != 0 && order != 1)
    throw py::value_error(op + ": expected `order` 0 (nearest) or 1 (bilinear), received " + std::to_string(order));
  const FillMode fill = fill_mode_of(mode, op);
  const double* mp = matrices.data();
  for (int64_t i = 0; i < N * 6; ++i)
    if (!std::isfinite(mp[i])) throw py::value_error(op + ": `matrices` must be finite");
  auto y = empty<T>({N, H, W, C});
  T* yp = y.mutable_data();
  const T* xp = x.data();
  {
    py::gil_scoped_release release;
    affine_transform_forward<T>(yp, xp, mp, N, H, W, C, order ? Interpolation::Bilinear : Interpolation::Nearest,
                                fill, cval);
  }
  return y;
}

template <typename T>
void bind_dtype(py::module_& m, const std::string& sfx) {
  m.def(("affine_transform" + sfx).c_str(), &affine<T>, py::arg("x"), py::arg("matrices"), py::arg("order"),
        py::arg("mode"), py::arg("cval"),
        "x (N,H,W,C), matrices (N,2,3): output pixel (r,c) samples x[n] at (m[0]@(r,c,1), m[1]@(r,c,1)), "
        "as scipy.ndimage.affine_transform with order 0/1 and scipy's fill modes.");
}
}  // namespace

void bind_image_transform(py::module_& m) {
  bind_dtype<float>(m, "_f32");
  bind_dtype<double>(m, "_f64");
}

}  // namespace faltung::py_binding
