// cpp/cuda/kernels_impl.hpp — the definitions of Kernels<Exec> (kernels.hpp): each runs its
// family's launch sequence on an executor of type Exec. Included where Exec is complete:
// host_harness.cpp (HostExec) and kernels.cu (DeviceExec), which instantiates them all.
#pragma once
#include "kernels.hpp"

namespace faltung::cuda {

template <class Exec> template <typename R>
void Kernels<Exec>::ctc_loss(const ctc::Args<R>& a, int64_t block) {
  Exec ex;
  ctc::loss(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::ctc_greedy_decode(const ctc::GreedyArgs<R>& a, int64_t block) {
  Exec ex;
  ctc::greedy_decode(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::lstm(const lstm::Args<R>& a, int64_t block) {
  Exec ex;
  lstm::forward_backward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::gru(const gru::Args<R>& a, int64_t block) {
  Exec ex;
  gru::forward_backward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::simple_rnn(const simple_rnn::Args<R>& a, int64_t block) {
  Exec ex;
  simple_rnn::forward_backward(ex, a, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::max_pool2d(T* out, int32_t* argmax, const T* inp, const Pool2dShape& s, int64_t block) {
  Exec ex;
  pool::max_forward(ex, out, argmax, inp, s, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::max_pool2d_backward(T* dinp, const T* dout, const int32_t* argmax, const Pool2dShape& s,
                                        int64_t block) {
  Exec ex;
  pool::max_backward(ex, dinp, dout, argmax, s, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::max_pool2d_gather(T* out, const T* full, const int32_t* argmax, const Pool2dShape& s,
                                      int64_t block) {
  Exec ex;
  pool::max_gather(ex, out, full, argmax, s, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::avg_pool2d(T* out, const T* inp, const Pool2dShape& s, int64_t block) {
  Exec ex;
  pool::avg_forward(ex, out, inp, s, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::avg_pool2d_backward(T* dinp, const T* dout, const Pool2dShape& s, int64_t block) {
  Exec ex;
  pool::avg_backward(ex, dinp, dout, s, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::dropout_forward(T* y, uint8_t* mask, const T* x, int64_t N, double rate, uint64_t seed,
                                    int64_t block) {
  Exec ex;
  act::dropout_forward(ex, y, mask, x, N, rate, seed, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::dropout_backward(T* dx, const T* dy, const uint8_t* mask, int64_t N, double rate,
                                     int64_t block) {
  Exec ex;
  act::dropout_backward(ex, dx, dy, mask, N, rate, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::softmax_forward(T* y, const T* x, int64_t R, int64_t K, int64_t block) {
  Exec ex;
  act::softmax_forward(ex, y, x, R, K, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K, int64_t block) {
  Exec ex;
  act::softmax_backward(ex, dx, dy, y, R, K, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::sparse_softmax_xent(T* loss, T* grad, const T* logits, const int32_t* labels, int64_t B,
                                        int64_t K, T scale, int64_t block) {
  Exec ex;
  act::sparse_softmax_xent(ex, loss, grad, logits, labels, B, K, scale, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::sgd_update(T* w, T* m, const T* g, int64_t n, T lr, T momentum, bool nesterov,
                               int64_t block) {
  Exec ex;
  optim::sgd_update(ex, w, m, g, n, lr, momentum, nesterov, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::adam_update(T* w, T* m, T* v, T* vhat, const T* g, int64_t n, T alpha, T beta1, T beta2,
                                T eps, int64_t block) {
  Exec ex;
  optim::adam_update(ex, w, m, v, vhat, g, n, alpha, beta1, beta2, eps, block);
}

// ---- dense, activations, batch normalization, merge, more optimizers ----
template <class Exec> template <typename T>
void Kernels<Exec>::gemm(const dense::Gemm<T>& g) {
  Exec ex;
  dense::gemm(ex, g);
}
template <class Exec> template <typename T>
void Kernels<Exec>::dense_forward(T* y, T* z, const T* x, const T* W, const T* bias, int64_t B, int64_t IN,
                                  int64_t OUT, const ew::ActSpec<T>& act) {
  Exec ex;
  dense::forward(ex, y, z, x, W, bias, B, IN, OUT, act);
}
template <class Exec> template <typename T>
void Kernels<Exec>::dense_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t B,
                                   int64_t IN, int64_t OUT, int64_t block) {
  Exec ex;
  dense::backward(ex, dx, dW, db, dy, x, W, B, IN, OUT, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::act_forward(T* y, const T* x, int64_t N, const ew::ActSpec<T>& a, int64_t block) {
  Exec ex;
  ew::act_forward(ex, y, x, N, a, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::act_backward(T* dx, const T* dy, const T* v, int64_t N, const ew::ActSpec<T>& a,
                                 int64_t block) {
  Exec ex;
  ew::act_backward(ex, dx, dy, v, N, a, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::log_softmax_forward(T* y, const T* x, int64_t R, int64_t K, int64_t block) {
  Exec ex;
  ew::log_softmax_forward(ex, y, x, R, K, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::log_softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K, int64_t block) {
  Exec ex;
  ew::log_softmax_backward(ex, dx, dy, y, R, K, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::bn_train_forward(T* y, T* mean, T* var, T* inv_std, T* moving_mean, T* moving_var,
                                     const T* x, const T* gamma, const T* beta, T eps, T momentum, int64_t R,
                                     int64_t C, T* ws, int64_t block) {
  Exec ex;
  bn::train_forward(ex, y, mean, var, inv_std, moving_mean, moving_var, x, gamma, beta, eps, momentum, R, C, ws,
                    block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::bn_inference_forward(T* y, T* inv_std, const T* x, const T* gamma, const T* beta,
                                         const T* moving_mean, const T* moving_var, T eps, int64_t R, int64_t C,
                                         T* ws, int64_t block) {
  Exec ex;
  bn::inference_forward(ex, y, inv_std, x, gamma, beta, moving_mean, moving_var, eps, R, C, ws, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::bn_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                                const T* inv_std, const T* gamma, bool inference, int64_t R, int64_t C, T* ws,
                                int64_t block) {
  Exec ex;
  bn::backward(ex, dx, dgamma, dbeta, dy, x, mean, inv_std, gamma, inference, R, C, ws, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::merge_forward(T* y, int32_t* win, const T* xs, const merge::MergeShape& s, merge::Op op,
                                  int64_t block) {
  Exec ex;
  merge::forward(ex, y, win, xs, s, op, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::merge_backward(T* dxs, const T* dy, const T* xs, const int32_t* win, const merge::MergeShape& s,
                                   merge::Op op, int64_t total, int64_t block) {
  Exec ex;
  merge::backward(ex, dxs, dy, xs, win, s, op, block, total);
}
template <class Exec> template <typename T>
void Kernels<Exec>::l2_normalize(T* x_hat, T* inv, const T* x, int64_t R, int64_t K, T eps, int64_t block) {
  Exec ex;
  merge::l2_normalize(ex, x_hat, inv, x, R, K, eps, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::l2_normalize_backward(T* dx, const T* g, const T* x_hat, const T* inv, int64_t R, int64_t K,
                                          T eps, int64_t block) {
  Exec ex;
  merge::l2_normalize_backward(ex, dx, g, x_hat, inv, R, K, eps, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::concat_forward(T* y, const T* xs, const merge::ConcatShape& s, int64_t block) {
  Exec ex;
  merge::concat_forward(ex, y, xs, s, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::concat_backward(T* dxs, const T* dy, const merge::ConcatShape& s, int64_t block) {
  Exec ex;
  merge::concat_backward(ex, dxs, dy, s, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::rmsprop_update(T* w, T* v, T* mom, T* avg, const T* g, int64_t n, T lr, T rho, T momentum,
                                   T eps, int64_t block) {
  Exec ex;
  optim::rmsprop_update(ex, w, v, mom, avg, g, n, lr, rho, momentum, eps, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::adagrad_update(T* w, T* acc, const T* g, int64_t n, T lr, T eps, int64_t block) {
  Exec ex;
  optim::adagrad_update(ex, w, acc, g, n, lr, eps, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::adamax_update(T* w, T* m, T* u, const T* g, int64_t n, T c, T beta1, T beta2, T eps,
                                  int64_t block) {
  Exec ex;
  optim::adamax_update(ex, w, m, u, g, n, c, beta1, beta2, eps, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::weight_decay(T* w, int64_t n, T factor, int64_t block) {
  Exec ex;
  optim::weight_decay(ex, w, n, factor, block);
}

// Every entry point for one executor and one precision (kernels.cu and host_harness.cpp).
#define FALTUNG_CUDA_INSTANTIATE(Exec, T)                                                            \
  template void Kernels<Exec>::ctc_loss<T>(const ctc::Args<T>&, int64_t);                            \
  template void Kernels<Exec>::ctc_greedy_decode<T>(const ctc::GreedyArgs<T>&, int64_t);             \
  template void Kernels<Exec>::lstm<T>(const lstm::Args<T>&, int64_t);                               \
  template void Kernels<Exec>::gru<T>(const gru::Args<T>&, int64_t);                                 \
  template void Kernels<Exec>::simple_rnn<T>(const simple_rnn::Args<T>&, int64_t);                   \
  template void Kernels<Exec>::max_pool2d<T>(T*, int32_t*, const T*, const Pool2dShape&, int64_t);   \
  template void Kernels<Exec>::max_pool2d_backward<T>(T*, const T*, const int32_t*, const Pool2dShape&, \
                                                      int64_t);                                      \
  template void Kernels<Exec>::max_pool2d_gather<T>(T*, const T*, const int32_t*, const Pool2dShape&, \
                                                    int64_t);                                        \
  template void Kernels<Exec>::avg_pool2d<T>(T*, const T*, const Pool2dShape&, int64_t);              \
  template void Kernels<Exec>::avg_pool2d_backward<T>(T*, const T*, const Pool2dShape&, int64_t);     \
  template void Kernels<Exec>::dropout_forward<T>(T*, uint8_t*, const T*, int64_t, double, uint64_t, \
                                                  int64_t);                                          \
  template void Kernels<Exec>::dropout_backward<T>(T*, const T*, const uint8_t*, int64_t, double,    \
                                                   int64_t);                                         \
  template void Kernels<Exec>::softmax_forward<T>(T*, const T*, int64_t, int64_t, int64_t);          \
  template void Kernels<Exec>::softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void Kernels<Exec>::sparse_softmax_xent<T>(T*, T*, const T*, const int32_t*, int64_t,     \
                                                      int64_t, T, int64_t);                          \
  template void Kernels<Exec>::sgd_update<T>(T*, T*, const T*, int64_t, T, T, bool, int64_t);        \
  template void Kernels<Exec>::adam_update<T>(T*, T*, T*, T*, const T*, int64_t, T, T, T, T, int64_t); \
  /* dense, activations, batch normalization, merge, more optimizers */                             \
  template void Kernels<Exec>::gemm<T>(const dense::Gemm<T>&);                                       \
  template void Kernels<Exec>::dense_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                                int64_t, const ew::ActSpec<T>&);                     \
  template void Kernels<Exec>::dense_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,  \
                                                 int64_t, int64_t, int64_t);                         \
  template void Kernels<Exec>::act_forward<T>(T*, const T*, int64_t, const ew::ActSpec<T>&, int64_t); \
  template void Kernels<Exec>::act_backward<T>(T*, const T*, const T*, int64_t, const ew::ActSpec<T>&, \
                                               int64_t);                                             \
  template void Kernels<Exec>::log_softmax_forward<T>(T*, const T*, int64_t, int64_t, int64_t);      \
  template void Kernels<Exec>::log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void Kernels<Exec>::bn_train_forward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, \
                                                   T, T, int64_t, int64_t, T*, int64_t);             \
  template void Kernels<Exec>::bn_inference_forward<T>(T*, T*, const T*, const T*, const T*, const T*, \
                                                       const T*, T, int64_t, int64_t, T*, int64_t);  \
  template void Kernels<Exec>::bn_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,    \
                                              const T*, bool, int64_t, int64_t, T*, int64_t);        \
  template void Kernels<Exec>::merge_forward<T>(T*, int32_t*, const T*, const merge::MergeShape&,    \
                                                merge::Op, int64_t);                                 \
  template void Kernels<Exec>::merge_backward<T>(T*, const T*, const T*, const int32_t*,             \
                                                 const merge::MergeShape&, merge::Op, int64_t, int64_t); \
  template void Kernels<Exec>::l2_normalize<T>(T*, T*, const T*, int64_t, int64_t, T, int64_t);      \
  template void Kernels<Exec>::l2_normalize_backward<T>(T*, const T*, const T*, const T*, int64_t,   \
                                                        int64_t, T, int64_t);                        \
  template void Kernels<Exec>::concat_forward<T>(T*, const T*, const merge::ConcatShape&, int64_t);  \
  template void Kernels<Exec>::concat_backward<T>(T*, const T*, const merge::ConcatShape&, int64_t); \
  template void Kernels<Exec>::rmsprop_update<T>(T*, T*, T*, T*, const T*, int64_t, T, T, T, T, int64_t); \
  template void Kernels<Exec>::adagrad_update<T>(T*, T*, const T*, int64_t, T, T, int64_t);          \
  template void Kernels<Exec>::adamax_update<T>(T*, T*, T*, const T*, int64_t, T, T, T, T, int64_t); \
  template void Kernels<Exec>::weight_decay<T>(T*, int64_t, T, int64_t);

// ---- convolution and resampling (conv.cuh, resample.cuh) ----
template <class Exec>
bool Kernels<Exec>::blas() {
  return Exec{}.blas();
}
template <class Exec> template <typename T>
void Kernels<Exec>::conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                                   bool relu, int64_t block, T* col) {
  Exec ex;
  conv::forward(ex, out, inp, weight, bias, s, relu, block, col);
}
template <class Exec> template <typename T>
void Kernels<Exec>::conv2d_backward_data(T* dinp, const T* dout, const T* weight, const T* bias,
                                         const Conv2dShape& s, int64_t block, T* col) {
  Exec ex;
  conv::backward_data(ex, dinp, dout, weight, bias, s, block, col);
}
template <class Exec> template <typename T>
void Kernels<Exec>::conv2d_backward_filter(T* dweight, T* ws, const T* dout, const T* inp, const Conv2dShape& s,
                                           int64_t block, T* col) {
  Exec ex;
  conv::backward_filter(ex, dweight, ws, dout, inp, s, block, col);
}
template <class Exec> template <typename T>
void Kernels<Exec>::column_sum(T* out, T* ws, const T* a, int64_t P, int64_t M, int64_t block) {
  Exec ex;
  conv::column_sum(ex, out, ws, a, P, M, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::upsample_nearest2d(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C,
                                       int64_t SH, int64_t SW, int64_t block) {
  Exec ex;
  resample::nearest_forward(ex, out, inp, N, H, W, C, SH, SW, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::upsample_nearest2d_backward(T* dinp, const T* dout, int64_t N, int64_t H, int64_t W,
                                                int64_t C, int64_t SH, int64_t SW, int64_t block) {
  Exec ex;
  resample::nearest_backward(ex, dinp, dout, N, H, W, C, SH, SW, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::resize_bilinear2d(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C,
                                      int64_t OH, int64_t OW, int64_t block) {
  Exec ex;
  resample::bilinear_forward(ex, out, inp, N, H, W, C, OH, OW, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::resize_bilinear2d_backward(T* dinp, const T* dout, int64_t N, int64_t H, int64_t W,
                                               int64_t C, int64_t OH, int64_t OW, int64_t block) {
  Exec ex;
  resample::bilinear_backward(ex, dinp, dout, N, H, W, C, OH, OW, block);
}

// The convolution and resampling entry points for one executor and one precision (kernels.cu
// and host_harness.cpp invoke it next to FALTUNG_CUDA_INSTANTIATE).
#define FALTUNG_CUDA_INSTANTIATE_CONV(Exec, T)                                                                 \
  template void Kernels<Exec>::conv2d_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&, bool,    \
                                                 int64_t, T*);                                                  \
  template void Kernels<Exec>::conv2d_backward_data<T>(T*, const T*, const T*, const T*, const Conv2dShape&,   \
                                                       int64_t, T*);                                            \
  template void Kernels<Exec>::conv2d_backward_filter<T>(T*, T*, const T*, const T*, const Conv2dShape&,       \
                                                         int64_t, T*);                                          \
  template void Kernels<Exec>::column_sum<T>(T*, T*, const T*, int64_t, int64_t, int64_t);                     \
  template void Kernels<Exec>::upsample_nearest2d<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                                     int64_t, int64_t);                                         \
  template void Kernels<Exec>::upsample_nearest2d_backward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                                              int64_t, int64_t, int64_t);                       \
  template void Kernels<Exec>::resize_bilinear2d<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t,  \
                                                    int64_t, int64_t);                                          \
  template void Kernels<Exec>::resize_bilinear2d_backward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t,  \
                                                             int64_t, int64_t, int64_t);
// ---- end convolution and resampling ----

// ---- the device-resident layers (bind_resident_layers.hpp) ----
template <class Exec> template <typename R>
void Kernels<Exec>::simple_rnn_forward(const simple_rnn::Args<R>& a, int64_t block) {
  Exec ex;
  simple_rnn::forward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::simple_rnn_backward(const simple_rnn::Args<R>& a, int64_t block) {
  Exec ex;
  simple_rnn::backward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::lstm_forward(const lstm::Args<R>& a, int64_t block) {
  Exec ex;
  lstm::forward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::lstm_backward(const lstm::Args<R>& a, int64_t block) {
  Exec ex;
  lstm::backward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::gru_forward(const gru::Args<R>& a, int64_t block) {
  Exec ex;
  gru::forward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::gru_backward(const gru::Args<R>& a, int64_t block) {
  Exec ex;
  gru::backward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::gru_reset_before_forward(const gru::Args<R>& a, int64_t block) {
  Exec ex;
  gru_reset_before::forward(ex, a, block);
}
template <class Exec> template <typename R>
void Kernels<Exec>::gru_reset_before_backward(const gru::Args<R>& a, int64_t block) {
  Exec ex;
  gru_reset_before::backward(ex, a, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::shift2d(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH, int64_t OW,
                            int64_t top, int64_t left, int64_t block) {
  Exec ex;
  layout::shift2d(ex, out, inp, N, H, W, C, OH, OW, top, left, block);
}
template <class Exec> template <typename T>
void Kernels<Exec>::reverse_time(T* out, const T* inp, int64_t B, int64_t T_, int64_t F, int64_t block) {
  Exec ex;
  layout::reverse_time(ex, out, inp, B, T_, F, block);
}

// The resident layers' entry points for one executor and one precision (kernels.cu and
// host_harness.cpp invoke it next to FALTUNG_CUDA_INSTANTIATE).
#define FALTUNG_CUDA_INSTANTIATE_LAYERS(Exec, T)                                                              \
  template void Kernels<Exec>::simple_rnn_forward<T>(const simple_rnn::Args<T>&, int64_t);                    \
  template void Kernels<Exec>::simple_rnn_backward<T>(const simple_rnn::Args<T>&, int64_t);                   \
  template void Kernels<Exec>::lstm_forward<T>(const lstm::Args<T>&, int64_t);                                \
  template void Kernels<Exec>::lstm_backward<T>(const lstm::Args<T>&, int64_t);                               \
  template void Kernels<Exec>::gru_forward<T>(const gru::Args<T>&, int64_t);                                  \
  template void Kernels<Exec>::gru_backward<T>(const gru::Args<T>&, int64_t);                                 \
  template void Kernels<Exec>::gru_reset_before_forward<T>(const gru::Args<T>&, int64_t);                     \
  template void Kernels<Exec>::gru_reset_before_backward<T>(const gru::Args<T>&, int64_t);                    \
  template void Kernels<Exec>::shift2d<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                          int64_t, int64_t, int64_t);                                         \
  template void Kernels<Exec>::reverse_time<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t);

}  // namespace faltung::cuda
