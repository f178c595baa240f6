// cpp/cuda/bind_kernels.hpp — the Python face of the CUDA kernel families, written once for
// both executors: faltung._cuda_host (Backend = HostBackend, host_harness.cpp: the bodies run
// over the whole grid on the CPU) and faltung._cuda (Backend = DeviceBackend, cuda_module.cpp:
// the same launches on a GPU). Names and arguments mirror faltung._core's (<name>_f32/_f64),
// plus `block`, the threads per block, so that tests can make the bodies stride.
// Each call copies its numpy inputs into Backend buffers, runs the family's launch sequence
// and copies the outputs back: a test and reference path, not a device-resident model.
// B batch, T steps, C classes, S label slots; R rows x K row length; n elements.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional arguments

#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "faltung/ctc.hpp"
#include "faltung/pooling.hpp"
// convolution and resampling
#include "faltung/conv.hpp"
#include "faltung/conv_transpose.hpp"
#include "kernels.hpp"

namespace faltung::cuda::binding {

namespace py = pybind11;
template <typename T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style>;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}
inline void check(bool ok, const std::string& msg) {
  if (!ok) throw py::value_error(msg);
}
inline void check_rank(const py::array& a, int rank, const std::string& op, const std::string& what) {
  check(a.ndim() == rank, op + ": expected `" + what + "` of rank " + std::to_string(rank) +
                              ", received shape " + shape_str(a));
}
inline void check_block(int64_t block, const std::string& op) {
  check(block >= 32 && block <= 1024 && block % 32 == 0,
        op + ": expected `block` a multiple of 32 in [32, 1024] (threads per block), received " +
            std::to_string(block));
}
inline I32 as_int32(const py::array& a, const std::string& op, const std::string& what) {
  if (!a.dtype().is(py::dtype::of<int32_t>()))
    throw py::type_error(op + ": expected `" + what + "` of dtype int32, received dtype " +
                         std::string(py::str(a.dtype())));
  return I32::ensure(a);
}
template <typename T>
Arr<T> empty_like_shape(const py::array& a) {
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  return Arr<T>(shape);
}

template <class Backend>
struct Bind {
  template <typename T> using Buf = typename Backend::template Buf<T>;
  using Kn = typename Backend::Kernels;

  template <typename T>
  static Buf<T> in(const py::array& a) {  // a: C-contiguous, of dtype T
    return Buf<T>::upload(static_cast<const T*>(a.data()), a.size());
  }
  template <typename T>
  static void out(py::array& a, const Buf<T>& b) {
    b.download(static_cast<T*>(a.mutable_data()), a.size());
  }

  // x (B,T,C), labels (B,S), label_lengths (B), input_lengths (B) -> (loss (B), grad or None)
  template <typename R>
  static py::tuple ctc_loss(const Arr<R>& x, const py::array& labels_a, const py::array& label_len_a,
                            const py::array& input_len_a, int64_t blank, bool log_probs,
                            bool zero_infinity, bool need_grad, int64_t block) {
    const std::string op = "ctc_loss";
    check_rank(x, 3, op, "output");
    check_block(block, op);
    const I32 labels = as_int32(labels_a, op, "target"), label_len = as_int32(label_len_a, op, "target_length"),
              input_len = as_int32(input_len_a, op, "output_length");
    check_rank(labels, 2, op, "target");
    CtcConfig c;
    c.B = x.shape(0), c.T = x.shape(1), c.C = x.shape(2), c.S = labels.shape(1), c.blank = blank;
    check(labels.shape(0) == c.B && label_len.ndim() == 1 && label_len.shape(0) == c.B &&
              input_len.ndim() == 1 && input_len.shape(0) == c.B,
          op + ": expected `target` (" + std::to_string(c.B) + ", S) and lengths (" + std::to_string(c.B) +
              ",), received " + shape_str(labels) + ", " + shape_str(label_len) + ", " + shape_str(input_len));
    ctc_check(c, labels.data(), label_len.data(), input_len.data());  // the CPU's validation
    Buf<R> dx = in<R>(x), dloss = Buf<R>::alloc(c.B), dgrad = Buf<R>::alloc(need_grad ? x.size() : 0),
           ws = Buf<R>::alloc(ctc::workspace_size(c.B, c.T, c.S, need_grad));
    Buf<int32_t> dlab = in<int32_t>(labels), dll = in<int32_t>(label_len), dil = in<int32_t>(input_len),
                 iws = Buf<int32_t>::alloc(ctc::int_workspace_size(c.B, c.S));
    const ctc::Args<R> a{c.B, c.T, c.C, c.S, c.blank, log_probs, zero_infinity, dx.get(), dlab.get(),
                         dll.get(), dil.get(), dloss.get(), need_grad ? dgrad.get() : nullptr, ws.get(), iws.get()};
    Kn::ctc_loss(a, block);
    Arr<R> loss({c.B});
    out<R>(loss, dloss);
    if (!need_grad) return py::make_tuple(loss, py::none());
    Arr<R> grad = empty_like_shape<R>(x);
    out<R>(grad, dgrad);
    return py::make_tuple(loss, grad);
  }

  // x (B,T,C), lengths (B) -> (decoded (B,T) int32, score (B))
  template <typename R>
  static py::tuple ctc_greedy_decode(const Arr<R>& x, const py::array& lengths_a, int64_t blank,
                                     bool merge_repeated, int64_t block) {
    const std::string op = "ctc_decode";
    check_rank(x, 3, op, "inputs");
    check_block(block, op);
    const I32 lengths = as_int32(lengths_a, op, "sequence_lengths");
    const int64_t B = x.shape(0), T = x.shape(1), C = x.shape(2);
    check(lengths.ndim() == 1 && lengths.shape(0) == B,
          op + ": expected `sequence_lengths` of shape (" + std::to_string(B) + ",), received " + shape_str(lengths));
    check(C >= 1 && blank >= 0 && blank < C, op + ": expected a blank index in [0, " + std::to_string(C) +
                                                 "), received " + std::to_string(blank));
    for (int64_t b = 0; b < B; ++b)
      check(lengths.data()[b] >= 0 && lengths.data()[b] <= T,
            op + ": sequence_lengths[" + std::to_string(b) + "] = " + std::to_string(lengths.data()[b]) +
                " is outside [0, " + std::to_string(T) + "]");
    Buf<R> dx = in<R>(x), dscore = Buf<R>::alloc(B);
    Buf<int32_t> dlen = in<int32_t>(lengths), ddec = Buf<int32_t>::alloc(B * T), best = Buf<int32_t>::alloc(B * T);
    Kn::ctc_greedy_decode(ctc::GreedyArgs<R>{B, T, C, blank, merge_repeated, dx.get(), dlen.get(), ddec.get(),
                                            best.get(), dscore.get()},
                         block);
    py::array_t<int32_t, py::array::c_style> decoded({B, T});
    Arr<R> score({B});
    out<int32_t>(decoded, ddec);
    out<R>(score, dscore);
    return py::make_tuple(decoded, score);
  }

  // Arrays given as None stay nullptr; otherwise of `shape` (ValueError naming `what`).
  template <typename T>
  static std::optional<Buf<T>> opt_in(const std::optional<Arr<T>>& a, const std::vector<int64_t>& shape,
                                      const std::string& op, const std::string& what) {
    if (!a) return std::nullopt;
    bool ok = a->ndim() == py::ssize_t(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = a->shape(i) == shape[i];
    std::string want = "(";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    check(ok, op + ": expected `" + what + "` of shape " + want + "), received " + shape_str(*a));
    return in<T>(*a);
  }
  template <typename T>
  static T* ptr(std::optional<Buf<T>>& b) { return b ? b->get() : nullptr; }

  // x (B,T,F), kernel (F,GU), recurrent_kernel (U,GU) with GU = gates * U, mask (B,T) or None
  static void check_recurrent(const std::string& op, const py::array& x, const py::array& W, const py::array& Rk,
                              const std::optional<py::array_t<bool, py::array::c_style>>& mask, int64_t gates,
                              int64_t block) {
    check_rank(x, 3, op, "x");
    check_rank(Rk, 2, op, "recurrent_kernel");
    check_block(block, op);
    const int64_t B = x.shape(0), T = x.shape(1), F = x.shape(2), U = Rk.shape(0), GU = gates * U;
    const std::string g = std::to_string(gates) + "U";
    check(W.ndim() == 2 && W.shape(0) == F && W.shape(1) == GU && Rk.shape(1) == GU,
          op + ": expected `kernel` (" + std::to_string(F) + ", " + g + ") and `recurrent_kernel` (U, " + g +
              ") with U=" + std::to_string(U) + ", received " + shape_str(W) + " and " + shape_str(Rk));
    if (mask)
      check(mask->ndim() == 2 && mask->shape(0) == B && mask->shape(1) == T,
            op + ": expected `mask` of shape (" + std::to_string(B) + ", " + std::to_string(T) + "), received " +
                shape_str(*mask));
  }
  static std::optional<Buf<uint8_t>> mask_in(const std::optional<py::array_t<bool, py::array::c_style>>& mask) {
    if (!mask) return std::nullopt;
    return Buf<uint8_t>::upload(reinterpret_cast<const uint8_t*>(mask->data()), mask->size());
  }
  template <typename R>
  static py::object fetch(const Buf<R>& b, const std::vector<py::ssize_t>& shape) {
    Arr<R> arr(shape);
    out<R>(arr, b);
    return std::move(arr);
  }

  // SimpleRNN (tanh) forward and, with need_grad, backward in one call:
  // x (B,T,F), kernel (F,U), recurrent_kernel (U,U), bias (U) | None, h0 (B,U) | None,
  // mask (B,T) bool | None, dhs (B,T,U), dh_T (B,U) | None
  // -> (hs, h_T, dx, dkernel, drecurrent_kernel, dbias, dh0), as gru.
  template <typename R>
  static py::tuple simple_rnn(const Arr<R>& x, const Arr<R>& W, const Arr<R>& Rk, const std::optional<Arr<R>>& bias,
                              const std::optional<Arr<R>>& h0,
                              const std::optional<py::array_t<bool, py::array::c_style>>& mask,
                              bool zero_output_for_mask, const std::optional<Arr<R>>& dhs,
                              const std::optional<Arr<R>>& dh_T, bool need_grad, int64_t block) {
    const std::string op = "simple_rnn";
    check_recurrent(op, x, W, Rk, mask, 1, block);
    const int64_t B = x.shape(0), T = x.shape(1), F = x.shape(2), U = Rk.shape(0);
    Buf<R> dx_in = in<R>(x), dW_in = in<R>(W), dR_in = in<R>(Rk);
    auto dbias = opt_in<R>(bias, {U}, op, "bias"), dh0 = opt_in<R>(h0, {B, U}, op, "h0"),
         ddhs = opt_in<R>(dhs, {B, T, U}, op, "dhs"), ddh_T = opt_in<R>(dh_T, {B, U}, op, "dh_T");
    auto dmask = mask_in(mask);
    const int64_t gsz = need_grad ? 1 : 0;
    Buf<R> hs = Buf<R>::alloc(B * T * U), h_T = Buf<R>::alloc(B * U), gx = Buf<R>::alloc(gsz * B * T * F),
           gW = Buf<R>::alloc(gsz * F * U), gR = Buf<R>::alloc(gsz * U * U), gb = Buf<R>::alloc(bias ? gsz * U : 0),
           gh0 = Buf<R>::alloc(gsz * B * U), ws = Buf<R>::alloc(cuda::simple_rnn::workspace_size(B, T, U, need_grad));
    const cuda::simple_rnn::Args<R> a{B, T, F, U, zero_output_for_mask, dx_in.get(), dW_in.get(), dR_in.get(),
                                      ptr(dbias), ptr(dh0), dmask ? dmask->get() : nullptr, hs.get(), h_T.get(),
                                      ptr(ddhs), ptr(ddh_T), need_grad ? gx.get() : nullptr, gW.get(), gR.get(),
                                      bias ? gb.get() : nullptr, gh0.get(), ws.get()};
    Kn::simple_rnn(a, block);
    py::object none = py::none();
    return py::make_tuple(fetch(hs, {B, T, U}), fetch(h_T, {B, U}), need_grad ? fetch(gx, {B, T, F}) : none,
                          need_grad ? fetch(gW, {F, U}) : none, need_grad ? fetch(gR, {U, U}) : none,
                          need_grad && bias ? fetch(gb, {U}) : none, need_grad ? fetch(gh0, {B, U}) : none);
  }

  // GRU (reset_after, tanh, sigmoid) forward and, with need_grad, backward in one call:
  // x (B,T,F), kernel (F,3U), recurrent_kernel (U,3U), bias (2,3U) | None, h0 (B,U) | None,
  // mask (B,T) bool | None, dhs (B,T,U), dh_T (B,U) | None
  // -> (hs, h_T, dx, dkernel, drecurrent_kernel, dbias, dh0); the gradients None without
  // need_grad, dbias None without bias.
  template <typename R>
  static py::tuple gru(const Arr<R>& x, const Arr<R>& W, const Arr<R>& Rk, const std::optional<Arr<R>>& bias,
                       const std::optional<Arr<R>>& h0, const std::optional<py::array_t<bool, py::array::c_style>>& mask,
                       bool zero_output_for_mask, const std::optional<Arr<R>>& dhs,
                       const std::optional<Arr<R>>& dh_T, bool need_grad, int64_t block) {
    const std::string op = "gru";
    check_recurrent(op, x, W, Rk, mask, 3, block);
    const int64_t B = x.shape(0), T = x.shape(1), F = x.shape(2), U = Rk.shape(0), GU = 3 * U;
    Buf<R> dx_in = in<R>(x), dW_in = in<R>(W), dR_in = in<R>(Rk);
    auto dbias = opt_in<R>(bias, {2, GU}, op, "bias"), dh0 = opt_in<R>(h0, {B, U}, op, "h0"),
         ddhs = opt_in<R>(dhs, {B, T, U}, op, "dhs"), ddh_T = opt_in<R>(dh_T, {B, U}, op, "dh_T");
    auto dmask = mask_in(mask);
    const int64_t gsz = need_grad ? 1 : 0;
    Buf<R> hs = Buf<R>::alloc(B * T * U), h_T = Buf<R>::alloc(B * U), gx = Buf<R>::alloc(gsz * B * T * F),
           gW = Buf<R>::alloc(gsz * F * GU), gR = Buf<R>::alloc(gsz * U * GU), gb = Buf<R>::alloc(bias ? gsz * 2 * GU : 0),
           gh0 = Buf<R>::alloc(gsz * B * U), ws = Buf<R>::alloc(cuda::gru::workspace_size(B, T, U, need_grad));
    const cuda::gru::Args<R> a{B, T, F, U, zero_output_for_mask, dx_in.get(), dW_in.get(), dR_in.get(), ptr(dbias),
                               ptr(dh0), dmask ? dmask->get() : nullptr, hs.get(), h_T.get(), ptr(ddhs), ptr(ddh_T),
                               need_grad ? gx.get() : nullptr, gW.get(), gR.get(), bias ? gb.get() : nullptr,
                               gh0.get(), ws.get()};
    Kn::gru(a, block);
    py::object none = py::none();
    return py::make_tuple(fetch(hs, {B, T, U}), fetch(h_T, {B, U}), need_grad ? fetch(gx, {B, T, F}) : none,
                          need_grad ? fetch(gW, {F, GU}) : none, need_grad ? fetch(gR, {U, GU}) : none,
                          need_grad && bias ? fetch(gb, {2, GU}) : none, need_grad ? fetch(gh0, {B, U}) : none);
  }

  // LSTM (tanh, sigmoid) forward and, with need_grad, backward in one call:
  // x (B,T,F), kernel (F,4U), recurrent_kernel (U,4U), bias (4U) | None, h0, c0 (B,U) | None,
  // mask (B,T) bool | None, dhs (B,T,U), dh_T, dc_T (B,U) | None
  // -> (hs, h_T, c_T, dx, dkernel, drecurrent_kernel, dbias, dh0, dc0); the gradients None
  // without need_grad, dbias None without bias.
  template <typename R>
  static py::tuple lstm(const Arr<R>& x, const Arr<R>& W, const Arr<R>& Rk, const std::optional<Arr<R>>& bias,
                        const std::optional<Arr<R>>& h0, const std::optional<Arr<R>>& c0,
                        const std::optional<py::array_t<bool, py::array::c_style>>& mask, bool zero_output_for_mask,
                        const std::optional<Arr<R>>& dhs, const std::optional<Arr<R>>& dh_T,
                        const std::optional<Arr<R>>& dc_T, bool need_grad, int64_t block) {
    const std::string op = "lstm";
    check_recurrent(op, x, W, Rk, mask, 4, block);
    const int64_t B = x.shape(0), T = x.shape(1), F = x.shape(2), U = Rk.shape(0), GU = 4 * U;
    Buf<R> dx_in = in<R>(x), dW_in = in<R>(W), dR_in = in<R>(Rk);
    auto dbias = opt_in<R>(bias, {GU}, op, "bias"), dh0 = opt_in<R>(h0, {B, U}, op, "h0"),
         dc0 = opt_in<R>(c0, {B, U}, op, "c0"), ddhs = opt_in<R>(dhs, {B, T, U}, op, "dhs"),
         ddh_T = opt_in<R>(dh_T, {B, U}, op, "dh_T"), ddc_T = opt_in<R>(dc_T, {B, U}, op, "dc_T");
    auto dmask = mask_in(mask);
    Buf<R> hs = Buf<R>::alloc(B * T * U), h_T = Buf<R>::alloc(B * U), c_T = Buf<R>::alloc(B * U);
    const int64_t gsz = need_grad ? 1 : 0;
    Buf<R> gx = Buf<R>::alloc(gsz * B * T * F), gW = Buf<R>::alloc(gsz * F * GU), gR = Buf<R>::alloc(gsz * U * GU),
           gb = Buf<R>::alloc(bias ? gsz * GU : 0), gh0 = Buf<R>::alloc(gsz * B * U), gc0 = Buf<R>::alloc(gsz * B * U),
           ws = Buf<R>::alloc(cuda::lstm::workspace_size(B, T, U, need_grad));
    const cuda::lstm::Args<R> a{B, T, F, U, zero_output_for_mask, dx_in.get(), dW_in.get(), dR_in.get(),
                                ptr(dbias), ptr(dh0), ptr(dc0), dmask ? dmask->get() : nullptr, hs.get(),
                                h_T.get(), c_T.get(), ptr(ddhs), ptr(ddh_T), ptr(ddc_T),
                                need_grad ? gx.get() : nullptr, gW.get(), gR.get(), bias ? gb.get() : nullptr,
                                gh0.get(), gc0.get(), ws.get()};
    Kn::lstm(a, block);
    py::object none = py::none();
    return py::make_tuple(fetch(hs, {B, T, U}), fetch(h_T, {B, U}), fetch(c_T, {B, U}),
                          need_grad ? fetch(gx, {B, T, F}) : none, need_grad ? fetch(gW, {F, GU}) : none,
                          need_grad ? fetch(gR, {U, GU}) : none, need_grad && bias ? fetch(gb, {GU}) : none,
                          need_grad ? fetch(gh0, {B, U}) : none, need_grad ? fetch(gc0, {B, U}) : none);
  }

  // Pooling geometry from the CPU's pool2d_shape (x (N,H,W,C), pool and strides (2,), padding).
  using Pair = std::array<int64_t, 2>;
  static Pool2dShape pool_shape(const py::array& x, const Pair& pool, const Pair& strides,
                                const std::string& padding, const std::string& op) {
    check_rank(x, 4, op, "inputs");
    return pool2d_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), pool[0], pool[1], strides[0], strides[1],
                        padding, op);
  }
  static Pool2dShape pool_shape_of_grad(const py::array& dy, const Pair& input_hw, const Pair& pool,
                                        const Pair& strides, const std::string& padding, const std::string& op) {
    check_rank(dy, 4, op, "dy");
    const Pool2dShape s = pool2d_shape(dy.shape(0), input_hw[0], input_hw[1], dy.shape(3), pool[0], pool[1],
                                       strides[0], strides[1], padding, op);
    check(dy.shape(1) == s.OH && dy.shape(2) == s.OW,
          op + ": expected `dy` of shape (" + std::to_string(s.N) + ", " + std::to_string(s.OH) + ", " +
              std::to_string(s.OW) + ", " + std::to_string(s.C) + "), received " + shape_str(dy));
    return s;
  }

  // x (N,H,W,C) -> (y (N,OH,OW,C), argmax (N,OH,OW,C) int32, flat h*W+w)
  template <typename T>
  static py::tuple max_pool2d(const Arr<T>& x, const Pair& pool, const Pair& strides, const std::string& padding,
                              int64_t block) {
    const Pool2dShape s = pool_shape(x, pool, strides, padding, "max_pool2d");
    check_block(block, "max_pool2d");
    const int64_t n = s.N * s.OH * s.OW * s.C;
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(n);
    Buf<int32_t> darg = Buf<int32_t>::alloc(n);
    Kn::max_pool2d(dy.get(), darg.get(), dx.get(), s, block);
    Arr<T> y({s.N, s.OH, s.OW, s.C});
    py::array_t<int32_t, py::array::c_style> argmax({s.N, s.OH, s.OW, s.C});
    out<T>(y, dy);
    out<int32_t>(argmax, darg);
    return py::make_tuple(y, argmax);
  }

  // dy, argmax (N,OH,OW,C) -> dx (N,H,W,C)
  template <typename T>
  static Arr<T> max_pool2d_backward(const Arr<T>& dy, const py::array& argmax_a, const Pair& input_hw,
                                    const Pair& pool, const Pair& strides, const std::string& padding,
                                    int64_t block) {
    const std::string op = "max_pool2d_backward";
    const Pool2dShape s = pool_shape_of_grad(dy, input_hw, pool, strides, padding, op);
    check_block(block, op);
    const I32 argmax = as_int32(argmax_a, op, "argmax");
    check(shape_str(argmax) == shape_str(dy), op + ": expected `argmax` of shape " + shape_str(dy) +
                                                  ", received " + shape_str(argmax));
    for (int64_t i = 0; i < argmax.size(); ++i)
      check(argmax.data()[i] >= 0 && argmax.data()[i] < s.H * s.W,
            op + ": argmax holds " + std::to_string(argmax.data()[i]) + ", outside [0, H*W=" +
                std::to_string(s.H * s.W) + ")");
    Buf<T> ddy = in<T>(dy), ddx = Buf<T>::alloc(s.N * s.H * s.W * s.C);
    Buf<int32_t> darg = in<int32_t>(argmax);
    Kn::max_pool2d_backward(ddx.get(), ddy.get(), darg.get(), s, block);
    Arr<T> dx({s.N, s.H, s.W, s.C});
    out<T>(dx, ddx);
    return dx;
  }

  template <typename T>
  static Arr<T> avg_pool2d(const Arr<T>& x, const Pair& pool, const Pair& strides, const std::string& padding,
                           int64_t block) {
    const Pool2dShape s = pool_shape(x, pool, strides, padding, "avg_pool2d");
    check_block(block, "avg_pool2d");
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(s.N * s.OH * s.OW * s.C);
    Kn::avg_pool2d(dy.get(), dx.get(), s, block);
    Arr<T> y({s.N, s.OH, s.OW, s.C});
    out<T>(y, dy);
    return y;
  }

  template <typename T>
  static Arr<T> avg_pool2d_backward(const Arr<T>& dy, const Pair& input_hw, const Pair& pool, const Pair& strides,
                                    const std::string& padding, int64_t block) {
    const Pool2dShape s = pool_shape_of_grad(dy, input_hw, pool, strides, padding, "avg_pool2d_backward");
    check_block(block, "avg_pool2d_backward");
    Buf<T> ddy = in<T>(dy), ddx = Buf<T>::alloc(s.N * s.H * s.W * s.C);
    Kn::avg_pool2d_backward(ddx.get(), ddy.get(), s, block);
    Arr<T> dx({s.N, s.H, s.W, s.C});
    out<T>(dx, ddx);
    return dx;
  }

  static void check_rate(double rate) {
    check(rate >= 0.0 && rate <= 1.0, "dropout: expected 0 <= rate <= 1, received rate=" + std::to_string(rate));
  }

  // x (any shape) -> (y, mask uint8) of its shape
  template <typename T>
  static py::tuple dropout(const Arr<T>& x, double rate, uint64_t seed, int64_t block) {
    check_rate(rate);
    check_block(block, "dropout");
    const int64_t N = x.size();
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(N);
    Buf<uint8_t> dm = Buf<uint8_t>::alloc(N);
    Kn::dropout_forward(dy.get(), dm.get(), dx.get(), N, rate, seed, block);
    Arr<T> y = empty_like_shape<T>(x);
    py::array_t<uint8_t, py::array::c_style> mask = empty_like_shape<uint8_t>(x);
    out<T>(y, dy);
    out<uint8_t>(mask, dm);
    return py::make_tuple(y, mask);
  }

  template <typename T>
  static Arr<T> dropout_backward(const Arr<T>& dy, const py::array_t<uint8_t, py::array::c_style>& mask,
                                 double rate, int64_t block) {
    check_rate(rate);
    check_block(block, "dropout_backward");
    check(mask.ndim() == dy.ndim() && mask.size() == dy.size(),
          "dropout_backward: expected `mask` of shape " + shape_str(dy) + ", received " + shape_str(mask));
    const int64_t N = dy.size();
    Buf<T> ddy = in<T>(dy), ddx = Buf<T>::alloc(N);
    Buf<uint8_t> dm = in<uint8_t>(mask);
    Kn::dropout_backward(ddx.get(), ddy.get(), dm.get(), N, rate, block);
    Arr<T> dx = empty_like_shape<T>(dy);
    out<T>(dx, ddx);
    return dx;
  }

  // softmax over the last axis: x (..., K) -> y (..., K)
  template <typename T>
  static Arr<T> softmax(const Arr<T>& x, int64_t block) {
    check(x.ndim() >= 1, "softmax: expected `x` of rank >= 1, received a scalar");
    check_block(block, "softmax");
    const int64_t K = x.shape(x.ndim() - 1), R = K ? x.size() / K : 0;
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(x.size());
    Kn::softmax_forward(dy.get(), dx.get(), R, K, block);
    Arr<T> y = empty_like_shape<T>(x);
    out<T>(y, dy);
    return y;
  }

  template <typename T>
  static Arr<T> softmax_backward(const Arr<T>& dy, const Arr<T>& y, int64_t block) {
    check(dy.ndim() >= 1 && shape_str(dy) == shape_str(y),
          "softmax_backward: expected `y` of shape " + shape_str(dy) + ", received " + shape_str(y));
    check_block(block, "softmax_backward");
    const int64_t K = dy.shape(dy.ndim() - 1), R = K ? dy.size() / K : 0;
    Buf<T> ddy = in<T>(dy), dyy = in<T>(y), ddx = Buf<T>::alloc(dy.size());
    Kn::softmax_backward(ddx.get(), ddy.get(), dyy.get(), R, K, block);
    Arr<T> dx = empty_like_shape<T>(dy);
    out<T>(dx, ddx);
    return dx;
  }

  // logits (B,K), labels (B) int32 -> (loss (B), grad (B,K) or None)
  template <typename T>
  static py::tuple sparse_softmax_xent(const Arr<T>& logits, const py::array& labels_a, double scale,
                                       bool need_grad, int64_t block) {
    const std::string op = "sparse softmax cross-entropy";
    check_rank(logits, 2, op, "logits");
    check_block(block, op);
    const I32 labels = as_int32(labels_a, op, "labels");
    const int64_t B = logits.shape(0), Kc = logits.shape(1);
    check(labels.ndim() == 1 && labels.shape(0) == B,
          op + ": expected `labels` of shape (" + std::to_string(B) + ",), received " + shape_str(labels));
    for (int64_t b = 0; b < B; ++b)
      check(labels.data()[b] >= 0 && labels.data()[b] < Kc,
            op + ": label " + std::to_string(labels.data()[b]) + " at index " + std::to_string(b) +
                " is out of range [0, " + std::to_string(Kc) + ")");
    Buf<T> dx = in<T>(logits), dl = Buf<T>::alloc(B), dg = Buf<T>::alloc(need_grad ? logits.size() : 0);
    Buf<int32_t> dlab = in<int32_t>(labels);
    Kn::sparse_softmax_xent(dl.get(), need_grad ? dg.get() : nullptr, dx.get(), dlab.get(), B, Kc, T(scale), block);
    Arr<T> loss({B});
    out<T>(loss, dl);
    if (!need_grad) return py::make_tuple(loss, py::none());
    Arr<T> grad = empty_like_shape<T>(logits);
    out<T>(grad, dg);
    return py::make_tuple(loss, grad);
  }

  // The optimizers return the updated arrays (the inputs stay as they were).
  template <typename T>
  static void check_same(const Arr<T>& w, const std::optional<Arr<T>>& a, const std::string& op,
                         const std::string& what) {
    if (a) check(a->size() == w.size(), op + ": expected `" + what + "` of shape " + shape_str(w) +
                                            ", received " + shape_str(*a));
  }

  template <typename T>
  static py::tuple sgd(const Arr<T>& w, const std::optional<Arr<T>>& m, const Arr<T>& g, double lr,
                       double momentum, bool nesterov, int64_t block) {
    check_same<T>(w, m, "SGD", "m");
    check_same<T>(w, g, "SGD", "g");
    check_block(block, "SGD");
    const int64_t n = w.size();
    Buf<T> dw = in<T>(w), dg = in<T>(g), dm = m ? in<T>(*m) : Buf<T>::alloc(0);
    Kn::sgd_update(dw.get(), m ? dm.get() : nullptr, dg.get(), n, T(lr), T(momentum), nesterov, block);
    Arr<T> w2 = empty_like_shape<T>(w);
    out<T>(w2, dw);
    if (!m) return py::make_tuple(w2, py::none());
    Arr<T> m2 = empty_like_shape<T>(w);
    out<T>(m2, dm);
    return py::make_tuple(w2, m2);
  }

  template <typename T>
  static py::tuple adam(const Arr<T>& w, const Arr<T>& m, const Arr<T>& v, const std::optional<Arr<T>>& vhat,
                        const Arr<T>& g, double alpha, double beta1, double beta2, double eps, int64_t block) {
    for (const auto& [a, name] : {std::pair{&m, "m"}, std::pair{&v, "v"}, std::pair{&g, "g"}})
      check_same<T>(w, *a, "Adam", name);
    check_same<T>(w, vhat, "Adam", "vhat");
    check_block(block, "Adam");
    const int64_t n = w.size();
    Buf<T> dw = in<T>(w), dm = in<T>(m), dv = in<T>(v), dg = in<T>(g), dvh = vhat ? in<T>(*vhat) : Buf<T>::alloc(0);
    Kn::adam_update(dw.get(), dm.get(), dv.get(), vhat ? dvh.get() : nullptr, dg.get(), n, T(alpha), T(beta1),
                   T(beta2), T(eps), block);
    std::vector<Arr<T>> res;
    for (const Buf<T>* b : {&dw, &dm, &dv, &dvh}) {
      if (b == &dvh && !vhat) break;
      res.push_back(empty_like_shape<T>(w));
      out<T>(res.back(), *b);
    }
    py::tuple t(4);
    for (size_t i = 0; i < 4; ++i) t[i] = i < res.size() ? py::object(res[i]) : py::none();
    return t;
  }

  template <typename T>
  static void bind_precision(py::module_& m, const std::string& sfx) {
    const auto blk = py::arg("block") = 128;
    m.def(("ctc_loss" + sfx).c_str(), &ctc_loss<T>, py::arg("x"), py::arg("labels"), py::arg("label_lengths"),
          py::arg("input_lengths"), py::arg("blank") = 0, py::arg("log_probs") = false,
          py::arg("zero_infinity") = false, py::arg("need_grad") = false, blk);
    m.def(("ctc_greedy_decode" + sfx).c_str(), &ctc_greedy_decode<T>, py::arg("x"), py::arg("lengths"),
          py::arg("blank") = 0, py::arg("merge_repeated") = true, blk);
    m.def(("lstm" + sfx).c_str(), &lstm<T>, py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
          py::arg("bias"), py::arg("h0"), py::arg("c0"), py::arg("mask"), py::arg("zero_output_for_mask"),
          py::arg("dhs"), py::arg("dh_T"), py::arg("dc_T"), py::arg("need_grad"), blk);
    m.def(("max_pool2d" + sfx).c_str(), &max_pool2d<T>, py::arg("x"), py::arg("pool"), py::arg("strides"),
          py::arg("padding"), blk);
    m.def(("max_pool2d_backward" + sfx).c_str(), &max_pool2d_backward<T>, py::arg("dy"), py::arg("argmax"),
          py::arg("input_hw"), py::arg("pool"), py::arg("strides"), py::arg("padding"), blk);
    m.def(("avg_pool2d" + sfx).c_str(), &avg_pool2d<T>, py::arg("x"), py::arg("pool"), py::arg("strides"),
          py::arg("padding"), blk);
    m.def(("avg_pool2d_backward" + sfx).c_str(), &avg_pool2d_backward<T>, py::arg("dy"), py::arg("input_hw"),
          py::arg("pool"), py::arg("strides"), py::arg("padding"), blk);
    m.def(("gru" + sfx).c_str(), &gru<T>, py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
          py::arg("bias"), py::arg("h0"), py::arg("mask"), py::arg("zero_output_for_mask"), py::arg("dhs"),
          py::arg("dh_T"), py::arg("need_grad"), blk);
    m.def(("simple_rnn" + sfx).c_str(), &simple_rnn<T>, py::arg("x"), py::arg("kernel"),
          py::arg("recurrent_kernel"), py::arg("bias"), py::arg("h0"), py::arg("mask"),
          py::arg("zero_output_for_mask"), py::arg("dhs"), py::arg("dh_T"), py::arg("need_grad"), blk);
    m.def(("dropout" + sfx).c_str(), &dropout<T>, py::arg("x"), py::arg("rate"), py::arg("seed"), blk);
    m.def(("dropout_backward" + sfx).c_str(), &dropout_backward<T>, py::arg("dy"), py::arg("mask"),
          py::arg("rate"), blk);
    m.def(("softmax" + sfx).c_str(), &softmax<T>, py::arg("x"), blk);
    m.def(("softmax_backward" + sfx).c_str(), &softmax_backward<T>, py::arg("dy"), py::arg("y"), blk);
    m.def(("sparse_softmax_xent" + sfx).c_str(), &sparse_softmax_xent<T>, py::arg("logits"), py::arg("labels"),
          py::arg("scale") = 1.0, py::arg("need_grad") = true, blk);
    m.def(("optim_sgd" + sfx).c_str(), &sgd<T>, py::arg("w"), py::arg("m"), py::arg("g"), py::arg("lr"),
          py::arg("momentum"), py::arg("nesterov"), blk);
    m.def(("optim_adam" + sfx).c_str(), &adam<T>, py::arg("w"), py::arg("m"), py::arg("v"), py::arg("vhat"),
          py::arg("g"), py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), blk);
  }

  // ---- convolution and resampling (conv.cuh, resample.cuh) ----
  // Arguments mirror faltung._core's conv2d_forward / conv2d_backward (explicit pads; the ops
  // layer turns "valid"/"same"/"causal" into numbers), conv_transpose2d_{f32,f64} and the
  // resampling functions. Conv1D is the rank-4 case with H = KH = 1.

  static std::string dims_str(const std::vector<int64_t>& d) {
    std::string s = "(";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + (d.size() == 1 ? ",)" : ")");
  }
  static void check_shape(const py::array& a, const std::vector<int64_t>& shape, const std::string& op,
                          const std::string& what) {
    bool ok = a.ndim() == py::ssize_t(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    check(ok, op + ": expected `" + what + "` of shape " + dims_str(shape) + ", received " + shape_str(a));
  }

  // x (N,H,W,C), w (KH,KW,C/groups,K) -> the CPU's validated geometry (ValueError otherwise).
  static Conv2dShape conv_shape(const py::array& x, const py::array& w, int64_t OH, int64_t OW, int64_t sh,
                                int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups,
                                const std::string& op) {
    check_rank(x, 4, op, "x");
    check_rank(w, 4, op, "w");
    check(groups > 0, op + ": expected groups > 0, received groups=" + std::to_string(groups));
    check(w.shape(2) * groups == x.shape(3),
          op + ": `w` of shape " + shape_str(w) + " with groups=" + std::to_string(groups) + " expects " +
              std::to_string(w.shape(2) * groups) + " input channels, but `x` of shape " + shape_str(x) + " has " +
              std::to_string(x.shape(3)));
    const Conv2dShape s{x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(3), w.shape(0), w.shape(1),
                        OH, OW, sh, sw, dh, dw, pt, pl, groups};
    check_conv2d_shape(s);  // std::invalid_argument -> ValueError
    return s;
  }

  template <typename T>
  static Arr<T> conv_forward_impl(const Arr<T>& x, const Arr<T>& w, const std::optional<Arr<T>>& b,
                                  const Conv2dShape& s, bool relu, const std::string& op, int64_t block) {
    check_block(block, op);
    if (b) check_shape(*b, {s.K}, op, "b");
    Buf<T> dx = in<T>(x), dw = in<T>(w), db = b ? in<T>(*b) : Buf<T>::alloc(0),
           dy = Buf<T>::alloc(s.N * s.OH * s.OW * s.K);
    Kn::conv2d_forward(dy.get(), dx.get(), dw.get(), b ? db.get() : nullptr, s, relu, block);
    Arr<T> y({s.N, s.OH, s.OW, s.K});
    out<T>(y, dy);
    return y;
  }

  // dout (N,OH,OW,K), x, w -> (dx (N,H,W,C) | None, dw (w's shape) | None, db (K) | None)
  template <typename T>
  static py::tuple conv_backward_impl(const Arr<T>& dout, const Arr<T>& x, const Arr<T>& w, const Conv2dShape& s,
                                      bool need_dx, bool need_dw, bool need_db, const std::string& op,
                                      int64_t block) {
    check_block(block, op);
    check_shape(dout, {s.N, s.OH, s.OW, s.K}, op, "dout");
    const int64_t P = s.N * s.OH * s.OW;
    Buf<T> ddout = in<T>(dout);
    py::object rx = py::none(), rw = py::none(), rb = py::none();
    if (need_dx) {
      Buf<T> dw = in<T>(w), ddx = Buf<T>::alloc(s.N * s.H * s.W * s.C);
      Kn::conv2d_backward_data(ddx.get(), ddout.get(), dw.get(), static_cast<const T*>(nullptr), s, block);
      Arr<T> a({s.N, s.H, s.W, s.C});
      out<T>(a, ddx);
      rx = a;
    }
    if (need_dw) {
      Buf<T> dx = in<T>(x), ddw = Buf<T>::alloc(w.size()), ws = Buf<T>::alloc(conv::filter_workspace_size(s));
      Kn::conv2d_backward_filter(ddw.get(), ws.get(), ddout.get(), dx.get(), s, block);
      Arr<T> a = empty_like_shape<T>(w);
      out<T>(a, ddw);
      rw = a;
    }
    if (need_db) {
      Buf<T> ddb = Buf<T>::alloc(s.K), ws = Buf<T>::alloc(conv::reduce_workspace_size(P, s.K));
      Kn::column_sum(ddb.get(), ws.get(), ddout.get(), P, s.K, block);
      Arr<T> a({s.K});
      out<T>(a, ddb);
      rb = a;
    }
    return py::make_tuple(rx, rw, rb);
  }

  template <typename T>
  static Arr<T> conv2d_forward(const Arr<T>& x, const Arr<T>& w, const std::optional<Arr<T>>& b, int64_t sh,
                               int64_t sw, int64_t pt, int64_t pl, int64_t OH, int64_t OW, int64_t dh, int64_t dw,
                               int64_t groups, bool relu, int64_t block) {
    const Conv2dShape s = conv_shape(x, w, OH, OW, sh, sw, pt, pl, dh, dw, groups, "conv2d_forward");
    return conv_forward_impl<T>(x, w, b, s, relu, "conv2d_forward", block);
  }
  template <typename T>
  static py::tuple conv2d_backward(const Arr<T>& dout, const Arr<T>& x, const Arr<T>& w, int64_t sh, int64_t sw,
                                   int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups, bool need_dx,
                                   bool need_dw, bool need_db, int64_t block) {
    const std::string op = "conv2d_backward";
    check_rank(dout, 4, op, "dout");
    const Conv2dShape s = conv_shape(x, w, dout.shape(1), dout.shape(2), sh, sw, pt, pl, dh, dw, groups, op);
    return conv_backward_impl<T>(dout, x, w, s, need_dx, need_dw, need_db, op, block);
  }

  // Depthwise: Keras's kernel (KH,KW,C,m) is the grouped layout (KH,KW,1,C*m) with groups = C,
  // the same memory; output channel c*m + j reads input channel c.
  static Conv2dShape depthwise_shape(const py::array& x, const py::array& k, int64_t OH, int64_t OW, int64_t sh,
                                     int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw,
                                     const std::string& op) {
    check_rank(x, 4, op, "x");
    check_rank(k, 4, op, "kernel");
    check(k.shape(2) == x.shape(3), op + ": expected `kernel` of shape (KH, KW, " + std::to_string(x.shape(3)) +
                                        ", depth_multiplier) for `x` of shape " + shape_str(x) + ", received " +
                                        shape_str(k));
    const Conv2dShape s{x.shape(0), x.shape(1), x.shape(2), x.shape(3), k.shape(2) * k.shape(3), k.shape(0),
                        k.shape(1), OH, OW, sh, sw, dh, dw, pt, pl, x.shape(3)};
    check_conv2d_shape(s);
    return s;
  }
  template <typename T>
  static Arr<T> depthwise_conv2d(const Arr<T>& x, const Arr<T>& kernel, const std::optional<Arr<T>>& b,
                                 int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t OH, int64_t OW, int64_t dh,
                                 int64_t dw, bool relu, int64_t block) {
    const std::string op = "depthwise_conv2d";
    const Conv2dShape s = depthwise_shape(x, kernel, OH, OW, sh, sw, pt, pl, dh, dw, op);
    return conv_forward_impl<T>(x, kernel, b, s, relu, op, block);
  }
  template <typename T>
  static py::tuple depthwise_conv2d_backward(const Arr<T>& dout, const Arr<T>& x, const Arr<T>& kernel,
                                             int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw,
                                             bool need_dx, bool need_dkernel, bool need_db, int64_t block) {
    const std::string op = "depthwise_conv2d_backward";
    check_rank(dout, 4, op, "dout");
    const Conv2dShape s = depthwise_shape(x, kernel, dout.shape(1), dout.shape(2), sh, sw, pt, pl, dh, dw, op);
    return conv_backward_impl<T>(dout, x, kernel, s, need_dx, need_dkernel, need_db, op, block);
  }

  // Transposed conv, Keras semantics (the CPU's conv_transpose2d_shape): x (N,IH,IW,CI),
  // kernel (KH,KW,F,CI), bias (F) or None -> y (N,H,W,F). In the forward conv's terms
  // (conv_transpose.hpp) y is the data gradient of x: BackwardData with the bias; its
  // gradients are the forward conv of dy (dx), the filter gradient with x as dout and dy as
  // the input (dkernel), and the channel sum of dy (dbias).
  static Conv2dShape transpose_shape(const py::array& x, const py::array& k, const Pair& strides,
                                     const std::string& padding, const std::optional<Pair>& output_padding,
                                     const Pair& dilation, const std::string& op) {
    check_rank(x, 4, op, "inputs");
    check_rank(k, 4, op, "kernel");
    check(k.shape(3) == x.shape(3), op + ": expected `kernel` of shape (" + std::to_string(k.shape(0)) + ", " +
                                        std::to_string(k.shape(1)) + ", " + std::to_string(k.shape(2)) + ", " +
                                        std::to_string(x.shape(3)) + ") (last axis = input channels), received " +
                                        shape_str(k));
    check(padding == "valid" || padding == "same",
          op + ": expected padding 'valid' or 'same', received '" + padding + "'");
    const Pair opad = output_padding ? *output_padding : Pair{-1, -1};
    check(!output_padding || (opad[0] >= 0 && opad[1] >= 0),
          op + ": expected output_padding >= 0, received (" + std::to_string(opad[0]) + ", " +
              std::to_string(opad[1]) + ")");
    return conv_transpose2d_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), k.shape(0), k.shape(1),
                                  k.shape(2), strides[0], strides[1], dilation[0], dilation[1], padding == "same",
                                  opad[0], opad[1]);
  }
  template <typename T>
  static Arr<T> conv_transpose2d(const Arr<T>& x, const Arr<T>& kernel, const std::optional<Arr<T>>& bias,
                                 const Pair& strides, const std::string& padding,
                                 const std::optional<Pair>& output_padding, const Pair& dilation, int64_t block) {
    const std::string op = "conv_transpose2d";
    const Conv2dShape s = transpose_shape(x, kernel, strides, padding, output_padding, dilation, op);
    check_block(block, op);
    if (bias) check_shape(*bias, {s.C}, op, "bias");
    Buf<T> dx = in<T>(x), dk = in<T>(kernel), db = bias ? in<T>(*bias) : Buf<T>::alloc(0),
           dy = Buf<T>::alloc(s.N * s.H * s.W * s.C);
    Kn::conv2d_backward_data(dy.get(), dx.get(), dk.get(), bias ? db.get() : nullptr, s, block);
    Arr<T> y({s.N, s.H, s.W, s.C});
    out<T>(y, dy);
    return y;
  }
  template <typename T>
  static py::tuple conv_transpose2d_backward(const Arr<T>& dy, const Arr<T>& x, const Arr<T>& kernel,
                                             const Pair& strides, const std::string& padding,
                                             const std::optional<Pair>& output_padding, const Pair& dilation,
                                             bool need_dx, bool need_dkernel, bool need_dbias, int64_t block) {
    const std::string op = "conv_transpose2d_backward";
    const Conv2dShape s = transpose_shape(x, kernel, strides, padding, output_padding, dilation, op);
    check_block(block, op);
    check_shape(dy, {s.N, s.H, s.W, s.C}, op, "dy");
    Buf<T> ddy = in<T>(dy);
    py::object rx = py::none(), rk = py::none(), rb = py::none();
    if (need_dx) {
      Buf<T> dk = in<T>(kernel), ddx = Buf<T>::alloc(x.size());
      Kn::conv2d_forward(ddx.get(), ddy.get(), dk.get(), static_cast<const T*>(nullptr), s, false, block);
      Arr<T> a = empty_like_shape<T>(x);
      out<T>(a, ddx);
      rx = a;
    }
    if (need_dkernel) {
      Buf<T> dx = in<T>(x), ddk = Buf<T>::alloc(kernel.size()), ws = Buf<T>::alloc(conv::filter_workspace_size(s));
      Kn::conv2d_backward_filter(ddk.get(), ws.get(), dx.get(), ddy.get(), s, block);
      Arr<T> a = empty_like_shape<T>(kernel);
      out<T>(a, ddk);
      rk = a;
    }
    if (need_dbias) {
      const int64_t P = s.N * s.H * s.W;
      Buf<T> ddb = Buf<T>::alloc(s.C), ws = Buf<T>::alloc(conv::reduce_workspace_size(P, s.C));
      Kn::column_sum(ddb.get(), ws.get(), ddy.get(), P, s.C, block);
      Arr<T> a({s.C});
      out<T>(a, ddb);
      rb = a;
    }
    return py::make_tuple(rx, rk, rb);
  }

  static void check_positive(const Pair& p, const std::string& op, const std::string& what) {
    check(p[0] >= 1 && p[1] >= 1, op + ": expected positive `" + what + "`, received (" + std::to_string(p[0]) +
                                      ", " + std::to_string(p[1]) + ")");
  }
  // x (N,H,W,C) -> (N,H*SH,W*SW,C)
  template <typename T>
  static Arr<T> upsample_nearest2d(const Arr<T>& x, const Pair& size, int64_t block) {
    const std::string op = "upsample_nearest2d";
    check_rank(x, 4, op, "x");
    check_positive(size, op, "size");
    check_block(block, op);
    const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
    const int64_t OH = size_mul(H, size[0], op.c_str(), "output height H * size[0]"),
                  OW = size_mul(W, size[1], op.c_str(), "output width W * size[1]");
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(size_mul(size_mul(N * C, OH, op.c_str(), "output size"), OW,
                                                      op.c_str(), "output size"));
    Kn::upsample_nearest2d(dy.get(), dx.get(), N, H, W, C, size[0], size[1], block);
    Arr<T> y({N, OH, OW, C});
    out<T>(y, dy);
    return y;
  }
  // dy (N,H*SH,W*SW,C) -> dx (N,H,W,C)
  template <typename T>
  static Arr<T> upsample_nearest2d_backward(const Arr<T>& dy, const Pair& size, int64_t block) {
    const std::string op = "upsample_nearest2d_backward";
    check_rank(dy, 4, op, "dy");
    check_positive(size, op, "size");
    check_block(block, op);
    const int64_t N = dy.shape(0), OH = dy.shape(1), OW = dy.shape(2), C = dy.shape(3);
    check(OH % size[0] == 0 && OW % size[1] == 0,
          op + ": `dy` spatial size (" + std::to_string(OH) + ", " + std::to_string(OW) +
              ") is not a multiple of size (" + std::to_string(size[0]) + ", " + std::to_string(size[1]) + ")");
    const int64_t H = OH / size[0], W = OW / size[1];
    Buf<T> ddy = in<T>(dy), ddx = Buf<T>::alloc(N * H * W * C);
    Kn::upsample_nearest2d_backward(ddx.get(), ddy.get(), N, H, W, C, size[0], size[1], block);
    Arr<T> dx({N, H, W, C});
    out<T>(dx, ddx);
    return dx;
  }
  // x (N,H,W,C) -> (N,OH,OW,C), bilinear, half-pixel centres
  template <typename T>
  static Arr<T> resize_bilinear2d(const Arr<T>& x, const Pair& out_hw, int64_t block) {
    const std::string op = "resize_bilinear2d";
    check_rank(x, 4, op, "x");
    check_positive(out_hw, op, "out_hw");
    check_block(block, op);
    const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
    check(H >= 1 && W >= 1, op + ": empty input, received shape " + shape_str(x));
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(N * out_hw[0] * out_hw[1] * C);
    Kn::resize_bilinear2d(dy.get(), dx.get(), N, H, W, C, out_hw[0], out_hw[1], block);
    Arr<T> y({N, out_hw[0], out_hw[1], C});
    out<T>(y, dy);
    return y;
  }
  // dy (N,OH,OW,C) -> dx (N,in_hw[0],in_hw[1],C), the adjoint of resize_bilinear2d
  template <typename T>
  static Arr<T> resize_bilinear2d_backward(const Arr<T>& dy, const Pair& in_hw, int64_t block) {
    const std::string op = "resize_bilinear2d_backward";
    check_rank(dy, 4, op, "dy");
    check_positive(in_hw, op, "in_hw");
    check_block(block, op);
    const int64_t N = dy.shape(0), OH = dy.shape(1), OW = dy.shape(2), C = dy.shape(3);
    Buf<T> ddy = in<T>(dy), ddx = Buf<T>::alloc(N * in_hw[0] * in_hw[1] * C);
    Kn::resize_bilinear2d_backward(ddx.get(), ddy.get(), N, in_hw[0], in_hw[1], C, OH, OW, block);
    Arr<T> dx({N, in_hw[0], in_hw[1], C});
    out<T>(dx, ddx);
    return dx;
  }

  template <typename T>
  static void bind_conv_precision(py::module_& m, const std::string& sfx) {
    const auto blk = py::arg("block") = 128;
    m.def(("conv2d_forward" + sfx).c_str(), &conv2d_forward<T>, py::arg("x"), py::arg("w"), py::arg("b"),
          py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("OH"),
          py::arg("OW"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"), py::arg("relu") = false, blk);
    m.def(("conv2d_backward" + sfx).c_str(), &conv2d_backward<T>, py::arg("dout"), py::arg("x"), py::arg("w"),
          py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("dil_h"),
          py::arg("dil_w"), py::arg("groups"), py::arg("need_dx") = true, py::arg("need_dw") = true,
          py::arg("need_db") = true, blk);
    m.def(("depthwise_conv2d" + sfx).c_str(), &depthwise_conv2d<T>, py::arg("x"), py::arg("kernel"), py::arg("b"),
          py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("OH"),
          py::arg("OW"), py::arg("dil_h"), py::arg("dil_w"), py::arg("relu") = false, blk);
    m.def(("depthwise_conv2d_backward" + sfx).c_str(), &depthwise_conv2d_backward<T>, py::arg("dout"),
          py::arg("x"), py::arg("kernel"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"),
          py::arg("pad_left"), py::arg("dil_h"), py::arg("dil_w"), py::arg("need_dx") = true,
          py::arg("need_dkernel") = true, py::arg("need_db") = true, blk);
    m.def(("conv_transpose2d" + sfx).c_str(), &conv_transpose2d<T>, py::arg("x"), py::arg("kernel"),
          py::arg("bias"), py::arg("strides"), py::arg("padding"), py::arg("output_padding"),
          py::arg("dilation_rate"), blk);
    m.def(("conv_transpose2d_backward" + sfx).c_str(), &conv_transpose2d_backward<T>, py::arg("dy"), py::arg("x"),
          py::arg("kernel"), py::arg("strides"), py::arg("padding"), py::arg("output_padding"),
          py::arg("dilation_rate"), py::arg("need_dx") = true, py::arg("need_dkernel") = true,
          py::arg("need_dbias") = true, blk);
    m.def(("upsample_nearest2d" + sfx).c_str(), &upsample_nearest2d<T>, py::arg("x"), py::arg("size"), blk);
    m.def(("upsample_nearest2d_backward" + sfx).c_str(), &upsample_nearest2d_backward<T>, py::arg("dy"),
          py::arg("size"), blk);
    m.def(("resize_bilinear2d" + sfx).c_str(), &resize_bilinear2d<T>, py::arg("x"), py::arg("out_hw"), blk);
    m.def(("resize_bilinear2d_backward" + sfx).c_str(), &resize_bilinear2d_backward<T>, py::arg("dy"),
          py::arg("in_hw"), blk);
  }
  // ---- end convolution and resampling ----

  static void bind(py::module_& m) {
    bind_precision<float>(m, "_f32");
    bind_precision<double>(m, "_f64");
    bind_conv_precision<float>(m, "_f32");  // convolution and resampling
    bind_conv_precision<double>(m, "_f64");
  }
};

}  // namespace faltung::cuda::binding
