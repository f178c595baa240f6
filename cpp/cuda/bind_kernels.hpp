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

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "faltung/activations.hpp"
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

// The `col` buffer of a conv launch (Kernels::conv2d_*): conv::col_workspace_size(s) elements
// when the kernels run their GEMMs on a BLAS (im2col + GEMM), else none (get() is nullptr).
template <class Backend, typename T>
typename Backend::template Buf<T> conv_col_buf(const Conv2dShape& s) {
  return Backend::template Buf<T>::alloc(Backend::Kernels::blas() ? conv::col_workspace_size(s) : 0);
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

  // full (N,H,W,C), argmax (N,OH,OW,C) -> (N,OH,OW,C): max-unpool backward (the CPU's
  // max_pool2d_gather)
  template <typename T>
  static Arr<T> max_pool2d_gather(const Arr<T>& full, const py::array& argmax_a, const Pair& pool,
                                  const Pair& strides, const std::string& padding, int64_t block) {
    const std::string op = "max_pool2d_gather";
    const Pool2dShape s = pool_shape(full, pool, strides, padding, op);
    check_block(block, op);
    const I32 argmax = as_int32(argmax_a, op, "argmax");
    const std::string want = "(" + std::to_string(s.N) + ", " + std::to_string(s.OH) + ", " +
                             std::to_string(s.OW) + ", " + std::to_string(s.C) + ")";
    check(shape_str(argmax) == want, op + ": expected `argmax` of shape " + want + ", received " +
                                         shape_str(argmax));
    for (int64_t i = 0; i < argmax.size(); ++i)
      check(argmax.data()[i] >= 0 && argmax.data()[i] < s.H * s.W,
            op + ": argmax holds " + std::to_string(argmax.data()[i]) + ", outside [0, H*W=" +
                std::to_string(s.H * s.W) + ")");
    const int64_t n = s.N * s.OH * s.OW * s.C;
    Buf<T> dfull = in<T>(full), dout = Buf<T>::alloc(n);
    Buf<int32_t> darg = in<int32_t>(argmax);
    Kn::max_pool2d_gather(dout.get(), dfull.get(), darg.get(), s, block);
    Arr<T> y({s.N, s.OH, s.OW, s.C});
    out<T>(y, dout);
    return y;
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

  // ---- dense, activations, batch normalization, merge, more optimizers ------------------------
  static bool same_shape(const py::array& a, const py::array& b) {
    if (a.ndim() != b.ndim()) return false;
    for (py::ssize_t i = 0; i < a.ndim(); ++i)
      if (a.shape(i) != b.shape(i)) return false;
    return true;
  }
  static void check_like(const py::array& a, const py::array& like, const std::string& op, const std::string& what) {
    check(same_shape(a, like), op + ": expected `" + what + "` of shape " + shape_str(like) + ", received " +
                                   shape_str(a));
  }
  template <typename T>
  static Arr<T> fetch_like(const Buf<T>& b, const std::vector<py::ssize_t>& shape) {
    Arr<T> a(shape);
    out<T>(a, b);
    return a;
  }
  template <typename T>
  static ew::ActSpec<T> act_of(const std::string& name, double negative_slope, double threshold,
                               const py::object& max_value, double alpha) {
    ActParams p;  // the CPU's parameters and names (act_from_name: ValueError listing the kinds)
    p.negative_slope = negative_slope, p.threshold = threshold, p.alpha = alpha;
    p.has_max = !max_value.is_none();
    if (p.has_max) p.max_value = max_value.cast<double>();
    Act a;
    try {
      a = act_from_name(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
    return ew::act_spec<T>(a, p);
  }

  // C (M,N) = alpha op(A) op(B) + beta C; A (M,K) or (K,M) with trans_a, B (K,N) or (N,K) with
  // trans_b; C (M,N), needed (and read) only when beta != 0. The GEMM body on its own.
  template <typename T>
  static Arr<T> gemm(const Arr<T>& A, const Arr<T>& Bm, const std::optional<Arr<T>>& C, bool trans_a, bool trans_b,
                     double alpha, double beta) {
    const std::string op = "gemm";
    check_rank(A, 2, op, "a");
    check_rank(Bm, 2, op, "b");
    const int64_t M = A.shape(trans_a ? 1 : 0), K = A.shape(trans_a ? 0 : 1);
    const int64_t Kb = Bm.shape(trans_b ? 1 : 0), N = Bm.shape(trans_b ? 0 : 1);
    check(K == Kb, op + ": inner sizes differ: op(a) is (" + std::to_string(M) + ", " + std::to_string(K) +
                       "), op(b) is (" + std::to_string(Kb) + ", " + std::to_string(N) + ")");
    check(beta == 0.0 || C.has_value(), op + ": beta != 0 needs `c`");
    Buf<T> da = in<T>(A), db = in<T>(Bm);
    auto dc = opt_in<T>(C, {M, N}, op, "c");
    Buf<T> dout = dc ? std::move(*dc) : Buf<T>::alloc(M * N);
    Kn::gemm(dense::Gemm<T>{M, N, K, da.get(), A.shape(1), trans_a, db.get(), Bm.shape(1), trans_b, dout.get(), N,
                            T(alpha), T(beta), nullptr, nullptr, dense::no_act<T>()});
    return fetch_like<T>(dout, {M, N});
  }

  // x (B,IN), kernel (IN,OUT), bias (OUT) | None -> (y = act(x kernel + bias), z the
  // pre-activation, or None when the activation is linear)
  template <typename T>
  static py::tuple dense_forward(const Arr<T>& x, const Arr<T>& W, const std::optional<Arr<T>>& bias,
                                 const std::string& activation, double negative_slope, double threshold,
                                 const py::object& max_value, double alpha) {
    const std::string op = "dense";
    check_rank(x, 2, op, "inputs");
    check_rank(W, 2, op, "kernel");
    const int64_t B = x.shape(0), IN = x.shape(1), OUT = W.shape(1);
    check(W.shape(0) == IN, op + ": expected `kernel` of shape (" + std::to_string(IN) + ", units), received " +
                                shape_str(W));
    const ew::ActSpec<T> act = act_of<T>(activation, negative_slope, threshold, max_value, alpha);
    Buf<T> dx = in<T>(x), dW = in<T>(W), dy = Buf<T>::alloc(B * OUT);
    auto dbias = opt_in<T>(bias, {OUT}, op, "bias");
    const bool linear = act.kind == Act::linear;
    Buf<T> dz = Buf<T>::alloc(linear ? 0 : B * OUT);
    Kn::dense_forward(dy.get(), linear ? nullptr : dz.get(), dx.get(), dW.get(), ptr(dbias), B, IN, OUT, act);
    py::object z = py::none();
    if (!linear) z = fetch_like<T>(dz, {B, OUT});
    return py::make_tuple(fetch_like<T>(dy, {B, OUT}), z);
  }

  // dy (B,OUT) the gradient of x kernel + bias, x (B,IN), kernel (IN,OUT) -> (dx, dkernel, dbias)
  template <typename T>
  static py::tuple dense_backward(const Arr<T>& dy, const Arr<T>& x, const Arr<T>& W, bool need_dx, bool need_dW,
                                  bool need_db, int64_t block) {
    const std::string op = "dense_backward";
    check_rank(x, 2, op, "inputs");
    check_rank(W, 2, op, "kernel");
    check_block(block, op);
    const int64_t B = x.shape(0), IN = x.shape(1), OUT = W.shape(1);
    check(W.shape(0) == IN, op + ": expected `kernel` of shape (" + std::to_string(IN) + ", units), received " +
                                shape_str(W));
    check(dy.ndim() == 2 && dy.shape(0) == B && dy.shape(1) == OUT,
          op + ": expected `dy` of shape (" + std::to_string(B) + ", " + std::to_string(OUT) + "), received " +
              shape_str(dy));
    Buf<T> ddy = in<T>(dy), dx_in = in<T>(x), dW_in = in<T>(W), gx = Buf<T>::alloc(need_dx ? B * IN : 0),
           gW = Buf<T>::alloc(need_dW ? IN * OUT : 0), gb = Buf<T>::alloc(need_db ? OUT : 0);
    Kn::dense_backward(need_dx ? gx.get() : nullptr, need_dW ? gW.get() : nullptr, need_db ? gb.get() : nullptr,
                       ddy.get(), dx_in.get(), dW_in.get(), B, IN, OUT, block);
    py::object rx = py::none(), rW = py::none(), rb = py::none();
    if (need_dx) rx = fetch_like<T>(gx, {B, IN});
    if (need_dW) rW = fetch_like<T>(gW, {IN, OUT});
    if (need_db) rb = fetch_like<T>(gb, {OUT});
    return py::make_tuple(rx, rW, rb);
  }

  // Elementwise activation by the CPU's kernel name (faltung._core.activation_names()).
  template <typename T>
  static Arr<T> activation(const std::string& name, const Arr<T>& x, double negative_slope, double threshold,
                           const py::object& max_value, double alpha, int64_t block) {
    const ew::ActSpec<T> a = act_of<T>(name, negative_slope, threshold, max_value, alpha);
    check_block(block, "activation(" + name + ")");
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(x.size());
    Kn::act_forward(dy.get(), dx.get(), x.size(), a, block);
    Arr<T> y = empty_like_shape<T>(x);
    out<T>(y, dy);
    return y;
  }
  // dy, x the forward input, y the forward output -> dx (the kind reads x or y, as the CPU's)
  template <typename T>
  static Arr<T> activation_backward(const std::string& name, const Arr<T>& dy, const Arr<T>& x, const Arr<T>& y,
                                    double negative_slope, double threshold, const py::object& max_value,
                                    double alpha, int64_t block) {
    const std::string op = "activation_backward(" + name + ")";
    const ew::ActSpec<T> a = act_of<T>(name, negative_slope, threshold, max_value, alpha);
    check_block(block, op);
    const bool reads_y = ew::backward_reads_y(a.kind);
    const Arr<T>& v = reads_y ? y : x;
    check_like(v, dy, op, reads_y ? "y" : "x");
    Buf<T> ddy = in<T>(dy), dv = in<T>(v), ddx = Buf<T>::alloc(dy.size());
    Kn::act_backward(ddx.get(), ddy.get(), dv.get(), dy.size(), a, block);
    Arr<T> dx = empty_like_shape<T>(dy);
    out<T>(dx, ddx);
    return dx;
  }
  template <typename T>
  static Arr<T> log_softmax(const Arr<T>& x, int64_t block) {
    check(x.ndim() >= 1, "log_softmax: expected `x` of rank >= 1, received a scalar");
    check_block(block, "log_softmax");
    const int64_t K = x.shape(x.ndim() - 1), R = K ? x.size() / K : 0;
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(x.size());
    Kn::log_softmax_forward(dy.get(), dx.get(), R, K, block);
    Arr<T> y = empty_like_shape<T>(x);
    out<T>(y, dy);
    return y;
  }
  template <typename T>
  static Arr<T> log_softmax_backward(const Arr<T>& dy, const Arr<T>& y, int64_t block) {
    check(dy.ndim() >= 1, "log_softmax_backward: expected `dy` of rank >= 1, received a scalar");
    check_like(y, dy, "log_softmax_backward", "y");
    check_block(block, "log_softmax_backward");
    const int64_t K = dy.shape(dy.ndim() - 1), R = K ? dy.size() / K : 0;
    Buf<T> ddy = in<T>(dy), dyy = in<T>(y), ddx = Buf<T>::alloc(dy.size());
    Kn::log_softmax_backward(ddx.get(), ddy.get(), dyy.get(), R, K, block);
    Arr<T> dx = empty_like_shape<T>(dy);
    out<T>(dx, ddx);
    return dx;
  }

  // BatchNormalization over the last axis (channels last): (R, C) of x.
  static std::pair<int64_t, int64_t> bn_rows(const py::array& x, const std::string& op) {
    check(x.ndim() >= 1 && x.shape(x.ndim() - 1) >= 1,
          op + ": expected `x` of rank >= 1 with channels on its last axis, received shape " + shape_str(x));
    const int64_t C = x.shape(x.ndim() - 1);
    return {int64_t(x.size()) / C, C};
  }
  static void check_eps(double eps, const std::string& op) {
    check(eps > 0, op + ": expected epsilon > 0, received " + std::to_string(eps));
  }
  // x (...,C), gamma, beta, moving_mean, moving_var (C) | None -> (y, mean, var (biased), inv_std,
  // moving_mean', moving_var') with moving' = moving momentum + batch (1 - momentum) (None if None)
  template <typename T>
  static py::tuple batch_norm_train(const Arr<T>& x, const std::optional<Arr<T>>& gamma,
                                    const std::optional<Arr<T>>& beta, const std::optional<Arr<T>>& moving_mean,
                                    const std::optional<Arr<T>>& moving_var, double eps, double momentum,
                                    int64_t block) {
    const std::string op = "batch_norm_train";
    auto [R, C] = bn_rows(x, op);
    check_eps(eps, op);
    check_block(block, op);
    auto dg = opt_in<T>(gamma, {C}, op, "gamma"), db = opt_in<T>(beta, {C}, op, "beta"),
         dmm = opt_in<T>(moving_mean, {C}, op, "moving_mean"), dmv = opt_in<T>(moving_var, {C}, op, "moving_variance");
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(x.size()), mean = Buf<T>::alloc(C), var = Buf<T>::alloc(C),
           inv = Buf<T>::alloc(C), ws = Buf<T>::alloc(bn::workspace_size(C));
    Kn::bn_train_forward(dy.get(), mean.get(), var.get(), inv.get(), ptr(dmm), ptr(dmv), dx.get(), ptr(dg), ptr(db),
                         T(eps), T(momentum), R, C, ws.get(), block);
    Arr<T> y = empty_like_shape<T>(x);
    out<T>(y, dy);
    py::object mm = py::none(), mv = py::none();
    if (dmm) mm = fetch_like<T>(*dmm, {C});
    if (dmv) mv = fetch_like<T>(*dmv, {C});
    return py::make_tuple(y, fetch_like<T>(mean, {C}), fetch_like<T>(var, {C}), fetch_like<T>(inv, {C}), mm, mv);
  }
  // x (...,C) with the moving statistics -> (y, inv_std = 1/sqrt(moving_var + eps))
  template <typename T>
  static py::tuple batch_norm_inference(const Arr<T>& x, const std::optional<Arr<T>>& gamma,
                                        const std::optional<Arr<T>>& beta, const Arr<T>& moving_mean,
                                        const Arr<T>& moving_var, double eps, int64_t block) {
    const std::string op = "batch_norm_inference";
    auto [R, C] = bn_rows(x, op);
    check_eps(eps, op);
    check_block(block, op);
    auto dg = opt_in<T>(gamma, {C}, op, "gamma"), db = opt_in<T>(beta, {C}, op, "beta");
    auto dmm = opt_in<T>(moving_mean, {C}, op, "moving_mean"), dmv = opt_in<T>(moving_var, {C}, op, "moving_variance");
    Buf<T> dx = in<T>(x), dy = Buf<T>::alloc(x.size()), inv = Buf<T>::alloc(C), ws = Buf<T>::alloc(bn::workspace_size(C));
    Kn::bn_inference_forward(dy.get(), inv.get(), dx.get(), ptr(dg), ptr(db), ptr(dmm), ptr(dmv), T(eps), R, C,
                             ws.get(), block);
    Arr<T> y = empty_like_shape<T>(x);
    out<T>(y, dy);
    return py::make_tuple(y, fetch_like<T>(inv, {C}));
  }
  // dy, x (...,C), mean, inv_std (C) (the batch's; with inference, the moving mean and its
  // inv_std), gamma (C) | None -> (dx, dgamma, dbeta), None where not needed
  template <typename T>
  static py::tuple batch_norm_backward(const Arr<T>& dy, const Arr<T>& x, const Arr<T>& mean, const Arr<T>& inv_std,
                                       const std::optional<Arr<T>>& gamma, bool inference, bool need_dx,
                                       bool need_dgamma, bool need_dbeta, int64_t block) {
    const std::string op = "batch_norm_backward";
    auto [R, C] = bn_rows(x, op);
    check_like(dy, x, op, "dy");
    check_block(block, op);
    auto dg = opt_in<T>(gamma, {C}, op, "gamma");
    auto dmean = opt_in<T>(mean, {C}, op, "mean"), dinv = opt_in<T>(inv_std, {C}, op, "inv_std");
    Buf<T> ddy = in<T>(dy), dx_in = in<T>(x), gx = Buf<T>::alloc(need_dx ? x.size() : 0),
           gg = Buf<T>::alloc(need_dgamma ? C : 0), gb = Buf<T>::alloc(need_dbeta ? C : 0),
           ws = Buf<T>::alloc(bn::workspace_size(C));
    Kn::bn_backward(need_dx ? gx.get() : nullptr, need_dgamma ? gg.get() : nullptr, need_dbeta ? gb.get() : nullptr,
                    ddy.get(), dx_in.get(), ptr(dmean), ptr(dinv), ptr(dg), inference, R, C, ws.get(), block);
    py::object rx = py::none(), rg = py::none(), rb = py::none();
    if (need_dx) {
      Arr<T> a = empty_like_shape<T>(x);
      out<T>(a, gx);
      rx = a;
    }
    if (need_dgamma) rg = fetch_like<T>(gg, {C});
    if (need_dbeta) rb = fetch_like<T>(gb, {C});
    return py::make_tuple(rx, rg, rb);
  }

  // The merge layers: n >= 1 inputs of one shape (Subtract: exactly 2).
  static merge::Op merge_op(const std::string& name) {
    const std::pair<const char*, merge::Op> ops[] = {{"add", merge::Op::add},         {"subtract", merge::Op::subtract},
                                                     {"multiply", merge::Op::multiply}, {"average", merge::Op::average},
                                                     {"maximum", merge::Op::maximum},   {"minimum", merge::Op::minimum}};
    for (const auto& [n, o] : ops)
      if (name == n) return o;
    throw py::value_error("merge: unknown op '" + name +
                          "'. Expected one of: add, subtract, multiply, average, maximum, minimum");
  }
  // The inputs' layout as the merge layers see it (merge.cuh: MergeShape): every input
  // expanded to the largest rank by size-1 axes after the batch axis; each axis equal to the
  // output's or 1; equal batch sizes (Keras's rules, base_merge.py). The values stacked in order.
  template <typename T>
  struct Layout {
    std::vector<int64_t> dims, in_dims, offsets{0};
    std::vector<T> values;
    std::vector<py::ssize_t> out_shape;
    int64_t n = 0, D = 0, N = 1;
  };
  template <typename T>
  static Layout<T> merge_layout(const std::vector<Arr<T>>& xs, const std::string& op) {
    check(!xs.empty(), op + ": expected a list of at least 1 input, received 0");
    Layout<T> L;
    L.n = int64_t(xs.size());
    std::string shapes;
    for (const auto& x : xs) {
      check(x.ndim() >= 1, op + ": every input needs a batch axis, received shape " + shape_str(x));
      L.D = std::max<int64_t>(L.D, x.ndim());
      shapes += (shapes.empty() ? "" : ", ") + shape_str(x);
    }
    L.dims.assign(size_t(L.D), 1);
    for (const auto& x : xs) {
      const int64_t r = x.ndim();
      for (int64_t d = 0; d < L.D; ++d) {
        const int64_t v = d == 0 ? x.shape(0) : (d < L.D - r + 1 ? 1 : x.shape(d - (L.D - r)));
        L.in_dims.push_back(v);
      }
      check(x.shape(0) == xs[0].shape(0),
            op + ": cannot merge tensors with different batch sizes. Received tensors with shapes " + shapes);
    }
    for (int64_t d = 0; d < L.D; ++d)
      for (int64_t k = 0; k < L.n; ++k) {
        const int64_t v = L.in_dims[size_t(k * L.D + d)];
        if (v == 1) continue;
        check(L.dims[size_t(d)] == 1 || L.dims[size_t(d)] == v,
              op + ": inputs have incompatible shapes. Received shapes " + shapes);
        L.dims[size_t(d)] = v;
      }
    for (int64_t d = 0; d < L.D; ++d) L.N *= L.dims[size_t(d)], L.out_shape.push_back(L.dims[size_t(d)]);
    for (const auto& x : xs) {
      L.values.insert(L.values.end(), x.data(), x.data() + x.size());
      L.offsets.push_back(L.offsets.back() + x.size());
    }
    return L;
  }
  template <typename T>
  struct MergeBufs {  // a Layout in the executor's memory
    Buf<T> xs;
    Buf<int64_t> dims, in_dims, offsets;
    merge::MergeShape shape() { return merge::MergeShape{n, D, N, dims.get(), in_dims.get(), offsets.get()}; }
    int64_t n, D, N;
  };
  template <typename T>
  static MergeBufs<T> upload(const Layout<T>& L) {
    return MergeBufs<T>{Buf<T>::upload(L.values.data(), int64_t(L.values.size())),
                        Buf<int64_t>::upload(L.dims.data(), L.D), Buf<int64_t>::upload(L.in_dims.data(), L.n * L.D),
                        Buf<int64_t>::upload(L.offsets.data(), L.n + 1), L.n, L.D, L.N};
  }
  template <typename T>
  static py::tuple merge_forward(const std::string& name, const std::vector<Arr<T>>& xs, int64_t block) {
    const merge::Op o = merge_op(name);
    const std::string op = "merge(" + name + ")";
    check_block(block, op);
    check(o != merge::Op::subtract || xs.size() == 2,
          op + ": expected exactly 2 inputs, received " + std::to_string(xs.size()));
    const Layout<T> L = merge_layout<T>(xs, op);
    MergeBufs<T> b = upload<T>(L);
    const bool extreme = o == merge::Op::maximum || o == merge::Op::minimum;
    Buf<T> dy = Buf<T>::alloc(L.N);
    Buf<int32_t> win = Buf<int32_t>::alloc(extreme ? L.N : 0);
    Kn::merge_forward(dy.get(), extreme ? win.get() : nullptr, b.xs.get(), b.shape(), o, block);
    Arr<T> y(L.out_shape);
    out<T>(y, dy);
    if (!extreme) return py::make_tuple(y, py::none());
    py::array_t<int32_t, py::array::c_style> w(L.out_shape);
    out<int32_t>(w, win);
    return py::make_tuple(y, w);
  }
  // dy (the output's shape), xs (the inputs: multiply reads them, the others their shapes),
  // win (maximum/minimum, from merge) -> the inputs' gradients (each of its input's shape)
  template <typename T>
  static py::list merge_backward(const std::string& name, const Arr<T>& dy, const std::vector<Arr<T>>& xs,
                                 const std::optional<py::array>& win_a, int64_t block) {
    const merge::Op o = merge_op(name);
    const std::string op = "merge_backward(" + name + ")";
    check_block(block, op);
    check(o != merge::Op::subtract || xs.size() == 2,
          op + ": expected exactly 2 inputs, received " + std::to_string(xs.size()));
    const Layout<T> L = merge_layout<T>(xs, op);
    Arr<T> like(L.out_shape);
    check_like(dy, like, op, "dy");
    MergeBufs<T> b = upload<T>(L);
    const bool extreme = o == merge::Op::maximum || o == merge::Op::minimum;
    Buf<int32_t> dwin = Buf<int32_t>::alloc(0);
    if (extreme) {
      check(win_a.has_value(), op + ": needs `win` (the winners merge returned)");
      const I32 win = as_int32(*win_a, op, "win");
      check_like(win, dy, op, "win");
      for (int64_t i = 0; i < L.N; ++i)
        check(win.data()[i] >= 0 && win.data()[i] < L.n,
              op + ": win[" + std::to_string(i) + "] = " + std::to_string(win.data()[i]) + " is outside [0, " +
                  std::to_string(L.n) + ")");
      dwin = in<int32_t>(win);
    }
    const int64_t total = L.offsets.back();
    Buf<T> ddy = in<T>(dy), g = Buf<T>::alloc(total);
    Kn::merge_backward(g.get(), ddy.get(), b.xs.get(), extreme ? dwin.get() : nullptr, b.shape(), o, total, block);
    std::vector<T> host(static_cast<size_t>(total));
    g.download(host.data(), total);
    py::list res;
    for (size_t k = 0; k < xs.size(); ++k) {
      Arr<T> a = empty_like_shape<T>(xs[k]);
      std::memcpy(a.mutable_data(), host.data() + L.offsets[k], size_t(a.size()) * sizeof(T));
      res.append(a);
    }
    return res;
  }

  // Concatenate along `axis` (negative counts from the end): shapes equal but along axis.
  static int64_t concat_axis(int64_t axis, int64_t ndim, const std::string& op) {
    check(ndim >= 1 && axis >= -ndim && axis < ndim, op + ": axis " + std::to_string(axis) +
                                                         " is out of bounds for inputs of rank " + std::to_string(ndim));
    return axis < 0 ? axis + ndim : axis;
  }
  template <typename T>
  static Arr<T> concatenate(const std::vector<Arr<T>>& xs, int64_t axis, int64_t block) {
    const std::string op = "concatenate";
    check_block(block, op);
    check(!xs.empty(), op + ": expected a list of at least 1 input, received 0");
    const int64_t nd = xs[0].ndim(), ax = concat_axis(axis, nd, op);
    std::vector<int64_t> starts{0};
    int64_t outer = 1, inner = 1, total = 0;
    for (int64_t d = 0; d < ax; ++d) outer *= xs[0].shape(d);
    for (int64_t d = ax + 1; d < nd; ++d) inner *= xs[0].shape(d);
    for (size_t k = 0; k < xs.size(); ++k) {
      bool ok = xs[k].ndim() == nd;
      for (int64_t d = 0; ok && d < nd; ++d) ok = d == ax || xs[k].shape(d) == xs[0].shape(d);
      check(ok, op + ": expected inputs of equal shapes except along axis " + std::to_string(ax) + ", received " +
                    shape_str(xs[0]) + " and " + shape_str(xs[k]) + " at index " + std::to_string(k));
      starts.push_back(starts.back() + xs[k].shape(ax));
      total += xs[k].size();
    }
    std::vector<T> host(static_cast<size_t>(total));
    int64_t off = 0;
    for (const auto& x : xs) {
      std::memcpy(host.data() + off, x.data(), size_t(x.size()) * sizeof(T));
      off += x.size();
    }
    Buf<T> dxs = Buf<T>::upload(host.data(), total), dy = Buf<T>::alloc(total);
    Buf<int64_t> dstarts = Buf<int64_t>::upload(starts.data(), int64_t(starts.size()));
    Kn::concat_forward(dy.get(), dxs.get(), merge::ConcatShape{outer, inner, starts.back(), int64_t(xs.size()), dstarts.get()},
                       block);
    std::vector<py::ssize_t> shape(xs[0].shape(), xs[0].shape() + nd);
    shape[ax] = starts.back();
    return fetch_like<T>(dy, shape);
  }
  // dy (the output), sizes along axis of the inputs -> list of their gradients
  template <typename T>
  static py::list concatenate_backward(const Arr<T>& dy, const std::vector<int64_t>& sizes, int64_t axis,
                                       int64_t block) {
    const std::string op = "concatenate_backward";
    check_block(block, op);
    check(!sizes.empty(), op + ": expected at least 1 input size, received 0");
    const int64_t nd = dy.ndim(), ax = concat_axis(axis, nd, op);
    std::vector<int64_t> starts{0};
    for (int64_t s : sizes) {
      check(s >= 0, op + ": expected sizes >= 0, received " + std::to_string(s));
      starts.push_back(starts.back() + s);
    }
    check(starts.back() == dy.shape(ax), op + ": the sizes sum to " + std::to_string(starts.back()) +
                                             ", but `dy` has " + std::to_string(dy.shape(ax)) + " along axis " +
                                             std::to_string(ax));
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < ax; ++d) outer *= dy.shape(d);
    for (int64_t d = ax + 1; d < nd; ++d) inner *= dy.shape(d);
    Buf<T> ddy = in<T>(dy), g = Buf<T>::alloc(dy.size());
    Buf<int64_t> dstarts = Buf<int64_t>::upload(starts.data(), int64_t(starts.size()));
    Kn::concat_backward(g.get(), ddy.get(), merge::ConcatShape{outer, inner, starts.back(), int64_t(sizes.size()),
                                                               dstarts.get()},
                        block);
    std::vector<T> host(static_cast<size_t>(dy.size()));
    g.download(host.data(), dy.size());
    py::list res;
    for (size_t k = 0; k < sizes.size(); ++k) {
      std::vector<py::ssize_t> shape(dy.shape(), dy.shape() + nd);
      shape[ax] = sizes[k];
      Arr<T> a(shape);
      std::memcpy(a.mutable_data(), host.data() + outer * inner * starts[k], size_t(a.size()) * sizeof(T));
      res.append(a);
    }
    return res;
  }

  // More optimizers; each returns the updated arrays (the inputs stay as they were), None for
  // a state given as None.
  template <typename T>
  static py::tuple updated(std::vector<std::pair<Buf<T>*, bool>> bufs, const Arr<T>& like) {
    py::tuple t(bufs.size());
    for (size_t i = 0; i < bufs.size(); ++i) {
      if (!bufs[i].second) {
        t[i] = py::none();
        continue;
      }
      Arr<T> a = empty_like_shape<T>(like);
      out<T>(a, *bufs[i].first);
      t[i] = a;
    }
    return t;
  }
  template <typename T>
  static Buf<T> in_opt(const std::optional<Arr<T>>& a) { return a ? in<T>(*a) : Buf<T>::alloc(0); }
  template <typename T>
  static py::tuple rmsprop(const Arr<T>& w, const Arr<T>& v, const std::optional<Arr<T>>& mom,
                           const std::optional<Arr<T>>& avg, const Arr<T>& g, double lr, double rho, double momentum,
                           double eps, int64_t block) {
    const std::string op = "RMSprop";
    check_same<T>(w, v, op, "v");
    check_same<T>(w, mom, op, "mom");
    check_same<T>(w, avg, op, "avg");
    check_same<T>(w, g, op, "g");
    check_block(block, op);
    Buf<T> dw = in<T>(w), dv = in<T>(v), dg = in<T>(g), dm = in_opt<T>(mom), da = in_opt<T>(avg);
    Kn::rmsprop_update(dw.get(), dv.get(), mom ? dm.get() : nullptr, avg ? da.get() : nullptr, dg.get(), w.size(),
                       T(lr), T(rho), T(momentum), T(eps), block);
    return updated<T>({{&dw, true}, {&dv, true}, {&dm, bool(mom)}, {&da, bool(avg)}}, w);
  }
  template <typename T>
  static py::tuple adagrad(const Arr<T>& w, const Arr<T>& acc, const Arr<T>& g, double lr, double eps, int64_t block) {
    check_same<T>(w, acc, "Adagrad", "acc");
    check_same<T>(w, g, "Adagrad", "g");
    check_block(block, "Adagrad");
    Buf<T> dw = in<T>(w), da = in<T>(acc), dg = in<T>(g);
    Kn::adagrad_update(dw.get(), da.get(), dg.get(), w.size(), T(lr), T(eps), block);
    return updated<T>({{&dw, true}, {&da, true}}, w);
  }
  // step_size = lr / (1 - beta_1^t), t the 1-based step (the caller's, as Adam's alpha)
  template <typename T>
  static py::tuple adamax(const Arr<T>& w, const Arr<T>& m, const Arr<T>& u, const Arr<T>& g, double step_size,
                          double beta1, double beta2, double eps, int64_t block) {
    for (const auto& [a, name] : {std::pair{&m, "m"}, std::pair{&u, "u"}, std::pair{&g, "g"}})
      check_same<T>(w, *a, "Adamax", name);
    check_block(block, "Adamax");
    Buf<T> dw = in<T>(w), dm = in<T>(m), du = in<T>(u), dg = in<T>(g);
    Kn::adamax_update(dw.get(), dm.get(), du.get(), dg.get(), w.size(), T(step_size), T(beta1), T(beta2), T(eps),
                      block);
    return updated<T>({{&dw, true}, {&dm, true}, {&du, true}}, w);
  }
  // w * (1 - weight_decay * lr): the decoupled decay before an update (AdamW, and any optimizer
  // given weight_decay)
  template <typename T>
  static Arr<T> weight_decay(const Arr<T>& w, double weight_decay, double lr, int64_t block) {
    check_block(block, "weight_decay");
    Buf<T> dw = in<T>(w);
    Kn::weight_decay(dw.get(), w.size(), T(1.0 - weight_decay * lr), block);
    Arr<T> a = empty_like_shape<T>(w);
    out<T>(a, dw);
    return a;
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
    m.def(("max_pool2d_gather" + sfx).c_str(), &max_pool2d_gather<T>, py::arg("full"), py::arg("argmax"),
          py::arg("pool"), py::arg("strides"), py::arg("padding"), blk);
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
    // dense, activations, batch normalization, merge, more optimizers
    m.def(("gemm" + sfx).c_str(), &gemm<T>, py::arg("a"), py::arg("b"), py::arg("c") = py::none(),
          py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0);
    m.def(("dense_forward" + sfx).c_str(), &dense_forward<T>, py::arg("x"), py::arg("kernel"),
          py::arg("bias") = py::none(), py::arg("activation") = "linear", py::arg("negative_slope") = 0.0,
          py::arg("threshold") = 0.0, py::arg("max_value") = py::none(), py::arg("alpha") = 1.0);
    m.def(("dense_backward" + sfx).c_str(), &dense_backward<T>, py::arg("dy"), py::arg("x"), py::arg("kernel"),
          py::arg("need_dx") = true, py::arg("need_dkernel") = true, py::arg("need_dbias") = true, blk);
    m.def(("activation" + sfx).c_str(), &activation<T>, py::arg("name"), py::arg("x"),
          py::arg("negative_slope") = 0.0, py::arg("threshold") = 0.0, py::arg("max_value") = py::none(),
          py::arg("alpha") = 1.0, blk);
    m.def(("activation_backward" + sfx).c_str(), &activation_backward<T>, py::arg("name"), py::arg("dy"),
          py::arg("x"), py::arg("y"), py::arg("negative_slope") = 0.0, py::arg("threshold") = 0.0,
          py::arg("max_value") = py::none(), py::arg("alpha") = 1.0, blk);
    m.def(("log_softmax" + sfx).c_str(), &log_softmax<T>, py::arg("x"), blk);
    m.def(("log_softmax_backward" + sfx).c_str(), &log_softmax_backward<T>, py::arg("dy"), py::arg("y"), blk);
    m.def(("batch_norm_train" + sfx).c_str(), &batch_norm_train<T>, py::arg("x"), py::arg("gamma"), py::arg("beta"),
          py::arg("moving_mean"), py::arg("moving_variance"), py::arg("epsilon") = 1e-3,
          py::arg("momentum") = 0.99, blk);
    m.def(("batch_norm_inference" + sfx).c_str(), &batch_norm_inference<T>, py::arg("x"), py::arg("gamma"),
          py::arg("beta"), py::arg("moving_mean"), py::arg("moving_variance"), py::arg("epsilon") = 1e-3, blk);
    m.def(("batch_norm_backward" + sfx).c_str(), &batch_norm_backward<T>, py::arg("dy"), py::arg("x"),
          py::arg("mean"), py::arg("inv_std"), py::arg("gamma"), py::arg("inference") = false,
          py::arg("need_dx") = true, py::arg("need_dgamma") = true, py::arg("need_dbeta") = true, blk);
    m.def(("merge" + sfx).c_str(), &merge_forward<T>, py::arg("op"), py::arg("xs"), blk);
    m.def(("merge_backward" + sfx).c_str(), &merge_backward<T>, py::arg("op"), py::arg("dy"), py::arg("xs"),
          py::arg("win") = py::none(), blk);
    m.def(("concatenate" + sfx).c_str(), &concatenate<T>, py::arg("xs"), py::arg("axis") = -1, blk);
    m.def(("concatenate_backward" + sfx).c_str(), &concatenate_backward<T>, py::arg("dy"), py::arg("sizes"),
          py::arg("axis") = -1, blk);
    m.def(("optim_rmsprop" + sfx).c_str(), &rmsprop<T>, py::arg("w"), py::arg("v"), py::arg("mom"), py::arg("avg"),
          py::arg("g"), py::arg("lr"), py::arg("rho"), py::arg("momentum"), py::arg("epsilon"), blk);
    m.def(("optim_adagrad" + sfx).c_str(), &adagrad<T>, py::arg("w"), py::arg("acc"), py::arg("g"), py::arg("lr"),
          py::arg("epsilon"), blk);
    m.def(("optim_adamax" + sfx).c_str(), &adamax<T>, py::arg("w"), py::arg("m"), py::arg("u"), py::arg("g"),
          py::arg("step_size"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), blk);
    m.def(("weight_decay" + sfx).c_str(), &weight_decay<T>, py::arg("w"), py::arg("weight_decay"), py::arg("lr"), blk);
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
           dy = Buf<T>::alloc(s.N * s.OH * s.OW * s.K), col = conv_col_buf<Backend, T>(s);
    Kn::conv2d_forward(dy.get(), dx.get(), dw.get(), b ? db.get() : nullptr, s, relu, block, col.get());
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
      Buf<T> dw = in<T>(w), ddx = Buf<T>::alloc(s.N * s.H * s.W * s.C), col = conv_col_buf<Backend, T>(s);
      Kn::conv2d_backward_data(ddx.get(), ddout.get(), dw.get(), static_cast<const T*>(nullptr), s, block, col.get());
      Arr<T> a({s.N, s.H, s.W, s.C});
      out<T>(a, ddx);
      rx = a;
    }
    if (need_dw) {
      Buf<T> dx = in<T>(x), ddw = Buf<T>::alloc(w.size()), ws = Buf<T>::alloc(conv::filter_workspace_size(s)),
             col = conv_col_buf<Backend, T>(s);
      Kn::conv2d_backward_filter(ddw.get(), ws.get(), ddout.get(), dx.get(), s, block, col.get());
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
           dy = Buf<T>::alloc(s.N * s.H * s.W * s.C), col = conv_col_buf<Backend, T>(s);
    Kn::conv2d_backward_data(dy.get(), dx.get(), dk.get(), bias ? db.get() : nullptr, s, block, col.get());
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
      Buf<T> dk = in<T>(kernel), ddx = Buf<T>::alloc(x.size()), col = conv_col_buf<Backend, T>(s);
      Kn::conv2d_forward(ddx.get(), ddy.get(), dk.get(), static_cast<const T*>(nullptr), s, false, block, col.get());
      Arr<T> a = empty_like_shape<T>(x);
      out<T>(a, ddx);
      rx = a;
    }
    if (need_dkernel) {
      Buf<T> dx = in<T>(x), ddk = Buf<T>::alloc(kernel.size()), ws = Buf<T>::alloc(conv::filter_workspace_size(s)),
             col = conv_col_buf<Backend, T>(s);
      Kn::conv2d_backward_filter(ddk.get(), ws.get(), dx.get(), ddy.get(), s, block, col.get());
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
