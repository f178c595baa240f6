// cpp/cuda/bind_resident.hpp — the kernel families a small model needs, over DeviceArrays
// (device_array.hpp): inputs are read and outputs written in the backend's memory, nothing is
// copied in or out (but the integer labels of the cross-entropy, checked on the host and
// uploaded once). The same Kernels<Exec> launch sequences as bind_kernels.hpp, which copies per
// call; this file adds only checks on DeviceArray shapes and dtypes. Written once for both
// backends: the submodule `resident` of faltung._cuda (GPU) and of faltung._cuda_host (the
// bodies over the whole grid on the CPU, where every line here is tested).
// B batch, IN/OUT features, K classes; images NHWC; `block` threads per block.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "bind_kernels.hpp"
#include "bind_resident_io.hpp"
#include "bind_resident_losses.hpp"
#include "bind_resident_seq.hpp"
#include "device_array.hpp"

namespace faltung::cuda::binding {

template <class Backend> struct BindResidentLayers;  // more entry points: bind_resident_layers.hpp

template <class Backend>
struct BindResident {
  using DA = DeviceArray<Backend>;
  using Kn = typename Backend::Kernels;
  using Base = Bind<Backend>;
  template <typename T> using Buf = typename Backend::template Buf<T>;
  using Shape = std::vector<int64_t>;
  using Pair = std::array<int64_t, 2>;

  static void expect(bool ok, const std::string& msg) {
    if (!ok) throw py::value_error(msg);
  }
  static void expect_shape(const DA& a, const Shape& shape, const std::string& op, const std::string& what) {
    expect(a.shape() == shape, op + ": expected `" + what + "` of shape " + dims_text(shape) + ", received " +
                                   dims_text(a.shape()));
  }
  static void expect_rank(const DA& a, size_t rank, const std::string& op, const std::string& what) {
    expect(a.shape().size() == rank, op + ": expected `" + what + "` of rank " + std::to_string(rank) +
                                         ", received shape " + dims_text(a.shape()));
  }
  // a's memory as T*, TypeError naming the op and argument when a holds another dtype.
  template <typename T>
  static T* ptr(const DA& a, const std::string& op, const std::string& what) {
    if (a.dtype() != dtype_of<T>())
      throw py::type_error(op + ": expected `" + what + "` of dtype " + dtype_name(dtype_of<T>()) + ", received " +
                           dtype_name(a.dtype()));
    return a.template data<T>();
  }
  template <typename T>
  static T* opt_ptr(const std::optional<DA>& a, const std::string& op, const std::string& what) {
    return a ? ptr<T>(*a, op, what) : nullptr;
  }
  // f(T{}) for the float dtype of x.
  template <class F>
  static auto dispatch(const DA& x, const std::string& op, F&& f) {
    if (x.dtype() == DType::f32) return f(float{});
    if (x.dtype() == DType::f64) return f(double{});
    throw py::type_error(op + ": expected float32 or float64 arrays, received dtype " + dtype_name(x.dtype()));
  }
  static py::object opt(const std::optional<DA>& a) { return a ? py::cast(*a) : py::none(); }
  // A new array of `shape` and x's float dtype, which run(y, x) (T*, const T*; x checked as
  // `what`) fills without the GIL: the body of most one-input entry points.
  template <class F>
  static DA unary_op(const DA& x, const Shape& shape, const std::string& op, const std::string& what, F&& run) {
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>(shape);
      const T* px = ptr<T>(x, op, what);
      T* py = y.template data<T>();
      {
        py::gil_scoped_release nogil;
        run(py, px);
      }
      return y;
    });
  }

  // ---- Dense and activations ------------------------------------------------------------------
  // (B, IN, OUT) of x (B,IN) @ kernel (IN,OUT): the ranks and the shared size checked
  static std::array<int64_t, 3> dense_dims(const DA& x, const DA& W, const std::string& op) {
    expect_rank(x, 2, op, "inputs");
    expect_rank(W, 2, op, "kernel");
    const int64_t IN = x.shape()[1];
    expect(W.shape()[0] == IN, op + ": expected `kernel` of shape (" + std::to_string(IN) + ", units), received " +
                                   dims_text(W.shape()));
    return {x.shape()[0], IN, W.shape()[1]};
  }
  // x (B,IN), kernel (IN,OUT), bias (OUT) | None -> (y = act(x kernel + bias), z the
  // pre-activation or None when the activation is linear)
  static py::tuple dense_forward(const DA& x, const DA& W, const std::optional<DA>& bias,
                                 const std::string& activation, double negative_slope, double threshold,
                                 const py::object& max_value, double alpha) {
    const std::string op = "dense";
    const std::array<int64_t, 3> dims = dense_dims(x, W, op);
    const int64_t B = dims[0], IN = dims[1], OUT = dims[2];
    if (bias) expect_shape(*bias, {OUT}, op, "bias");
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      const ew::ActSpec<T> act = Base::template act_of<T>(activation, negative_slope, threshold, max_value, alpha);
      const bool linear = act.kind == Act::linear;
      DA y = DA::template empty<T>({B, OUT});
      std::optional<DA> z;
      if (!linear) z = DA::template empty<T>({B, OUT});
      const T *px = ptr<T>(x, op, "inputs"), *pW = ptr<T>(W, op, "kernel"), *pb = opt_ptr<T>(bias, op, "bias");
      T *py = y.template data<T>(), *pz = opt_ptr<T>(z, op, "z");
      {
        py::gil_scoped_release nogil;
        Kn::dense_forward(py, pz, px, pW, pb, B, IN, OUT, act);
      }
      return py::make_tuple(y, opt(z));
    });
  }

  // dy (B,OUT) the gradient of x kernel + bias, x (B,IN), kernel (IN,OUT) -> (dx, dkernel, dbias),
  // None where not needed
  static py::tuple dense_backward(const DA& dy, const DA& x, const DA& W, bool need_dx, bool need_dW, bool need_db,
                                  int64_t block) {
    const std::string op = "dense_backward";
    check_block(block, op);
    const std::array<int64_t, 3> dims = dense_dims(x, W, op);
    const int64_t B = dims[0], IN = dims[1], OUT = dims[2];
    expect_shape(dy, {B, OUT}, op, "dy");
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      std::optional<DA> dx, dW, db;
      if (need_dx) dx = DA::template empty<T>({B, IN});
      if (need_dW) dW = DA::template empty<T>({IN, OUT});
      if (need_db) db = DA::template empty<T>({OUT});
      const T *pdy = ptr<T>(dy, op, "dy"), *px = ptr<T>(x, op, "inputs"), *pW = ptr<T>(W, op, "kernel");
      T *pdx = opt_ptr<T>(dx, op, "dx"), *pdW = opt_ptr<T>(dW, op, "dkernel"), *pdb = opt_ptr<T>(db, op, "dbias");
      {
        py::gil_scoped_release nogil;
        Kn::dense_backward(pdx, pdW, pdb, pdy, px, pW, B, IN, OUT, block);
      }
      return py::make_tuple(opt(dx), opt(dW), opt(db));
    });
  }

  // Elementwise activation by the CPU's kernel name (faltung._core.activation_names()).
  static DA activation(const std::string& name, const DA& x, double negative_slope, double threshold,
                       const py::object& max_value, double alpha, int64_t block) {
    const std::string op = "activation(" + name + ")";
    check_block(block, op);
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      const ew::ActSpec<T> a = Base::template act_of<T>(name, negative_slope, threshold, max_value, alpha);
      DA y = DA::template empty<T>(x.shape());
      const T* px = ptr<T>(x, op, "x");
      T* py = y.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::act_forward(py, px, x.size(), a, block);
      }
      return y;
    });
  }
  // dy, x the forward input, y the forward output (the kind reads one of them, as the CPU's;
  // the other may be None) -> dx
  static DA activation_backward(const std::string& name, const DA& dy, const std::optional<DA>& x,
                                const std::optional<DA>& y, double negative_slope, double threshold,
                                const py::object& max_value, double alpha, int64_t block) {
    const std::string op = "activation_backward(" + name + ")";
    check_block(block, op);
    return dispatch(dy, op, [&](auto zero) {
      using T = decltype(zero);
      const ew::ActSpec<T> a = Base::template act_of<T>(name, negative_slope, threshold, max_value, alpha);
      const bool reads_y = ew::backward_reads_y(a.kind);
      const std::optional<DA>& v = reads_y ? y : x;
      const std::string what = reads_y ? "y" : "x";
      expect(v.has_value(), op + ": needs `" + what + "`");
      expect_shape(*v, dy.shape(), op, what);
      DA dx = DA::template empty<T>(dy.shape());
      const T *pdy = ptr<T>(dy, op, "dy"), *pv = ptr<T>(*v, op, what);
      T* pdx = dx.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::act_backward(pdx, pdy, pv, dy.size(), a, block);
      }
      return dx;
    });
  }

  // softmax / log_softmax over the last axis: x (..., K) -> y (..., K), and their backward
  // dy, y -> dx.
  static DA rowwise(const DA& x, bool log, int64_t block) {
    const std::string op = log ? "log_softmax" : "softmax";
    expect(!x.shape().empty(), op + ": expected `x` of rank >= 1, received a scalar");
    check_block(block, op);
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      const int64_t K = x.shape().back(), R = K ? x.size() / K : 0;
      DA y = DA::template empty<T>(x.shape());
      const T* px = ptr<T>(x, op, "x");
      T* py = y.template data<T>();
      {
        py::gil_scoped_release nogil;
        if (log) Kn::log_softmax_forward(py, px, R, K, block);
        else Kn::softmax_forward(py, px, R, K, block);
      }
      return y;
    });
  }
  static DA rowwise_backward(const DA& dy, const DA& y, bool log, int64_t block) {
    const std::string op = log ? "log_softmax_backward" : "softmax_backward";
    expect(!dy.shape().empty(), op + ": expected `dy` of rank >= 1, received a scalar");
    expect_shape(y, dy.shape(), op, "y");
    check_block(block, op);
    return dispatch(dy, op, [&](auto zero) {
      using T = decltype(zero);
      const int64_t K = dy.shape().back(), R = K ? dy.size() / K : 0;
      DA dx = DA::template empty<T>(dy.shape());
      const T *pdy = ptr<T>(dy, op, "dy"), *py = ptr<T>(y, op, "y");
      T* pdx = dx.template data<T>();
      {
        py::gil_scoped_release nogil;
        if (log) Kn::log_softmax_backward(pdx, pdy, py, R, K, block);
        else Kn::softmax_backward(pdx, pdy, py, R, K, block);
      }
      return dx;
    });
  }

  // logits (B,K) on the device, labels (B) an int32 numpy array (checked here, uploaded once)
  // -> (loss (B), grad (B,K) * scale, or None)
  static py::tuple sparse_softmax_xent(const DA& logits, const py::array& labels_a, double scale, bool need_grad,
                                       int64_t block) {
    const std::string op = "sparse softmax cross-entropy";
    expect_rank(logits, 2, op, "logits");
    check_block(block, op);
    const I32 labels = as_int32(labels_a, op, "labels");
    const int64_t B = logits.shape()[0], K = logits.shape()[1];
    expect(labels.ndim() == 1 && labels.shape(0) == B,
           op + ": expected `labels` of shape (" + std::to_string(B) + ",), received " + shape_str(labels));
    for (int64_t b = 0; b < B; ++b)
      expect(labels.data()[b] >= 0 && labels.data()[b] < K,
             op + ": label " + std::to_string(labels.data()[b]) + " at index " + std::to_string(b) +
                 " is out of range [0, " + std::to_string(K) + ")");
    return dispatch(logits, op, [&](auto zero) {
      using T = decltype(zero);
      DA dlab = DA::from_numpy(labels), loss = DA::template empty<T>({B});
      std::optional<DA> grad;
      if (need_grad) grad = DA::template empty<T>(logits.shape());
      const T* px = ptr<T>(logits, op, "logits");
      const int32_t* pl = dlab.template data<int32_t>();
      T *ploss = loss.template data<T>(), *pg = opt_ptr<T>(grad, op, "grad");
      {
        py::gil_scoped_release nogil;
        Kn::sparse_softmax_xent(ploss, pg, px, pl, B, K, T(scale), block);
      }
      return py::make_tuple(loss, opt(grad));
    });
  }

  // ---- Conv2D --------------------------------------------------------------------------------
  // x (N,H,W,C), w (KH,KW,C/groups,K) and the explicit geometry (as faltung._core's
  // conv2d_forward; the ops layer turns "valid"/"same" into pads) -> the CPU's validated shape.
  static Conv2dShape conv_shape(const DA& x, const DA& w, int64_t OH, int64_t OW, int64_t sh, int64_t sw,
                                int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups,
                                const std::string& op) {
    expect_rank(x, 4, op, "x");
    expect_rank(w, 4, op, "w");
    expect(groups > 0, op + ": expected groups > 0, received groups=" + std::to_string(groups));
    const Shape &xs = x.shape(), &ws = w.shape();
    expect(ws[2] * groups == xs[3], op + ": `w` of shape " + dims_text(ws) + " with groups=" + std::to_string(groups) +
                                        " expects " + std::to_string(ws[2] * groups) + " input channels, but `x` of shape " +
                                        dims_text(xs) + " has " + std::to_string(xs[3]));
    const Conv2dShape s{xs[0], xs[1], xs[2], xs[3], ws[3], ws[0], ws[1], OH, OW, sh, sw, dh, dw, pt, pl, groups};
    check_conv2d_shape(s);  // std::invalid_argument -> ValueError
    return s;
  }
  // -> y (N,OH,OW,K), bias added and relu applied in the output pass when asked
  static DA conv2d_forward(const DA& x, const DA& w, const std::optional<DA>& b, int64_t sh, int64_t sw, int64_t pt,
                           int64_t pl, int64_t OH, int64_t OW, int64_t dh, int64_t dw, int64_t groups, bool relu,
                           int64_t block) {
    const std::string op = "conv2d_forward";
    const Conv2dShape s = conv_shape(x, w, OH, OW, sh, sw, pt, pl, dh, dw, groups, op);
    check_block(block, op);
    if (b) expect_shape(*b, {s.K}, op, "b");
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>({s.N, s.OH, s.OW, s.K});
      const T *px = ptr<T>(x, op, "x"), *pw = ptr<T>(w, op, "w"), *pb = opt_ptr<T>(b, op, "b");
      T* py = y.template data<T>();
      Buf<T> col = conv_col_buf<Backend, T>(s);
      {
        py::gil_scoped_release nogil;
        Kn::conv2d_forward(py, px, pw, pb, s, relu, block, col.get());
      }
      return y;
    });
  }
  // dout (N,OH,OW,K), x, w -> (dx (N,H,W,C) | None, dw (w's shape) | None, db (K) | None)
  static py::tuple conv2d_backward(const DA& dout, const DA& x, const DA& w, int64_t sh, int64_t sw, int64_t pt,
                                   int64_t pl, int64_t dh, int64_t dw, int64_t groups, bool need_dx, bool need_dw,
                                   bool need_db, int64_t block) {
    const std::string op = "conv2d_backward";
    expect_rank(dout, 4, op, "dout");
    const Conv2dShape s = conv_shape(x, w, dout.shape()[1], dout.shape()[2], sh, sw, pt, pl, dh, dw, groups, op);
    check_block(block, op);
    expect_shape(dout, {s.N, s.OH, s.OW, s.K}, op, "dout");
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      const int64_t P = s.N * s.OH * s.OW;
      std::optional<DA> dx, dwt, db;
      if (need_dx) dx = DA::template empty<T>(x.shape());
      if (need_dw) dwt = DA::template empty<T>(w.shape());
      if (need_db) db = DA::template empty<T>({s.K});
      Buf<T> wsf = Buf<T>::alloc(need_dw ? conv::filter_workspace_size(s) : 0),
             wsb = Buf<T>::alloc(need_db ? conv::reduce_workspace_size(P, s.K) : 0),
             col = conv_col_buf<Backend, T>(s);
      const T *pdout = ptr<T>(dout, op, "dout"), *px = ptr<T>(x, op, "x"), *pw = ptr<T>(w, op, "w");
      T *pdx = opt_ptr<T>(dx, op, "dx"), *pdw = opt_ptr<T>(dwt, op, "dw"), *pdb = opt_ptr<T>(db, op, "db");
      {
        py::gil_scoped_release nogil;
        if (pdx) Kn::conv2d_backward_data(pdx, pdout, pw, static_cast<const T*>(nullptr), s, block, col.get());
        if (pdw) Kn::conv2d_backward_filter(pdw, wsf.get(), pdout, px, s, block, col.get());
        if (pdb) Kn::column_sum(pdb, wsb.get(), pdout, P, s.K, block);
      }
      return py::make_tuple(opt(dx), opt(dwt), opt(db));
    });
  }

  // ---- pooling -----------------------------------------------------------------------------
  // The geometry of a pooling forward over x (N,H,W,C).
  static Pool2dShape pool_forward_shape(const DA& x, const Pair& pool, const Pair& strides, const std::string& padding,
                                        int64_t block, const std::string& op) {
    expect_rank(x, 4, op, "inputs");
    check_block(block, op);
    const Shape& xs = x.shape();
    return pool2d_shape(xs[0], xs[1], xs[2], xs[3], pool[0], pool[1], strides[0], strides[1], padding, op);
  }
  // The geometry of a pooling backward: dy (N,OH,OW,C) for an input of input_hw, dy's shape checked.
  static Pool2dShape pool_backward_shape(const DA& dy, const Pair& input_hw, const Pair& pool, const Pair& strides,
                                         const std::string& padding, int64_t block, const std::string& op) {
    expect_rank(dy, 4, op, "dy");
    check_block(block, op);
    const Shape& ds = dy.shape();
    const Pool2dShape s = pool2d_shape(ds[0], input_hw[0], input_hw[1], ds[3], pool[0], pool[1], strides[0],
                                       strides[1], padding, op);
    expect_shape(dy, {s.N, s.OH, s.OW, s.C}, op, "dy");
    return s;
  }
  // x (N,H,W,C) -> (y (N,OH,OW,C), argmax (N,OH,OW,C) int32, flat h*W+w, bound H*W)
  static py::tuple max_pool2d(const DA& x, const Pair& pool, const Pair& strides, const std::string& padding,
                              int64_t block) {
    const std::string op = "max_pool2d";
    const Pool2dShape s = pool_forward_shape(x, pool, strides, padding, block, op);
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>({s.N, s.OH, s.OW, s.C}), arg = DA::template empty<int32_t>({s.N, s.OH, s.OW, s.C});
      arg.index_bound = s.H * s.W;
      const T* px = ptr<T>(x, op, "inputs");
      T* py = y.template data<T>();
      int32_t* pa = arg.template data<int32_t>();
      {
        py::gil_scoped_release nogil;
        Kn::max_pool2d(py, pa, px, s, block);
      }
      return py::make_tuple(y, arg);
    });
  }
  // dy, argmax (N,OH,OW,C), argmax made by max_pool2d on an input of input_hw -> dx (N,H,W,C)
  static DA max_pool2d_backward(const DA& dy, const DA& argmax, const Pair& input_hw, const Pair& pool,
                                const Pair& strides, const std::string& padding, int64_t block) {
    const std::string op = "max_pool2d_backward";
    const Pool2dShape s = pool_backward_shape(dy, input_hw, pool, strides, padding, block, op);
    expect_shape(argmax, dy.shape(), op, "argmax");
    expect(argmax.dtype() == DType::i32 && argmax.index_bound == s.H * s.W,
           op + ": expected the `argmax` that max_pool2d returned for an input of height and width (" +
               std::to_string(s.H) + ", " + std::to_string(s.W) + ")");
    return dispatch(dy, op, [&](auto zero) {
      using T = decltype(zero);
      DA dx = DA::template empty<T>({s.N, s.H, s.W, s.C});
      const T* pdy = ptr<T>(dy, op, "dy");
      const int32_t* pa = argmax.template data<int32_t>();
      T* pdx = dx.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::max_pool2d_backward(pdx, pdy, pa, s, block);
      }
      return dx;
    });
  }

  // x (N,H,W,C) -> y (N,OH,OW,C), the mean over each window's in-bounds elements (Keras's "same")
  static DA avg_pool2d(const DA& x, const Pair& pool, const Pair& strides, const std::string& padding,
                       int64_t block) {
    const std::string op = "avg_pool2d";
    const Pool2dShape s = pool_forward_shape(x, pool, strides, padding, block, op);
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>({s.N, s.OH, s.OW, s.C});
      const T* px = ptr<T>(x, op, "inputs");
      T* py = y.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::avg_pool2d(py, px, s, block);
      }
      return y;
    });
  }
  // dy (N,OH,OW,C) -> dx (N,H,W,C) for an input of input_hw
  static DA avg_pool2d_backward(const DA& dy, const Pair& input_hw, const Pair& pool, const Pair& strides,
                                const std::string& padding, int64_t block) {
    const std::string op = "avg_pool2d_backward";
    const Pool2dShape s = pool_backward_shape(dy, input_hw, pool, strides, padding, block, op);
    return dispatch(dy, op, [&](auto zero) {
      using T = decltype(zero);
      DA dx = DA::template empty<T>({s.N, s.H, s.W, s.C});
      const T* pdy = ptr<T>(dy, op, "dy");
      T* pdx = dx.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::avg_pool2d_backward(pdx, pdy, s, block);
      }
      return dx;
    });
  }

  // ---- BatchNormalization over the last axis: x (..., C) viewed as (R, C) ---------------------
  static std::pair<int64_t, int64_t> bn_rows(const DA& x, const std::string& op) {
    expect(!x.shape().empty() && x.shape().back() >= 1,
           op + ": expected `x` of rank >= 1 with channels on its last axis, received shape " + dims_text(x.shape()));
    return {x.size() / x.shape().back(), x.shape().back()};
  }
  // bn_rows, with the parameters' shapes, epsilon and the block size checked
  static std::pair<int64_t, int64_t> bn_check(const DA& x, const std::optional<DA>& gamma,
                                              const std::optional<DA>& beta, const DA& moving_mean,
                                              const DA& moving_var, double eps, int64_t block,
                                              const std::string& op) {
    const auto [R, C] = bn_rows(x, op);
    for (const auto& [a, name] : {std::pair{&gamma, "gamma"}, std::pair{&beta, "beta"}})
      if (*a) expect_shape(**a, {C}, op, name);
    expect_shape(moving_mean, {C}, op, "moving_mean");
    expect_shape(moving_var, {C}, op, "moving_variance");
    expect(eps > 0, op + ": expected epsilon > 0, received " + std::to_string(eps));
    check_block(block, op);
    return {R, C};
  }
  // -> (y, mean, inv_std (C)), the batch's statistics; moving_mean, moving_var updated in place:
  // moving = moving momentum + batch (1 - momentum), the variance biased (Keras's)
  static py::tuple batch_norm_train(const DA& x, const std::optional<DA>& gamma, const std::optional<DA>& beta,
                                    const DA& moving_mean, const DA& moving_var, double eps, double momentum,
                                    int64_t block) {
    const std::string op = "batch_norm_train";
    const auto [R, C] = bn_check(x, gamma, beta, moving_mean, moving_var, eps, block, op);
    return dispatch(x, op, [&, R = R, C = C](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>(x.shape()), mean = DA::template empty<T>({C}), inv = DA::template empty<T>({C});
      Buf<T> var = Buf<T>::alloc(C), ws = Buf<T>::alloc(bn::workspace_size(C));
      const T *px = ptr<T>(x, op, "x"), *pg = opt_ptr<T>(gamma, op, "gamma"), *pb = opt_ptr<T>(beta, op, "beta");
      T *pmm = ptr<T>(moving_mean, op, "moving_mean"), *pmv = ptr<T>(moving_var, op, "moving_variance");
      T *py = y.template data<T>(), *pmean = mean.template data<T>(), *pinv = inv.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::bn_train_forward(py, pmean, var.get(), pinv, pmm, pmv, px, pg, pb, T(eps), T(momentum), R, C, ws.get(),
                             block);
      }
      return py::make_tuple(y, mean, inv);
    });
  }
  // -> (y, inv_std = 1/sqrt(moving_var + eps)) with the moving statistics
  static py::tuple batch_norm_inference(const DA& x, const std::optional<DA>& gamma, const std::optional<DA>& beta,
                                        const DA& moving_mean, const DA& moving_var, double eps, int64_t block) {
    const std::string op = "batch_norm_inference";
    const auto [R, C] = bn_check(x, gamma, beta, moving_mean, moving_var, eps, block, op);
    return dispatch(x, op, [&, R = R, C = C](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>(x.shape()), inv = DA::template empty<T>({C});
      Buf<T> ws = Buf<T>::alloc(bn::workspace_size(C));
      const T *px = ptr<T>(x, op, "x"), *pg = opt_ptr<T>(gamma, op, "gamma"), *pb = opt_ptr<T>(beta, op, "beta"),
              *pmm = ptr<T>(moving_mean, op, "moving_mean"), *pmv = ptr<T>(moving_var, op, "moving_variance");
      T *py = y.template data<T>(), *pinv = inv.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::bn_inference_forward(py, pinv, px, pg, pb, pmm, pmv, T(eps), R, C, ws.get(), block);
      }
      return py::make_tuple(y, inv);
    });
  }
  // dy, x (..., C), mean and inv_std (the batch's; with inference, the moving mean and its
  // inv_std), gamma | None -> (dx, dgamma, dbeta), None where not needed
  static py::tuple batch_norm_backward(const DA& dy, const DA& x, const DA& mean, const DA& inv_std,
                                       const std::optional<DA>& gamma, bool inference, bool need_dx,
                                       bool need_dgamma, bool need_dbeta, int64_t block) {
    const std::string op = "batch_norm_backward";
    const auto [R, C] = bn_rows(x, op);
    expect_shape(dy, x.shape(), op, "dy");
    expect_shape(mean, {C}, op, "mean");
    expect_shape(inv_std, {C}, op, "inv_std");
    if (gamma) expect_shape(*gamma, {C}, op, "gamma");
    check_block(block, op);
    return dispatch(x, op, [&, R = R, C = C](auto zero) {
      using T = decltype(zero);
      std::optional<DA> dx, dg, db;
      if (need_dx) dx = DA::template empty<T>(x.shape());
      if (need_dgamma) dg = DA::template empty<T>({C});
      if (need_dbeta) db = DA::template empty<T>({C});
      Buf<T> ws = Buf<T>::alloc(bn::workspace_size(C));
      const T *pdy = ptr<T>(dy, op, "dy"), *px = ptr<T>(x, op, "x"), *pm = ptr<T>(mean, op, "mean"),
              *pinv = ptr<T>(inv_std, op, "inv_std"), *pg = opt_ptr<T>(gamma, op, "gamma");
      T *pdx = opt_ptr<T>(dx, op, "dx"), *pdg = opt_ptr<T>(dg, op, "dgamma"), *pdb = opt_ptr<T>(db, op, "dbeta");
      {
        py::gil_scoped_release nogil;
        Kn::bn_backward(pdx, pdg, pdb, pdy, px, pm, pinv, pg, inference, R, C, ws.get(), block);
      }
      return py::make_tuple(opt(dx), opt(dg), opt(db));
    });
  }

  // ---- dropout (the CPU's counter-based keep rule: the mask of a seed equals the CPU's) --------
  // x (any shape) -> (y, mask uint8 of x's shape)
  static py::tuple dropout(const DA& x, double rate, uint64_t seed, int64_t block) {
    const std::string op = "dropout";
    Base::check_rate(rate);
    check_block(block, op);
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>(x.shape()), mask = DA::template empty<uint8_t>(x.shape());
      const T* px = ptr<T>(x, op, "x");
      T* py = y.template data<T>();
      uint8_t* pm = mask.template data<uint8_t>();
      {
        py::gil_scoped_release nogil;
        Kn::dropout_forward(py, pm, px, x.size(), rate, seed, block);
      }
      return py::make_tuple(y, mask);
    });
  }
  static DA dropout_backward(const DA& dy, const DA& mask, double rate, int64_t block) {
    const std::string op = "dropout_backward";
    Base::check_rate(rate);
    check_block(block, op);
    expect_shape(mask, dy.shape(), op, "mask");
    return dispatch(dy, op, [&](auto zero) {
      using T = decltype(zero);
      DA dx = DA::template empty<T>(dy.shape());
      const T* pdy = ptr<T>(dy, op, "dy");
      const uint8_t* pm = ptr<uint8_t>(mask, op, "mask");
      T* pdx = dx.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::dropout_backward(pdx, pdy, pm, dy.size(), rate, block);
      }
      return dx;
    });
  }

  // ---- optimizers, in place ------------------------------------------------------------------
  static void expect_like(const DA& w, const std::optional<DA>& a, const std::string& op, const std::string& what) {
    if (a) expect_shape(*a, w.shape(), op, what);
  }
  // w, m (None without momentum), g of one shape: the CPU's SGD rule on w and m in place
  static void sgd_update(const DA& w, const std::optional<DA>& m, const DA& g, double lr, double momentum,
                         bool nesterov, int64_t block) {
    const std::string op = "SGD";
    expect_like(w, m, op, "m");
    expect_like(w, g, op, "g");
    expect(m.has_value() || momentum == 0.0, op + ": momentum != 0 needs `m`");
    check_block(block, op);
    dispatch(w, op, [&](auto zero) {
      using T = decltype(zero);
      T *pw = ptr<T>(w, op, "w"), *pm = opt_ptr<T>(m, op, "m");
      const T* pg = ptr<T>(g, op, "g");
      py::gil_scoped_release nogil;
      Kn::sgd_update(pw, pm, pg, w.size(), T(lr), T(momentum), nesterov, block);
    });
  }
  // w, m, v, vhat (None without amsgrad), g of one shape: the CPU's Adam rule in place, with
  // alpha the bias-corrected step size lr sqrt(1 - beta2^t) / (1 - beta1^t)
  static void adam_update(const DA& w, const DA& m, const DA& v, const std::optional<DA>& vhat, const DA& g,
                          double alpha, double beta1, double beta2, double eps, int64_t block) {
    const std::string op = "Adam";
    for (const auto& [a, name] : {std::pair{&m, "m"}, std::pair{&v, "v"}, std::pair{&g, "g"}})
      expect_shape(*a, w.shape(), op, name);
    expect_like(w, vhat, op, "vhat");
    check_block(block, op);
    dispatch(w, op, [&](auto zero) {
      using T = decltype(zero);
      T *pw = ptr<T>(w, op, "w"), *pm = ptr<T>(m, op, "m"), *pv = ptr<T>(v, op, "v"),
        *pvh = opt_ptr<T>(vhat, op, "vhat");
      const T* pg = ptr<T>(g, op, "g");
      py::gil_scoped_release nogil;
      Kn::adam_update(pw, pm, pv, pvh, pg, w.size(), T(alpha), T(beta1), T(beta2), T(eps), block);
    });
  }

  // w, v, mom (None without momentum), avg (None unless centered), g: the CPU's RMSprop rule
  static void rmsprop_update(const DA& w, const DA& v, const std::optional<DA>& mom, const std::optional<DA>& avg,
                             const DA& g, double lr, double rho, double momentum, double eps, int64_t block) {
    const std::string op = "RMSprop";
    expect_shape(v, w.shape(), op, "v");
    expect_like(w, mom, op, "mom");
    expect_like(w, avg, op, "avg");
    expect_shape(g, w.shape(), op, "g");
    expect(mom.has_value() || momentum == 0.0, op + ": momentum != 0 needs `mom`");
    check_block(block, op);
    dispatch(w, op, [&](auto zero) {
      using T = decltype(zero);
      T *pw = ptr<T>(w, op, "w"), *pv = ptr<T>(v, op, "v"), *pm = opt_ptr<T>(mom, op, "mom"),
        *pa = opt_ptr<T>(avg, op, "avg");
      const T* pg = ptr<T>(g, op, "g");
      py::gil_scoped_release nogil;
      Kn::rmsprop_update(pw, pv, pm, pa, pg, w.size(), T(lr), T(rho), T(momentum), T(eps), block);
    });
  }
  // w, acc, g: the CPU's Adagrad rule
  static void adagrad_update(const DA& w, const DA& acc, const DA& g, double lr, double eps, int64_t block) {
    const std::string op = "Adagrad";
    expect_shape(acc, w.shape(), op, "acc");
    expect_shape(g, w.shape(), op, "g");
    check_block(block, op);
    dispatch(w, op, [&](auto zero) {
      using T = decltype(zero);
      T *pw = ptr<T>(w, op, "w"), *pa = ptr<T>(acc, op, "acc");
      const T* pg = ptr<T>(g, op, "g");
      py::gil_scoped_release nogil;
      Kn::adagrad_update(pw, pa, pg, w.size(), T(lr), T(eps), block);
    });
  }
  // w *= 1 - weight_decay * lr: the decoupled decay before an update (AdamW, any `weight_decay`)
  static void weight_decay(const DA& w, double weight_decay, double lr, int64_t block) {
    const std::string op = "weight_decay";
    check_block(block, op);
    dispatch(w, op, [&](auto zero) {
      using T = decltype(zero);
      T* pw = ptr<T>(w, op, "w");
      py::gil_scoped_release nogil;
      Kn::weight_decay(pw, w.size(), T(1.0 - weight_decay * lr), block);
    });
  }

  static void bind(py::module_& parent) {
    bind_device_array<Backend>(parent);
    parent.def("memory_stats", []() {
      const auto s = Backend::Pool::instance().stats();
      py::dict d;
      d["in_use_bytes"] = s.in_use_bytes, d["cached_bytes"] = s.cached_bytes;
      d["raw_allocations"] = s.raw_allocations;
      d["pinned_bytes"] = PinnedStats<Backend>::bytes().load();  // the Prefetchers' (bind_resident_io.hpp)
      d["pinned_allocations"] = PinnedStats<Backend>::allocations().load();
      return d;
    }, "The buffer pool (pooled_buf.hpp): bytes in use and cached, allocations made from the backend; "
       "the pinned host memory the Prefetchers hold and how many allocations made it.");
    parent.def("empty_cache", []() { Backend::Pool::instance().release_cached(); },
               "Release the pool's cached blocks to the backend.");
    py::module_ m = parent.def_submodule(
        "resident", "Kernel entry points over DeviceArrays: inputs and outputs stay in this backend's memory");
    const auto blk = py::arg("block") = 128;
    m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("kernel"), py::arg("bias"),
          py::arg("activation") = "linear", py::arg("negative_slope") = 0.0, py::arg("threshold") = 0.0,
          py::arg("max_value") = py::none(), py::arg("alpha") = 1.0);
    m.def("dense_backward", &dense_backward, py::arg("dy"), py::arg("x"), py::arg("kernel"),
          py::arg("need_dx") = true, py::arg("need_dkernel") = true, py::arg("need_dbias") = true, blk);
    m.def("activation", &activation, py::arg("name"), py::arg("x"), py::arg("negative_slope") = 0.0,
          py::arg("threshold") = 0.0, py::arg("max_value") = py::none(), py::arg("alpha") = 1.0, blk);
    m.def("activation_backward", &activation_backward, py::arg("name"), py::arg("dy"), py::arg("x"), py::arg("y"),
          py::arg("negative_slope") = 0.0, py::arg("threshold") = 0.0, py::arg("max_value") = py::none(),
          py::arg("alpha") = 1.0, blk);
    m.def("softmax", [](const DA& x, int64_t block) { return rowwise(x, false, block); }, py::arg("x"), blk);
    m.def("softmax_backward", [](const DA& dy, const DA& y, int64_t block) { return rowwise_backward(dy, y, false, block); },
          py::arg("dy"), py::arg("y"), blk);
    m.def("log_softmax", [](const DA& x, int64_t block) { return rowwise(x, true, block); }, py::arg("x"), blk);
    m.def("log_softmax_backward",
          [](const DA& dy, const DA& y, int64_t block) { return rowwise_backward(dy, y, true, block); },
          py::arg("dy"), py::arg("y"), blk);
    m.def("sparse_softmax_xent", &sparse_softmax_xent, py::arg("logits"), py::arg("labels"), py::arg("scale") = 1.0,
          py::arg("need_grad") = true, blk);
    m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride_h"),
          py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("OH"), py::arg("OW"),
          py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"), py::arg("relu") = false, blk);
    m.def("conv2d_backward", &conv2d_backward, py::arg("dout"), py::arg("x"), py::arg("w"), py::arg("stride_h"),
          py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("dil_h"), py::arg("dil_w"),
          py::arg("groups"), py::arg("need_dx") = true, py::arg("need_dw") = true, py::arg("need_db") = true, blk);
    m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("pool"), py::arg("strides"), py::arg("padding"), blk);
    m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("argmax"), py::arg("input_hw"),
          py::arg("pool"), py::arg("strides"), py::arg("padding"), blk);
    m.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("pool"), py::arg("strides"), py::arg("padding"), blk);
    m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("input_hw"), py::arg("pool"),
          py::arg("strides"), py::arg("padding"), blk);
    m.def("batch_norm_train", &batch_norm_train, py::arg("x"), py::arg("gamma"), py::arg("beta"),
          py::arg("moving_mean"), py::arg("moving_variance"), py::arg("epsilon"), py::arg("momentum"), blk);
    m.def("batch_norm_inference", &batch_norm_inference, py::arg("x"), py::arg("gamma"), py::arg("beta"),
          py::arg("moving_mean"), py::arg("moving_variance"), py::arg("epsilon"), blk);
    m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"), py::arg("mean"),
          py::arg("inv_std"), py::arg("gamma"), py::arg("inference"), py::arg("need_dx") = true,
          py::arg("need_dgamma") = true, py::arg("need_dbeta") = true, blk);
    m.def("dropout", &dropout, py::arg("x"), py::arg("rate"), py::arg("seed"), blk);
    m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("rate"), blk);
    m.def("sgd_update", &sgd_update, py::arg("w"), py::arg("m"), py::arg("g"), py::arg("lr"), py::arg("momentum"),
          py::arg("nesterov"), blk);
    m.def("adam_update", &adam_update, py::arg("w"), py::arg("m"), py::arg("v"), py::arg("vhat"), py::arg("g"),
          py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), blk);
    m.def("rmsprop_update", &rmsprop_update, py::arg("w"), py::arg("v"), py::arg("mom"), py::arg("avg"), py::arg("g"),
          py::arg("lr"), py::arg("rho"), py::arg("momentum"), py::arg("epsilon"), blk);
    m.def("adagrad_update", &adagrad_update, py::arg("w"), py::arg("acc"), py::arg("g"), py::arg("lr"),
          py::arg("epsilon"), blk);
    m.def("weight_decay", &weight_decay, py::arg("w"), py::arg("weight_decay"), py::arg("lr"), blk);
    BindResidentLayers<Backend>::bind(m);
    ResidentLosses<BindResident>::bind(m);  // merge, losses, clipping (bind_resident_losses.hpp)
    ResidentIo<BindResident>::bind(m);  // batch statistics, staged uploads (bind_resident_io.hpp)
    ResidentSeq<BindResident>::bind(m);  // Embedding, masks, RepeatVector, Permute (bind_resident_seq.hpp)
  }
};

}  // namespace faltung::cuda::binding

#include "bind_resident_layers.hpp"  // BindResidentLayers, registered above
