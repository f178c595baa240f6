// Bindings of the fused optimizer updates: optim_{sgd,adam,rmsprop,adagrad}_{f32,f64}.
// They update numpy arrays IN PLACE, so every array must already be C-contiguous,
// writeable, of the kernel's dtype and of w's shape (no silent copy that would lose the
// update): ValueError otherwise. Optional state arrays are None.
#include "faltung/optim.hpp"

#include "common.hpp"

namespace faltung::py_binding {

namespace {

// The data pointer of `a` after checking it can be updated in place like `w`.
template <typename T>
T* inplace(const py::object& obj, const py::array& w, const std::string& op, const std::string& what,
           bool optional = false) {
  if (obj.is_none()) {
    if (optional) return nullptr;
    throw py::value_error(op + ": `" + what + "` is required");
  }
  if (!py::isinstance<py::array>(obj))
    throw py::value_error(op + ": expected `" + what + "` to be a numpy array");
  py::array a = obj.cast<py::array>();
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::value_error(op + ": expected `" + what + "` of dtype " +
                          std::string(py::str(py::dtype::of<T>())) + ", received " +
                          std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(op + ": `" + what + "` must be C-contiguous and writeable");
  if (shape_of(a) != shape_of(w))
    throw py::value_error(op + ": expected `" + what + "` of shape " + shape_str(shape_of(w)) +
                          ", received shape " + shape_str(shape_of(a)));
  return static_cast<T*>(a.mutable_data());
}

template <typename T>
void sgd_py(py::array w, py::object m, py::object g, double lr, double momentum, bool nesterov) {
  const std::string op = "optim_sgd";
  T* wp = inplace<T>(w, w, op, "w");
  T* mp = inplace<T>(m, w, op, "m", true);
  T* gp = inplace<T>(g, w, op, "g");
  const int64_t n = w.size();
  py::gil_scoped_release nogil;
  sgd_update<T>(wp, mp, gp, n, T(lr), T(momentum), nesterov);
}

template <typename T>
void adam_py(py::array w, py::object m, py::object v, py::object vhat, py::object g, double alpha,
             double beta1, double beta2, double eps) {
  const std::string op = "optim_adam";
  T* wp = inplace<T>(w, w, op, "w");
  T* mp = inplace<T>(m, w, op, "m");
  T* vp = inplace<T>(v, w, op, "v");
  T* vhp = inplace<T>(vhat, w, op, "vhat", true);
  T* gp = inplace<T>(g, w, op, "g");
  const int64_t n = w.size();
  py::gil_scoped_release nogil;
  adam_update<T>(wp, mp, vp, vhp, gp, n, T(alpha), T(beta1), T(beta2), T(eps));
}

template <typename T>
void rmsprop_py(py::array w, py::object v, py::object mom, py::object avg, py::object g, double lr,
                double rho, double momentum, double eps) {
  const std::string op = "optim_rmsprop";
  T* wp = inplace<T>(w, w, op, "w");
  T* vp = inplace<T>(v, w, op, "v");
  T* mp = inplace<T>(mom, w, op, "mom", true);
  T* ap = inplace<T>(avg, w, op, "avg", true);
  T* gp = inplace<T>(g, w, op, "g");
  const int64_t n = w.size();
  py::gil_scoped_release nogil;
  rmsprop_update<T>(wp, vp, mp, ap, gp, n, T(lr), T(rho), T(momentum), T(eps));
}

template <typename T>
void adagrad_py(py::array w, py::object acc, py::object g, double lr, double eps) {
  const std::string op = "optim_adagrad";
  T* wp = inplace<T>(w, w, op, "w");
  T* ap = inplace<T>(acc, w, op, "acc");
  T* gp = inplace<T>(g, w, op, "g");
  const int64_t n = w.size();
  py::gil_scoped_release nogil;
  adagrad_update<T>(wp, ap, gp, n, T(lr), T(eps));
}

template <typename T>
void bind_for(py::module_& m, const std::string& sfx) {
  m.def(("optim_sgd" + sfx).c_str(), &sgd_py<T>, py::arg("w"), py::arg("m"), py::arg("g"),
        py::arg("lr"), py::arg("momentum"), py::arg("nesterov"),
        "In place: m = momentum*m - lr*g; w += m (nesterov: momentum*m - lr*g); m None: w -= lr*g");
  m.def(("optim_adam" + sfx).c_str(), &adam_py<T>, py::arg("w"), py::arg("m"), py::arg("v"),
        py::arg("vhat"), py::arg("g"), py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"),
        py::arg("epsilon"), "In place Adam step with alpha = lr*sqrt(1-b2^t)/(1-b1^t); vhat None unless amsgrad");
  m.def(("optim_rmsprop" + sfx).c_str(), &rmsprop_py<T>, py::arg("w"), py::arg("v"), py::arg("mom"),
        py::arg("avg"), py::arg("g"), py::arg("lr"), py::arg("rho"), py::arg("momentum"),
        py::arg("epsilon"), "In place RMSprop step; mom None without momentum, avg None unless centered");
  m.def(("optim_adagrad" + sfx).c_str(), &adagrad_py<T>, py::arg("w"), py::arg("acc"), py::arg("g"),
        py::arg("lr"), py::arg("epsilon"), "In place: acc += g^2; w -= lr*g/sqrt(acc+eps)");
}

}  // namespace

void bind_optim(py::module_& m) {
  bind_for<float>(m, "_f32");
  bind_for<double>(m, "_f64");
}

}  // namespace faltung::py_binding
