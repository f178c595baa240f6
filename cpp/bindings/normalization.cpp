// Bindings of the normalization family: batch normalization over the LAST axis of x
// (any rank >= 2; the other axes are the R rows). Suffix _f32 / _f64 = dtype.
#include <pybind11/stl.h>

#include <cmath>
#include <optional>

#include "common.hpp"
#include "faltung/normalization.hpp"

namespace faltung::py_binding {

namespace {
template <typename T>
using Opt = std::optional<Arr<T>>;

// (R, C) of x viewed as rows of its last axis.
std::pair<int64_t, int64_t> rows_cols(const py::array& x, const std::string& op) {
  if (x.ndim() < 1)
    throw py::value_error(op + ": expected `x` of rank >= 1, received shape " + shape_str(shape_of(x)));
  const int64_t C = x.shape(x.ndim() - 1);
  if (C < 1) throw py::value_error(op + ": `x` has no channels, received shape " + shape_str(shape_of(x)));
  return {int64_t(x.size()) / C, C};
}

template <typename T>
const T* opt_ptr(const Opt<T>& a, int64_t C, const std::string& op, const std::string& what) {
  if (!a) return nullptr;
  check_shape(*a, {C}, op, what);
  return a->data();
}

template <typename T>
py::tuple train(Arr<T> x, Opt<T> gamma, Opt<T> beta, double eps, bool ref) {
  const std::string op = "batch_norm_train";
  auto [R, C] = rows_cols(x, op);
  const T* g = opt_ptr<T>(gamma, C, op, "gamma");
  const T* b = opt_ptr<T>(beta, C, op, "beta");
  if (!(eps > 0)) throw py::value_error(op + ": expected epsilon > 0, received " + std::to_string(eps));
  auto y = empty<T>(shape_of(x));
  auto mean = empty<T>({C}), var = empty<T>({C}), inv_std = empty<T>({C});
  T *yp = y.mutable_data(), *mp = mean.mutable_data(), *vp = var.mutable_data(), *ip = inv_std.mutable_data();
  const T* xp = x.data();
  {
    py::gil_scoped_release release;
    if (ref) {
      batch_norm_train_ref<T>(yp, mp, vp, xp, g, b, T(eps), R, C);
      for (int64_t c = 0; c < C; ++c) ip[c] = T(1) / std::sqrt(vp[c] + T(eps));
    } else {
      batch_norm_moments<T>(mp, vp, xp, R, C);
      batch_norm_forward<T>(yp, ip, xp, mp, vp, g, b, T(eps), R, C);
    }
  }
  return py::make_tuple(y, mean, var, inv_std);
}

template <typename T>
py::tuple backward(Arr<T> dy, Arr<T> x, Arr<T> mean, Arr<T> inv_std, Opt<T> gamma, bool need_dx,
                   bool need_dgamma, bool need_dbeta, bool ref) {
  const std::string op = "batch_norm_backward";
  auto [R, C] = rows_cols(x, op);
  check_shape(dy, shape_of(x), op, "dy");
  check_shape(mean, {C}, op, "mean");
  check_shape(inv_std, {C}, op, "inv_std");
  const T* g = opt_ptr<T>(gamma, C, op, "gamma");
  py::object dx = py::none(), dgamma = py::none(), dbeta = py::none();
  T *dxp = nullptr, *dgp = nullptr, *dbp = nullptr;
  if (need_dx) { auto a = empty<T>(shape_of(x)); dxp = a.mutable_data(); dx = a; }
  if (need_dgamma) { auto a = empty<T>({C}); dgp = a.mutable_data(); dgamma = a; }
  if (need_dbeta) { auto a = empty<T>({C}); dbp = a.mutable_data(); dbeta = a; }
  const T *dyp = dy.data(), *xp = x.data(), *mp = mean.data(), *ip = inv_std.data();
  {
    py::gil_scoped_release release;
    if (ref) batch_norm_backward_ref<T>(dxp, dgp, dbp, dyp, xp, mp, ip, g, R, C);
    else batch_norm_backward<T>(dxp, dgp, dbp, dyp, xp, mp, ip, g, R, C);
  }
  return py::make_tuple(dx, dgamma, dbeta);
}

template <typename T>
Arr<T> affine(Arr<T> x, Arr<T> scale, Opt<T> shift) {
  const std::string op = "channel_affine";
  auto [R, C] = rows_cols(x, op);
  check_shape(scale, {C}, op, "scale");
  const T* sh = opt_ptr<T>(shift, C, op, "shift");
  auto y = empty<T>(shape_of(x));
  T* yp = y.mutable_data();
  const T *xp = x.data(), *sp = scale.data();
  {
    py::gil_scoped_release release;
    channel_affine<T>(yp, xp, sp, sh, R, C);
  }
  return y;
}

template <typename T>
void bind_dtype(py::module_& m, const std::string& sfx) {
  m.def(("batch_norm_train" + sfx).c_str(), &train<T>, py::arg("x"), py::arg("gamma"), py::arg("beta"),
        py::arg("epsilon"), py::arg("ref") = false,
        "x (...,C) -> (y, mean (C), var (C) biased, inv_std (C)); gamma/beta may be None.");
  m.def(("batch_norm_backward" + sfx).c_str(), &backward<T>, py::arg("dy"), py::arg("x"), py::arg("mean"),
        py::arg("inv_std"), py::arg("gamma"), py::arg("need_dx") = true, py::arg("need_dgamma") = true,
        py::arg("need_dbeta") = true, py::arg("ref") = false,
        "Training-mode BN backward -> (dx, dgamma, dbeta), None where not needed.");
  m.def(("channel_affine" + sfx).c_str(), &affine<T>, py::arg("x"), py::arg("scale"), py::arg("shift"),
        "x (...,C) * scale (C) + shift (C) (shift may be None): inference BN and its backward.");
}
}  // namespace

void bind_normalization(py::module_& m) {
  bind_dtype<float>(m, "_f32");
  bind_dtype<double>(m, "_f64");
}

}  // namespace faltung::py_binding
