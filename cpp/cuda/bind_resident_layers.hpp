// cpp/cuda/bind_resident_layers.hpp — more `resident` entry points over DeviceArrays (see
// bind_resident.hpp, whose checks these share): the transposed convolution, upsampling, the 2D
// shift behind zero padding and cropping, the time reversal behind go_backwards, and the
// recurrent families' forward and backward as two calls (GRU with either reset_after). Conv1D,
// the depthwise and separable convolutions, 1D and global pooling need none: the ops reshape
// onto conv2d / pool2d.
// Registered into the same submodule by BindResident::bind.
// N batch, H/W input size, OH/OW output size, C channels; B batch, T steps, F features, U units.
#pragma once
#include <optional>
#include <string>
#include <type_traits>

#include "bind_resident.hpp"

namespace faltung::cuda::binding {

template <class Backend>
struct BindResidentLayers : BindResident<Backend> {
  using Base = BindResident<Backend>;
  using DA = typename Base::DA;
  using Kn = typename Base::Kn;
  using Shape = typename Base::Shape;
  using Pair = typename Base::Pair;
  template <typename T> using Buf = typename Backend::template Buf<T>;
  using Base::dispatch;
  using Base::expect;
  using Base::expect_rank;
  using Base::expect_shape;
  using Base::opt;
  using Base::unary_op;
  template <typename T>
  static T* ptr(const DA& a, const std::string& op, const std::string& what) {
    return Base::template ptr<T>(a, op, what);
  }
  template <typename T>
  static T* opt_ptr(const std::optional<DA>& a, const std::string& op, const std::string& what) {
    return Base::template opt_ptr<T>(a, op, what);
  }

  // ---- Conv2DTranspose (Keras semantics, the CPU's conv_transpose2d_shape) ------------------
  // x (N,IH,IW,CI), kernel (KH,KW,F,CI) -> the forward conv's geometry whose data gradient the
  // transposed conv is (conv_transpose.hpp): its input (N,H,W,F) is y, its output is x.
  static Conv2dShape transpose_shape(const DA& x, const DA& k, const Pair& strides, const std::string& padding,
                                     const std::optional<Pair>& output_padding, const Pair& dilation,
                                     const std::string& op) {
    expect_rank(x, 4, op, "inputs");
    expect_rank(k, 4, op, "kernel");
    const Shape &xs = x.shape(), &ks = k.shape();
    expect(ks[3] == xs[3], op + ": expected `kernel` of shape (KH, KW, filters, " + std::to_string(xs[3]) +
                               ") (last axis = input channels), received " + dims_text(ks));
    expect(padding == "valid" || padding == "same",
           op + ": expected padding 'valid' or 'same', received '" + padding + "'");
    const Pair opad = output_padding ? *output_padding : Pair{-1, -1};
    expect(!output_padding || (opad[0] >= 0 && opad[1] >= 0),
           op + ": expected output_padding >= 0, received (" + std::to_string(opad[0]) + ", " +
               std::to_string(opad[1]) + ")");
    return conv_transpose2d_shape(xs[0], xs[1], xs[2], xs[3], ks[0], ks[1], ks[2], strides[0], strides[1],
                                  dilation[0], dilation[1], padding == "same", opad[0], opad[1]);
  }
  // -> y (N,H,W,F) = the data gradient of the forward conv at x, plus bias (F)
  static DA conv_transpose2d(const DA& x, const DA& kernel, const std::optional<DA>& bias, const Pair& strides,
                             const std::string& padding, const std::optional<Pair>& output_padding,
                             const Pair& dilation, int64_t block) {
    const std::string op = "conv_transpose2d";
    const Conv2dShape s = transpose_shape(x, kernel, strides, padding, output_padding, dilation, op);
    check_block(block, op);
    if (bias) expect_shape(*bias, {s.C}, op, "bias");
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>({s.N, s.H, s.W, s.C});
      const T *px = ptr<T>(x, op, "inputs"), *pk = ptr<T>(kernel, op, "kernel"), *pb = opt_ptr<T>(bias, op, "bias");
      T* py = y.template data<T>();
      Buf<T> col = conv_col_buf<Backend, T>(s);
      {
        py::gil_scoped_release nogil;
        Kn::conv2d_backward_data(py, px, pk, pb, s, block, col.get());
      }
      return y;
    });
  }
  // dy (N,H,W,F) -> (dx: the forward conv of dy, dkernel: the filter gradient with x as the
  // output gradient and dy as the input, dbias: the channel sums of dy), None where not needed
  static py::tuple conv_transpose2d_backward(const DA& dy, const DA& x, const DA& kernel, const Pair& strides,
                                             const std::string& padding, const std::optional<Pair>& output_padding,
                                             const Pair& dilation, bool need_dx, bool need_dkernel, bool need_dbias,
                                             int64_t block) {
    const std::string op = "conv_transpose2d_backward";
    const Conv2dShape s = transpose_shape(x, kernel, strides, padding, output_padding, dilation, op);
    check_block(block, op);
    expect_shape(dy, {s.N, s.H, s.W, s.C}, op, "dy");
    return dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      const int64_t P = s.N * s.H * s.W;
      std::optional<DA> dx, dk, db;
      if (need_dx) dx = DA::template empty<T>(x.shape());
      if (need_dkernel) dk = DA::template empty<T>(kernel.shape());
      if (need_dbias) db = DA::template empty<T>({s.C});
      Buf<T> wsf = Buf<T>::alloc(need_dkernel ? conv::filter_workspace_size(s) : 0),
             wsb = Buf<T>::alloc(need_dbias ? conv::reduce_workspace_size(P, s.C) : 0),
             col = conv_col_buf<Backend, T>(s);
      const T *pdy = ptr<T>(dy, op, "dy"), *px = ptr<T>(x, op, "inputs"), *pk = ptr<T>(kernel, op, "kernel");
      T *pdx = opt_ptr<T>(dx, op, "dx"), *pdk = opt_ptr<T>(dk, op, "dkernel"), *pdb = opt_ptr<T>(db, op, "dbias");
      {
        py::gil_scoped_release nogil;
        if (pdx) Kn::conv2d_forward(pdx, pdy, pk, static_cast<const T*>(nullptr), s, false, block, col.get());
        if (pdk) Kn::conv2d_backward_filter(pdk, wsf.get(), px, pdy, s, block, col.get());
        if (pdb) Kn::column_sum(pdb, wsb.get(), pdy, P, s.C, block);
      }
      return py::make_tuple(opt(dx), opt(dk), opt(db));
    });
  }

  // ---- upsampling --------------------------------------------------------------------------
  static void expect_positive(const Pair& p, const std::string& op, const std::string& what) {
    expect(p[0] >= 1 && p[1] >= 1, op + ": expected positive `" + what + "`, received (" + std::to_string(p[0]) +
                                       ", " + std::to_string(p[1]) + ")");
  }
  // x (N,H,W,C) -> (N,H*size[0],W*size[1],C), nearest (each pixel repeated)
  static DA upsample_nearest2d(const DA& x, const Pair& size, int64_t block) {
    const std::string op = "upsample_nearest2d";
    expect_rank(x, 4, op, "x");
    expect_positive(size, op, "size");
    check_block(block, op);
    const Shape& xs = x.shape();
    const int64_t N = xs[0], H = xs[1], W = xs[2], C = xs[3];
    return unary_op(x, {N, H * size[0], W * size[1], C}, op, "x", [&](auto* py, const auto* px) {
      Kn::upsample_nearest2d(py, px, N, H, W, C, size[0], size[1], block);
    });
  }
  // dy (N,H*size[0],W*size[1],C) -> dx (N,H,W,C), the sums of the blocks
  static DA upsample_nearest2d_backward(const DA& dy, const Pair& size, int64_t block) {
    const std::string op = "upsample_nearest2d_backward";
    expect_rank(dy, 4, op, "dy");
    expect_positive(size, op, "size");
    check_block(block, op);
    const Shape& ds = dy.shape();
    expect(ds[1] % size[0] == 0 && ds[2] % size[1] == 0,
           op + ": `dy` of shape " + dims_text(ds) + " is not a multiple of size (" + std::to_string(size[0]) + ", " +
               std::to_string(size[1]) + ")");
    const int64_t N = ds[0], H = ds[1] / size[0], W = ds[2] / size[1], C = ds[3];
    return unary_op(dy, {N, H, W, C}, op, "dy", [&](auto* pdx, const auto* pdy) {
      Kn::upsample_nearest2d_backward(pdx, pdy, N, H, W, C, size[0], size[1], block);
    });
  }
  // x (N,H,W,C) -> (N,OH,OW,C), bilinear with half-pixel centres (the CPU's resize)
  static DA resize_bilinear2d(const DA& x, const Pair& out_hw, int64_t block) {
    const std::string op = "resize_bilinear2d";
    expect_rank(x, 4, op, "x");
    expect_positive(out_hw, op, "out_hw");
    check_block(block, op);
    const Shape& xs = x.shape();
    expect(xs[1] >= 1 && xs[2] >= 1, op + ": empty input, received shape " + dims_text(xs));
    return unary_op(x, {xs[0], out_hw[0], out_hw[1], xs[3]}, op, "x", [&](auto* py, const auto* px) {
      Kn::resize_bilinear2d(py, px, xs[0], xs[1], xs[2], xs[3], out_hw[0], out_hw[1], block);
    });
  }
  // dy (N,OH,OW,C) -> dx (N,in_hw[0],in_hw[1],C), the adjoint of resize_bilinear2d
  static DA resize_bilinear2d_backward(const DA& dy, const Pair& in_hw, int64_t block) {
    const std::string op = "resize_bilinear2d_backward";
    expect_rank(dy, 4, op, "dy");
    expect_positive(in_hw, op, "in_hw");
    check_block(block, op);
    const Shape& ds = dy.shape();
    return unary_op(dy, {ds[0], in_hw[0], in_hw[1], ds[3]}, op, "dy", [&](auto* pdx, const auto* pdy) {
      Kn::resize_bilinear2d_backward(pdx, pdy, ds[0], in_hw[0], in_hw[1], ds[3], ds[1], ds[2], block);
    });
  }

  // ---- element moves (layout.cuh) ----------------------------------------------------------
  // x (N,H,W,C) -> y (N,OH,OW,C), y[n, oh, ow] = x[n, oh - top, ow - left] or 0 outside x:
  // zero padding with top, left >= 0, cropping with top, left <= 0
  static DA shift2d(const DA& x, const Pair& out_hw, int64_t top, int64_t left, int64_t block) {
    const std::string op = "shift2d";
    expect_rank(x, 4, op, "x");
    expect(out_hw[0] >= 0 && out_hw[1] >= 0, op + ": expected `out_hw` >= 0, received (" +
                                                 std::to_string(out_hw[0]) + ", " + std::to_string(out_hw[1]) + ")");
    check_block(block, op);
    const Shape& xs = x.shape();
    return unary_op(x, {xs[0], out_hw[0], out_hw[1], xs[3]}, op, "x", [&](auto* py, const auto* px) {
      Kn::shift2d(py, px, xs[0], xs[1], xs[2], xs[3], out_hw[0], out_hw[1], top, left, block);
    });
  }
  // x (B,T,F) -> x reversed along T
  static DA reverse_time(const DA& x, int64_t block) {
    const std::string op = "reverse_time";
    expect_rank(x, 3, op, "x");
    check_block(block, op);
    const Shape& xs = x.shape();
    return unary_op(x, xs, op, "x", [&](auto* py, const auto* px) {
      Kn::reverse_time(py, px, xs[0], xs[1], xs[2], block);
    });
  }

  // ---- recurrent layers: forward (keeping the workspace when training), then backward -------
  // Keras's default activations (tanh, sigmoid), an optional mask (B,T) uint8, optional initial
  // states (h0, and c0 for LSTM; their gradients come out of the backward, as the final states'
  // go in: the CPU ops' (faltung.ops.rnn) contract).
  struct Rnn {
    int64_t B, T, F, U;
  };
  // x (B,T,F), kernel (F,gates U), recurrent_kernel (U,gates U), bias of bias_shape(U) | None
  template <class BiasShape>
  static Rnn rnn_dims(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias, int64_t gates,
                      BiasShape bias_shape, const std::string& op, int64_t block) {
    expect_rank(x, 3, op, "x");
    expect_rank(Rk, 2, op, "recurrent_kernel");
    check_block(block, op);
    const Shape& xs = x.shape();
    const int64_t U = Rk.shape()[0], GU = gates * U;
    expect(U >= 1, op + ": expected `recurrent_kernel` of shape (units, " + std::to_string(gates) +
                       " units), received " + dims_text(Rk.shape()));
    expect_shape(W, {xs[2], GU}, op, "kernel");
    expect_shape(Rk, {U, GU}, op, "recurrent_kernel");
    if (bias) expect_shape(*bias, bias_shape(U), op, "bias");
    return Rnn{xs[0], xs[1], xs[2], U};
  }
  // The workspace a forward kept for the backward: workspace_size(B, T, U, true) elements.
  static void expect_workspace(const DA& ws, int64_t size, const std::string& op) {
    expect(ws.shape() == Shape{size}, op + ": expected the `workspace` the training forward returned (" +
                                          std::to_string(size) + " elements), received shape " +
                                          dims_text(ws.shape()));
  }
  // Optional dhs (B,T,U) and dh_T (B,U) (None: zeros).
  static void expect_grads(const std::optional<DA>& dhs, const std::optional<DA>& dh_T, const Rnn& d,
                           const std::string& op) {
    if (dhs) expect_shape(*dhs, {d.B, d.T, d.U}, op, "dhs");
    if (dh_T) expect_shape(*dh_T, {d.B, d.U}, op, "dh_T");
  }
  // An optional mask (B,T) uint8 (1 = keep; bind_resident_seq.hpp's masks), at input time.
  static const uint8_t* mask_ptr(const std::optional<DA>& mask, const Rnn& d, const std::string& op) {
    if (!mask) return nullptr;
    expect(mask->dtype() == DType::u8, op + ": expected `mask` of dtype uint8, received " + dtype_name(mask->dtype()));
    expect_shape(*mask, {d.B, d.T}, op, "mask");
    return mask->template data<uint8_t>();
  }

  // The fields every family's Args names alike (simple_rnn, lstm, gru): sizes, the checked inputs
  // and the mask; the rest nullptr, for rnn_forward / rnn_backward to fill. LSTM's cell state
  // (c_T, dc0) gets a scratch buffer from the caller.
  template <template <class> class Args, typename R>
  static Args<R> rnn_args(const Rnn& d, const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias,
                          const uint8_t* pm, bool zero_output_for_mask, const std::string& op) {
    Args<R> a{};
    a.B = d.B, a.T = d.T, a.F = d.F, a.U = d.U;
    a.zero_output_for_mask = zero_output_for_mask;
    a.x = ptr<R>(x, op, "x"), a.W = ptr<R>(W, op, "kernel"), a.Rk = ptr<R>(Rk, op, "recurrent_kernel");
    a.bias = opt_ptr<R>(bias, op, "bias");
    a.mask = pm;
    return a;
  }
  // An optional recurrent dropout mask (B,U) of x's dtype (rnn_common.cuh's m): sets a.rmask and
  // a.rscratch to `scratch`, made here (B (T+1) U elements), which must outlive the launch.
  template <class A, typename R>
  static void recurrent_mask_into(A& a, const std::optional<DA>& rmask, const Rnn& d, DA& scratch,
                                  const std::string& op) {
    if (!rmask) return;
    expect_shape(*rmask, {d.B, d.U}, op, "recurrent_mask");
    a.rmask = ptr<R>(*rmask, op, "recurrent_mask");
    scratch = DA::template empty<R>({d.B * (d.T + 1) * d.U});
    a.rscratch = scratch.template data<R>();
  }
  template <template <class> class Args, typename R>
  static constexpr bool has_cell = std::is_same_v<Args<R>, cuda::lstm::Args<R>>;
  // initial_state: None (zeros) or a list of n arrays (B,U) of x's dtype -> their pointers
  template <typename R>
  static std::vector<const R*> state_ptrs(const std::optional<std::vector<DA>>& states, size_t n, const Rnn& d,
                                          const std::string& op) {
    std::vector<const R*> p(n, nullptr);
    if (!states) return p;
    expect(states->size() == n, op + ": expected `initial_state` a list of " + std::to_string(n) +
                                    " arrays of shape (batch, units), received " + std::to_string(states->size()));
    for (size_t k = 0; k < n; ++k) {
      const std::string what = "initial_state[" + std::to_string(k) + "]";
      expect_shape((*states)[k], {d.B, d.U}, op, what);
      p[k] = ptr<R>((*states)[k], op, what);
    }
    return p;
  }
  // -> (hs (B,T,U), h_T (B,U), [c_T (B,U): LSTM,] workspace | None (None unless training));
  // run(a) launches the family's forward without the GIL; ws_size = workspace_size(B, T, U,
  // training).
  template <template <class> class Args, class Run>
  static py::tuple rnn_forward(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias, bool training,
                               const std::optional<DA>& mask, bool zero_output_for_mask,
                               const std::optional<std::vector<DA>>& initial_state,
                               const std::optional<DA>& recurrent_mask, const Rnn& d, int64_t ws_size,
                               const std::string& op, Run run) {
    const uint8_t* pm = mask_ptr(mask, d, op);
    return dispatch(x, op, [&](auto zero) {
      using R = decltype(zero);
      constexpr bool cell = has_cell<Args, R>;
      DA hs = DA::template empty<R>({d.B, d.T, d.U}), h_T = DA::template empty<R>({d.B, d.U}),
         ws = DA::template empty<R>({ws_size}), c_T = DA::template empty<R>({cell ? d.B : 0, d.U});
      Args<R> a = rnn_args<Args, R>(d, x, W, Rk, bias, pm, zero_output_for_mask, op);
      const std::vector<const R*> s0 = state_ptrs<R>(initial_state, cell ? 2 : 1, d, op);
      a.h0 = s0[0];
      a.hs = hs.template data<R>(), a.h_T = h_T.template data<R>(), a.ws = ws.template data<R>();
      if constexpr (cell) a.c0 = s0[1], a.c_T = c_T.template data<R>();
      DA scratch = DA::template empty<R>({0});
      recurrent_mask_into<Args<R>, R>(a, recurrent_mask, d, scratch, op);
      {
        py::gil_scoped_release nogil;
        run(a);
      }
      py::object kept = training ? py::cast(ws) : py::none();
      if constexpr (cell) return py::tuple(py::make_tuple(hs, h_T, c_T, kept));
      else return py::tuple(py::make_tuple(hs, h_T, kept));
    });
  }
  // dhs (B,T,U) | None, dh_T (B,U) | None, dc_T (B,U) | None (LSTM's only), the forward's inputs
  // and workspace (ws_size = workspace_size(B, T, U, true)) -> (dx (B,T,F) | None (without
  // need_dx), dkernel, drecurrent_kernel, dbias | None, dh0 (B,U)[, dc0 (B,U): LSTM]); run(a)
  // launches the family's backward without the GIL.
  template <template <class> class Args, class Run>
  static py::tuple rnn_backward(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias, const DA& ws,
                                const std::optional<DA>& dhs, const std::optional<DA>& dh_T,
                                const std::optional<DA>& dc_T, bool need_dx, const std::optional<DA>& mask,
                                bool zero_output_for_mask, const std::optional<DA>& recurrent_mask, const Rnn& d,
                                int64_t ws_size, const std::string& op, Run run) {
    const uint8_t* pm = mask_ptr(mask, d, op);
    expect_workspace(ws, ws_size, op);
    expect_grads(dhs, dh_T, d, op);
    if (dc_T) expect_shape(*dc_T, {d.B, d.U}, op, "dc_T");
    return dispatch(x, op, [&](auto zero) {
      using R = decltype(zero);
      constexpr bool cell = has_cell<Args, R>;
      DA dW = DA::template empty<R>(W.shape()), dR = DA::template empty<R>(Rk.shape()),
         dh0 = DA::template empty<R>({d.B, d.U}), dc0 = DA::template empty<R>({cell ? d.B : 0, d.U});
      std::optional<DA> dx, db;
      if (need_dx) dx = DA::template empty<R>(x.shape());
      if (bias) db = DA::template empty<R>(bias->shape());
      Args<R> a = rnn_args<Args, R>(d, x, W, Rk, bias, pm, zero_output_for_mask, op);
      a.dhs = opt_ptr<R>(dhs, op, "dhs"), a.dh_T = opt_ptr<R>(dh_T, op, "dh_T");
      a.dx = opt_ptr<R>(dx, op, "dx"), a.dW = dW.template data<R>(), a.dR = dR.template data<R>();
      a.db = opt_ptr<R>(db, op, "dbias"), a.dh0 = dh0.template data<R>(), a.ws = ptr<R>(ws, op, "workspace");
      if constexpr (cell) a.dc_T = opt_ptr<R>(dc_T, op, "dc_T"), a.dc0 = dc0.template data<R>();
      DA scratch = DA::template empty<R>({0});
      recurrent_mask_into<Args<R>, R>(a, recurrent_mask, d, scratch, op);
      {
        py::gil_scoped_release nogil;
        run(a);
      }
      if constexpr (cell) return py::tuple(py::make_tuple(Base::opt(dx), dW, dR, Base::opt(db), dh0, dc0));
      else return py::tuple(py::make_tuple(Base::opt(dx), dW, dR, Base::opt(db), dh0));
    });
  }

  static Shape simple_rnn_bias_shape(int64_t U) { return Shape{U}; }
  static py::tuple simple_rnn_forward(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias,
                                      bool training, const std::optional<DA>& mask, bool zero_output_for_mask,
                                      const std::optional<std::vector<DA>>& initial_state,
                                      const std::optional<DA>& recurrent_mask, int64_t block) {
    const std::string op = "simple_rnn_forward";
    const Rnn d = rnn_dims(x, W, Rk, bias, 1, simple_rnn_bias_shape, op, block);
    return rnn_forward<cuda::simple_rnn::Args>(x, W, Rk, bias, training, mask, zero_output_for_mask, initial_state,
                                               recurrent_mask, d,
                                               cuda::simple_rnn::workspace_size(d.B, d.T, d.U, training), op,
                                               [&](const auto& a) { Kn::simple_rnn_forward(a, block); });
  }
  static py::tuple simple_rnn_backward(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias,
                                       const DA& ws, const std::optional<DA>& dhs, const std::optional<DA>& dh_T,
                                       bool need_dx, const std::optional<DA>& mask, bool zero_output_for_mask,
                                       const std::optional<DA>& recurrent_mask, int64_t block) {
    const std::string op = "simple_rnn_backward";
    const Rnn d = rnn_dims(x, W, Rk, bias, 1, simple_rnn_bias_shape, op, block);
    return rnn_backward<cuda::simple_rnn::Args>(x, W, Rk, bias, ws, dhs, dh_T, std::nullopt, need_dx, mask,
                                                zero_output_for_mask, recurrent_mask, d,
                                                cuda::simple_rnn::workspace_size(d.B, d.T, d.U, true), op,
                                                [&](const auto& a) { Kn::simple_rnn_backward(a, block); });
  }

  // LSTM, gates i, f, c, o
  static Shape lstm_bias_shape(int64_t U) { return Shape{4 * U}; }
  static py::tuple lstm_forward(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias, bool training,
                                const std::optional<DA>& mask, bool zero_output_for_mask,
                                const std::optional<std::vector<DA>>& initial_state,
                                const std::optional<DA>& recurrent_mask, int64_t block) {
    const std::string op = "lstm_forward";
    const Rnn d = rnn_dims(x, W, Rk, bias, 4, lstm_bias_shape, op, block);
    return rnn_forward<cuda::lstm::Args>(x, W, Rk, bias, training, mask, zero_output_for_mask, initial_state,
                                         recurrent_mask, d,
                                         cuda::lstm::workspace_size(d.B, d.T, d.U, training), op,
                                         [&](const auto& a) { Kn::lstm_forward(a, block); });
  }
  static py::tuple lstm_backward(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias,
                                 const DA& ws, const std::optional<DA>& dhs, const std::optional<DA>& dh_T,
                                 const std::optional<DA>& dc_T, bool need_dx, const std::optional<DA>& mask,
                                 bool zero_output_for_mask, const std::optional<DA>& recurrent_mask, int64_t block) {
    const std::string op = "lstm_backward";
    const Rnn d = rnn_dims(x, W, Rk, bias, 4, lstm_bias_shape, op, block);
    return rnn_backward<cuda::lstm::Args>(x, W, Rk, bias, ws, dhs, dh_T, dc_T, need_dx, mask, zero_output_for_mask,
                                          recurrent_mask, d,
                                          cuda::lstm::workspace_size(d.B, d.T, d.U, true), op,
                                          [&](const auto& a) { Kn::lstm_backward(a, block); });
  }

  // GRU, gates z, r, h; reset_after: bias (2, 3U) (gru.cuh), else bias (3U)
  // (gru_reset_before.cuh, which takes gru::Args)
  static Shape gru_bias_shape(int64_t U, bool reset_after) { return reset_after ? Shape{2, 3 * U} : Shape{3 * U}; }
  static int64_t gru_workspace(const Rnn& d, bool reset_after, bool backward) {
    return reset_after ? cuda::gru::workspace_size(d.B, d.T, d.U, backward)
                       : cuda::gru_reset_before::workspace_size(d.B, d.T, d.U, backward);
  }
  static py::tuple gru_forward(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias, bool training,
                               bool reset_after, const std::optional<DA>& mask, bool zero_output_for_mask,
                               const std::optional<std::vector<DA>>& initial_state,
                               const std::optional<DA>& recurrent_mask, int64_t block) {
    const std::string op = "gru_forward";
    const Rnn d = rnn_dims(x, W, Rk, bias, 3, [&](int64_t U) { return gru_bias_shape(U, reset_after); }, op, block);
    return rnn_forward<cuda::gru::Args>(x, W, Rk, bias, training, mask, zero_output_for_mask, initial_state,
                                        recurrent_mask, d,
                                        gru_workspace(d, reset_after, training), op, [&](const auto& a) {
                                          if (reset_after) Kn::gru_forward(a, block);
                                          else Kn::gru_reset_before_forward(a, block);
                                        });
  }
  static py::tuple gru_backward(const DA& x, const DA& W, const DA& Rk, const std::optional<DA>& bias, const DA& ws,
                                const std::optional<DA>& dhs, const std::optional<DA>& dh_T, bool reset_after,
                                bool need_dx, const std::optional<DA>& mask, bool zero_output_for_mask,
                                const std::optional<DA>& recurrent_mask, int64_t block) {
    const std::string op = "gru_backward";
    const Rnn d = rnn_dims(x, W, Rk, bias, 3, [&](int64_t U) { return gru_bias_shape(U, reset_after); }, op, block);
    return rnn_backward<cuda::gru::Args>(x, W, Rk, bias, ws, dhs, dh_T, std::nullopt, need_dx, mask,
                                         zero_output_for_mask, recurrent_mask, d,
                                         gru_workspace(d, reset_after, true), op, [&](const auto& a) {
                                           if (reset_after) Kn::gru_backward(a, block);
                                           else Kn::gru_reset_before_backward(a, block);
                                         });
  }

  // Into the `resident` submodule (BindResident::bind).
  static void bind(py::module_& m) {
    const auto blk = py::arg("block") = 128;
    m.def("conv_transpose2d", &conv_transpose2d, py::arg("x"), py::arg("kernel"), py::arg("bias"),
          py::arg("strides"), py::arg("padding"), py::arg("output_padding"), py::arg("dilation_rate"), blk);
    m.def("conv_transpose2d_backward", &conv_transpose2d_backward, py::arg("dy"), py::arg("x"), py::arg("kernel"),
          py::arg("strides"), py::arg("padding"), py::arg("output_padding"), py::arg("dilation_rate"),
          py::arg("need_dx") = true, py::arg("need_dkernel") = true, py::arg("need_dbias") = true, blk);
    m.def("upsample_nearest2d", &upsample_nearest2d, py::arg("x"), py::arg("size"), blk);
    m.def("upsample_nearest2d_backward", &upsample_nearest2d_backward, py::arg("dy"), py::arg("size"), blk);
    m.def("resize_bilinear2d", &resize_bilinear2d, py::arg("x"), py::arg("out_hw"), blk);
    m.def("resize_bilinear2d_backward", &resize_bilinear2d_backward, py::arg("dy"), py::arg("in_hw"), blk);
    m.def("shift2d", &shift2d, py::arg("x"), py::arg("out_hw"), py::arg("top"), py::arg("left"), blk);
    m.def("reverse_time", &reverse_time, py::arg("x"), blk);
    const auto rnn_fwd = [&](const char* name, auto fn) {
      m.def(name, fn, py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"), py::arg("bias"),
            py::arg("training") = false, py::arg("mask") = py::none(), py::arg("zero_output_for_mask") = false,
            py::arg("initial_state") = py::none(), py::arg("recurrent_mask") = py::none(), py::arg("block") = 128);
    };
    m.def("simple_rnn_backward", &simple_rnn_backward, py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
          py::arg("bias"), py::arg("workspace"), py::arg("dhs"), py::arg("dh_T"), py::arg("need_dx") = true,
          py::arg("mask") = py::none(), py::arg("zero_output_for_mask") = false, py::arg("recurrent_mask") = py::none(),
          blk);
    rnn_fwd("simple_rnn_forward", &simple_rnn_forward);
    rnn_fwd("lstm_forward", &lstm_forward);
    m.def("lstm_backward", &lstm_backward, py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
          py::arg("bias"), py::arg("workspace"), py::arg("dhs"), py::arg("dh_T"), py::arg("dc_T") = py::none(),
          py::arg("need_dx") = true, py::arg("mask") = py::none(), py::arg("zero_output_for_mask") = false,
          py::arg("recurrent_mask") = py::none(), blk);
    m.def("gru_forward", &gru_forward, py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"), py::arg("bias"),
          py::arg("training") = false, py::arg("reset_after") = true, py::arg("mask") = py::none(),
          py::arg("zero_output_for_mask") = false, py::arg("initial_state") = py::none(),
          py::arg("recurrent_mask") = py::none(), blk);
    m.def("gru_backward", &gru_backward, py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
          py::arg("bias"), py::arg("workspace"), py::arg("dhs"), py::arg("dh_T"), py::arg("reset_after") = true,
          py::arg("need_dx") = true, py::arg("mask") = py::none(), py::arg("zero_output_for_mask") = false,
          py::arg("recurrent_mask") = py::none(), blk);
  }
};

}  // namespace faltung::cuda::binding
