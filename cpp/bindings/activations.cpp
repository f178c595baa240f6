// Bindings of the activations family: activation / activation_backward (elementwise, by
// kernel name), softmax / log_softmax (last axis) and their backward, dropout, fused
// softmax cross-entropy. Every function exists as _f32 and _f64.
#include "faltung/activations.hpp"

#include <pybind11/stl.h>

#include "common.hpp"

namespace faltung::py_binding {

namespace {

int64_t size_of(const py::array& a) { return int64_t(a.size()); }

ActParams make_params(double negative_slope, double threshold, const py::object& max_value,
                      double alpha) {
  ActParams p;
  p.negative_slope = negative_slope;
  p.threshold = threshold;
  p.has_max = !max_value.is_none();
  if (p.has_max) p.max_value = max_value.cast<double>();
  p.alpha = alpha;
  return p;
}

// Which forward tensor a kind's backward reads: its output y or its input x.
bool backward_reads_y(Act a) {
  return a == Act::sigmoid || a == Act::tanh || a == Act::exponential;
}

// x (...) -> y (...)
template <typename T>
Arr<T> activation_py(const std::string& name, const Arr<T>& x, double negative_slope,
                     double threshold, const py::object& max_value, double alpha) {
  const Act a = act_from_name(name);
  const ActParams p = make_params(negative_slope, threshold, max_value, alpha);
  Arr<T> y = empty<T>(shape_of(x));
  const T* x_p = x.data();
  T* y_p = y.mutable_data();
  const int64_t N = size_of(x);
  {
    py::gil_scoped_release nogil;
    act_forward<T>(a, y_p, x_p, N, p);
  }
  return y;
}

// dy (...), x (...) forward input, y (...) forward output -> dx (...)
template <typename T>
Arr<T> activation_backward_py(const std::string& name, const Arr<T>& dy, const Arr<T>& x,
                              const Arr<T>& y, double negative_slope, double threshold,
                              const py::object& max_value, double alpha) {
  const std::string op = "activation_backward(" + name + ")";
  const Act a = act_from_name(name);
  const ActParams p = make_params(negative_slope, threshold, max_value, alpha);
  const auto shape = shape_of(dy);
  if (a != Act::linear) check_shape(backward_reads_y(a) ? y : x, shape, op, backward_reads_y(a) ? "y" : "x");
  Arr<T> dx = empty<T>(shape);
  const T *dy_p = dy.data(), *x_p = x.data(), *y_p = y.data();
  T* dx_p = dx.mutable_data();
  const int64_t N = size_of(dy);
  {
    py::gil_scoped_release nogil;
    act_backward<T>(a, dx_p, dy_p, x_p, y_p, N, p);
  }
  return dx;
}

// Rows of the last axis: (R, K) view of an array of rank >= 1.
void rows_of(const py::array& a, const std::string& op, int64_t& R, int64_t& K) {
  if (a.ndim() < 1)
    throw py::value_error(op + ": expected an array of rank >= 1, received a scalar");
  K = a.shape(a.ndim() - 1);
  R = K > 0 ? size_of(a) / K : 0;
}

// x (...,K) -> y (...,K)
template <typename T, void (*Kernel)(T*, const T*, int64_t, int64_t)>
Arr<T> rowwise_py(const Arr<T>& x) {
  int64_t R, K;
  rows_of(x, "softmax", R, K);
  Arr<T> y = empty<T>(shape_of(x));
  const T* x_p = x.data();
  T* y_p = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    Kernel(y_p, x_p, R, K);
  }
  return y;
}

// dy (...,K), y (...,K) -> dx (...,K)
template <typename T, void (*Kernel)(T*, const T*, const T*, int64_t, int64_t)>
Arr<T> rowwise_backward_py(const Arr<T>& dy, const Arr<T>& y) {
  int64_t R, K;
  rows_of(dy, "softmax_backward", R, K);
  check_shape(y, shape_of(dy), "softmax_backward", "y");
  Arr<T> dx = empty<T>(shape_of(dy));
  const T *dy_p = dy.data(), *y_p = y.data();
  T* dx_p = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    Kernel(dx_p, dy_p, y_p, R, K);
  }
  return dx;
}

// x (...) -> (y (...), mask (...) uint8)
template <typename T>
py::tuple dropout_py(const Arr<T>& x, double rate, uint64_t seed) {
  if (!(rate >= 0.0 && rate <= 1.0))
    throw py::value_error("dropout: expected 0 <= rate <= 1, received rate=" + std::to_string(rate));
  Arr<T> y = empty<T>(shape_of(x));
  py::array_t<uint8_t> mask(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const T* x_p = x.data();
  T* y_p = y.mutable_data();
  uint8_t* m_p = mask.mutable_data();
  const int64_t N = size_of(x);
  {
    py::gil_scoped_release nogil;
    dropout_forward<T>(y_p, m_p, x_p, N, rate, seed);
  }
  return py::make_tuple(y, mask);
}

// dy (...), mask (...) -> dx (...)
template <typename T>
Arr<T> dropout_backward_py(const Arr<T>& dy, const py::array_t<uint8_t, py::array::c_style | py::array::forcecast>& mask,
                           double rate) {
  check_shape(mask, shape_of(dy), "dropout_backward", "mask");
  Arr<T> dx = empty<T>(shape_of(dy));
  const T* dy_p = dy.data();
  const uint8_t* m_p = mask.data();
  T* dx_p = dx.mutable_data();
  const int64_t N = size_of(dy);
  {
    py::gil_scoped_release nogil;
    dropout_backward<T>(dx_p, dy_p, m_p, N, rate);
  }
  return dx;
}

// logits (B,K), target (B,K) -> (loss (B), grad (B,K) | None)
template <typename T>
py::tuple softmax_xent_py(const Arr<T>& logits, const Arr<T>& target, double scale, bool need_grad) {
  const std::string op = "softmax_cross_entropy";
  check_rank(logits, 2, op, "logits");
  const int64_t B = logits.shape(0), K = logits.shape(1);
  check_shape(target, {B, K}, op, "labels");
  Arr<T> loss = empty<T>({B});
  py::object grad = py::none();
  T* g_p = nullptr;
  if (need_grad) {
    auto g = empty<T>({B, K});
    g_p = g.mutable_data();
    grad = g;
  }
  const T *x_p = logits.data(), *t_p = target.data();
  T* l_p = loss.mutable_data();
  {
    py::gil_scoped_release nogil;
    softmax_xent<T>(l_p, g_p, x_p, t_p, B, K, T(scale));
  }
  return py::make_tuple(loss, grad);
}

// logits (B,K), labels (B) int32 -> (loss (B), grad (B,K) | None)
template <typename T>
py::tuple sparse_softmax_xent_py(const Arr<T>& logits,
                                 const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& labels,
                                 double scale, bool need_grad) {
  const std::string op = "sparse_softmax_cross_entropy";
  check_rank(logits, 2, op, "logits");
  const int64_t B = logits.shape(0), K = logits.shape(1);
  check_shape(labels, {B}, op, "labels");
  Arr<T> loss = empty<T>({B});
  py::object grad = py::none();
  T* g_p = nullptr;
  if (need_grad) {
    auto g = empty<T>({B, K});
    g_p = g.mutable_data();
    grad = g;
  }
  const T* x_p = logits.data();
  const int32_t* y_p = labels.data();
  T* l_p = loss.mutable_data();
  {
    py::gil_scoped_release nogil;  // the kernel validates labels before any work
    sparse_softmax_xent<T>(l_p, g_p, x_p, y_p, B, K, T(scale));
  }
  return py::make_tuple(loss, grad);
}

template <typename T>
void bind_typed(py::module_& m, const std::string& sfx) {
  auto name = [&](const char* base) { return std::string(base) + sfx; };
  m.def(name("activation").c_str(), &activation_py<T>, py::arg("name"), py::arg("x"),
        py::arg("negative_slope") = 0.0, py::arg("threshold") = 0.0,
        py::arg("max_value") = py::none(), py::arg("alpha") = 1.0,
        "Elementwise activation by kernel name (see activation_names()).");
  m.def(name("activation_backward").c_str(), &activation_backward_py<T>, py::arg("name"),
        py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("negative_slope") = 0.0,
        py::arg("threshold") = 0.0, py::arg("max_value") = py::none(), py::arg("alpha") = 1.0);
  m.def(name("softmax").c_str(), &rowwise_py<T, softmax_forward<T>>, py::arg("x"));
  m.def(name("softmax_backward").c_str(), &rowwise_backward_py<T, softmax_backward<T>>,
        py::arg("dy"), py::arg("y"));
  m.def(name("log_softmax").c_str(), &rowwise_py<T, log_softmax_forward<T>>, py::arg("x"));
  m.def(name("log_softmax_backward").c_str(), &rowwise_backward_py<T, log_softmax_backward<T>>,
        py::arg("dy"), py::arg("y"));
  m.def(name("dropout").c_str(), &dropout_py<T>, py::arg("x"), py::arg("rate"), py::arg("seed"));
  m.def(name("dropout_backward").c_str(), &dropout_backward_py<T>, py::arg("dy"), py::arg("mask"),
        py::arg("rate"));
  m.def(name("softmax_xent").c_str(), &softmax_xent_py<T>, py::arg("logits"), py::arg("target"),
        py::arg("scale") = 1.0, py::arg("need_grad") = true);
  m.def(name("sparse_softmax_xent").c_str(), &sparse_softmax_xent_py<T>, py::arg("logits"),
        py::arg("labels"), py::arg("scale") = 1.0, py::arg("need_grad") = true);
}

}  // namespace

void bind_activations(py::module_& m) {
  bind_typed<float>(m, "_f32");
  bind_typed<double>(m, "_f64");
  m.def("dropout_mask", [](const std::vector<int64_t>& shape, double rate, uint64_t seed) {
    if (!(rate >= 0.0 && rate <= 1.0))
      throw py::value_error("dropout: expected 0 <= rate <= 1, received rate=" + std::to_string(rate));
    py::array_t<uint8_t> mask(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    uint8_t* m_p = mask.mutable_data();
    const int64_t N = int64_t(mask.size());
    {
      py::gil_scoped_release nogil;
      dropout_mask(m_p, N, rate, seed);
    }
    return mask;
  }, py::arg("shape"), py::arg("rate"), py::arg("seed"),
        "0/1 uint8 keep-mask of the given shape; same (seed, index) -> same bit as dropout_*.");
  m.def("activation_names", []() {
    std::vector<std::string> names;
    for (int i = 0; i <= int(Act::mish); ++i) names.push_back(act_name(Act(i)));
    return names;
  });
}

}  // namespace faltung::py_binding
