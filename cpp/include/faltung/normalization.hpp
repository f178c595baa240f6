// faltung/normalization.hpp — batch normalization over the last axis of a row-major array.
// Any input (N,H,W,C) / (N,T,C) / (N,C) is viewed as R rows of C channels (R = product of
// the other dimensions); the statistics of channel c run over all R rows.
//
// R rows (all axes but the channel axis), C channels. x, y, dy, dx are (R,C); mean, var,
// inv_std, gamma, beta, dgamma, dbeta, scale, shift are (C).
// Training forward: mean = sum_r x / R, var = sum_r (x - mean)^2 / R (biased, as Keras's
// ops.moments), inv_std = 1/sqrt(var + eps), y = gamma * (x - mean) * inv_std + beta.
#pragma once
#include <cstdint>

namespace faltung {

// x (R,C) -> mean (C), var (C) (biased). Overwrites mean, var. One pass over x (shifted
// sums), per-thread partial sums in double reduced after the parallel region.
template <typename T>
void batch_norm_moments(T* mean, T* var, const T* x, int64_t R, int64_t C);

// x (R,C), mean (C), var (C), gamma (C) or nullptr (= 1), beta (C) or nullptr (= 0)
// -> y (R,C), inv_std (C) or nullptr. Overwrites y, inv_std.
template <typename T>
void batch_norm_forward(T* y, T* inv_std, const T* x, const T* mean, const T* var, const T* gamma,
                        const T* beta, T eps, int64_t R, int64_t C);

// y (R,C) = x (R,C) * scale (C) + shift (C) (shift may be nullptr). Inference-mode BN after
// folding the moving statistics, and its backward dx = dy * scale.
template <typename T>
void channel_affine(T* y, const T* x, const T* scale, const T* shift, int64_t R, int64_t C);

// Training-mode backward. dy (R,C), x (R,C), mean (C), inv_std (C), gamma (C) or nullptr
// -> dx (R,C), dgamma (C), dbeta (C); a nullptr skips that gradient; all are overwritten.
// With x_hat = (x - mean) * inv_std:
//   dbeta = sum_r dy, dgamma = sum_r dy * x_hat,
//   dx = gamma * inv_std / R * (R * dy - dbeta - x_hat * dgamma).
template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                         const T* inv_std, const T* gamma, int64_t R, int64_t C);

// Naive oracles (single thread, plain loops) of the training forward and backward.
template <typename T>
void batch_norm_train_ref(T* y, T* mean, T* var, const T* x, const T* gamma, const T* beta, T eps,
                          int64_t R, int64_t C);
template <typename T>
void batch_norm_backward_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* inv_std, const T* gamma, int64_t R, int64_t C);

}  // namespace faltung
