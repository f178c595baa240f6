// cpp/cuda/kernels.hpp — one entry point per kernel family, templated on the executor: the
// host harness instantiates Kernels<HostExec> (kernels_impl.hpp, g++), the CUDA module
// Kernels<DeviceExec> (explicit instantiations in the .cu files, nvcc). The bindings
// (bind_kernels.hpp) see only these declarations, so one binding text serves both modules.
// Pointers are the executor's memory (host memory for HostExec, device memory for DeviceExec).
#pragma once
#include <cstdint>

#include "activations.cuh"
#include "ctc.cuh"
#include "gru.cuh"
#include "lstm.cuh"
#include "optim.cuh"
#include "pooling.cuh"
#include "simple_rnn.cuh"
// convolution and resampling
#include "conv.cuh"
#include "resample.cuh"
// dense, activations, batch normalization, merge, more optimizers (optim.cuh)
#include "dense.cuh"
#include "elementwise.cuh"
#include "merge.cuh"
#include "normalization.cuh"
// GRU with reset_after=False; element moves (padding, cropping, time reversal)
#include "gru_reset_before.cuh"
#include "layout.cuh"

namespace faltung::cuda {

struct HostExec;
struct DeviceExec;

template <class Exec>
struct Kernels {
  // Whether the GEMMs run on a BLAS (cuBLAS on the device): the callers then pass conv's `col`.
  static bool blas();
  template <typename R> static void ctc_loss(const ctc::Args<R>& a, int64_t block);
  template <typename R> static void ctc_greedy_decode(const ctc::GreedyArgs<R>& a, int64_t block);
  template <typename R> static void lstm(const lstm::Args<R>& a, int64_t block);
  template <typename R> static void gru(const gru::Args<R>& a, int64_t block);
  template <typename R> static void simple_rnn(const simple_rnn::Args<R>& a, int64_t block);
  template <typename T>
  static void max_pool2d(T* out, int32_t* argmax, const T* inp, const Pool2dShape& s, int64_t block);
  template <typename T>
  static void max_pool2d_gather(T* out, const T* full, const int32_t* argmax, const Pool2dShape& s,
                                int64_t block);
  template <typename T>
  static void max_pool2d_backward(T* dinp, const T* dout, const int32_t* argmax, const Pool2dShape& s,
                                  int64_t block);
  template <typename T> static void avg_pool2d(T* out, const T* inp, const Pool2dShape& s, int64_t block);
  template <typename T>
  static void avg_pool2d_backward(T* dinp, const T* dout, const Pool2dShape& s, int64_t block);
  template <typename T>
  static void dropout_forward(T* y, uint8_t* mask, const T* x, int64_t N, double rate, uint64_t seed,
                              int64_t block);
  template <typename T>
  static void dropout_backward(T* dx, const T* dy, const uint8_t* mask, int64_t N, double rate, int64_t block);
  template <typename T> static void softmax_forward(T* y, const T* x, int64_t R, int64_t K, int64_t block);
  template <typename T>
  static void softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K, int64_t block);
  template <typename T>
  static void sparse_softmax_xent(T* loss, T* grad, const T* logits, const int32_t* labels, int64_t B,
                                  int64_t K, T scale, int64_t block);
  template <typename T>
  static void sgd_update(T* w, T* m, const T* g, int64_t n, T lr, T momentum, bool nesterov, int64_t block);
  template <typename T>
  static void adam_update(T* w, T* m, T* v, T* vhat, const T* g, int64_t n, T alpha, T beta1, T beta2,
                          T eps, int64_t block);
  // ---- convolution and resampling (conv.cuh, resample.cuh) ----
  // col: conv::col_workspace_size(s) elements when blas() (im2col + GEMM), else nullptr
  template <typename T>
  static void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s, bool relu,
                             int64_t block, T* col);
  template <typename T>
  static void conv2d_backward_data(T* dinp, const T* dout, const T* weight, const T* bias, const Conv2dShape& s,
                                   int64_t block, T* col);
  template <typename T>
  static void conv2d_backward_filter(T* dweight, T* ws, const T* dout, const T* inp, const Conv2dShape& s,
                                     int64_t block, T* col);
  template <typename T> static void column_sum(T* out, T* ws, const T* a, int64_t P, int64_t M, int64_t block);
  template <typename T>
  static void upsample_nearest2d(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t SH,
                                 int64_t SW, int64_t block);
  template <typename T>
  static void upsample_nearest2d_backward(T* dinp, const T* dout, int64_t N, int64_t H, int64_t W, int64_t C,
                                          int64_t SH, int64_t SW, int64_t block);
  template <typename T>
  static void resize_bilinear2d(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH,
                                int64_t OW, int64_t block);
  template <typename T>
  static void resize_bilinear2d_backward(T* dinp, const T* dout, int64_t N, int64_t H, int64_t W, int64_t C,
                                         int64_t OH, int64_t OW, int64_t block);
  // ---- end convolution and resampling ----
  // ---- dense, activations, batch normalization, merge, more optimizers ----
  template <typename T> static void gemm(const dense::Gemm<T>& g);
  template <typename T>
  static void dense_forward(T* y, T* z, const T* x, const T* W, const T* bias, int64_t B, int64_t IN, int64_t OUT,
                            const ew::ActSpec<T>& act);
  template <typename T>
  static void dense_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t B, int64_t IN,
                             int64_t OUT, int64_t block);
  template <typename T>
  static void act_forward(T* y, const T* x, int64_t N, const ew::ActSpec<T>& a, int64_t block);
  template <typename T>
  static void act_backward(T* dx, const T* dy, const T* v, int64_t N, const ew::ActSpec<T>& a, int64_t block);
  template <typename T> static void log_softmax_forward(T* y, const T* x, int64_t R, int64_t K, int64_t block);
  template <typename T>
  static void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K, int64_t block);
  template <typename T>
  static void bn_train_forward(T* y, T* mean, T* var, T* inv_std, T* moving_mean, T* moving_var, const T* x,
                               const T* gamma, const T* beta, T eps, T momentum, int64_t R, int64_t C, T* ws,
                               int64_t block);
  template <typename T>
  static void bn_inference_forward(T* y, T* inv_std, const T* x, const T* gamma, const T* beta,
                                   const T* moving_mean, const T* moving_var, T eps, int64_t R, int64_t C, T* ws,
                                   int64_t block);
  template <typename T>
  static void bn_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean, const T* inv_std,
                          const T* gamma, bool inference, int64_t R, int64_t C, T* ws, int64_t block);
  template <typename T>
  static void merge_forward(T* y, int32_t* win, const T* xs, const merge::MergeShape& s, merge::Op op,
                            int64_t block);
  template <typename T>
  static void merge_backward(T* dxs, const T* dy, const T* xs, const int32_t* win, const merge::MergeShape& s,
                             merge::Op op, int64_t total, int64_t block);
  template <typename T>
  static void l2_normalize(T* x_hat, T* inv, const T* x, int64_t R, int64_t K, T eps, int64_t block);
  template <typename T>
  static void l2_normalize_backward(T* dx, const T* g, const T* x_hat, const T* inv, int64_t R, int64_t K, T eps,
                                    int64_t block);
  template <typename T>
  static void concat_forward(T* y, const T* xs, const merge::ConcatShape& s, int64_t block);
  template <typename T>
  static void concat_backward(T* dxs, const T* dy, const merge::ConcatShape& s, int64_t block);
  template <typename T>
  static void rmsprop_update(T* w, T* v, T* mom, T* avg, const T* g, int64_t n, T lr, T rho, T momentum, T eps,
                             int64_t block);
  template <typename T>
  static void adagrad_update(T* w, T* acc, const T* g, int64_t n, T lr, T eps, int64_t block);
  template <typename T>
  static void adamax_update(T* w, T* m, T* u, const T* g, int64_t n, T c, T beta1, T beta2, T eps, int64_t block);
  template <typename T> static void weight_decay(T* w, int64_t n, T factor, int64_t block);
  // ---- the device-resident layers (bind_resident_layers.hpp): the recurrent families' forward
  // and backward as two calls (the workspace kept between them), element moves ----
  template <typename R> static void simple_rnn_forward(const simple_rnn::Args<R>& a, int64_t block);
  template <typename R> static void simple_rnn_backward(const simple_rnn::Args<R>& a, int64_t block);
  template <typename R> static void lstm_forward(const lstm::Args<R>& a, int64_t block);
  template <typename R> static void lstm_backward(const lstm::Args<R>& a, int64_t block);
  template <typename R> static void gru_forward(const gru::Args<R>& a, int64_t block);
  template <typename R> static void gru_backward(const gru::Args<R>& a, int64_t block);
  // GRU with reset_after=False (gru_reset_before.cuh): bias (3U)
  template <typename R> static void gru_reset_before_forward(const gru::Args<R>& a, int64_t block);
  template <typename R> static void gru_reset_before_backward(const gru::Args<R>& a, int64_t block);
  template <typename T>
  static void shift2d(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH, int64_t OW,
                      int64_t top, int64_t left, int64_t block);
  template <typename T> static void reverse_time(T* out, const T* inp, int64_t B, int64_t T_, int64_t F, int64_t block);
};

}  // namespace faltung::cuda
