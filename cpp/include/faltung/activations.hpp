// faltung/activations.hpp — activations, dropout and fused softmax cross-entropy.
//
// N number of elements (elementwise kernels see any array as flat (N)),
// R rows and K row length for the row-wise kernels (softmax over the last axis),
// B batch and K classes for the cross-entropy.
// Keras 3 definitions (keras/src/activations/activations.py); gelu exists in both forms
// (Keras's activation default is the exact erf form, approximate=false).
// Elementwise loops are plain vectorizable loops; OpenMP splits them only above a size
// threshold, in one parallel region per call.
#pragma once
#include <cstdint>
#include <string>

namespace faltung {

enum class Act {
  linear, relu, sigmoid, tanh, softplus, softsign, elu, selu, gelu, gelu_approx, silu,
  exponential, hard_sigmoid, hard_silu, mish
};

// Parameters of the parametrized activations.
// relu: y = clip(x if x > threshold else 0, 0, max_value) - negative_slope * max(threshold - x, 0)
//       (Keras's ReLU; leaky_relu = relu with negative_slope; relu6 = relu with max_value 6).
// elu:  alpha.
struct ActParams {
  double negative_slope = 0.0;
  double threshold = 0.0;
  bool has_max = false;
  double max_value = 0.0;
  double alpha = 1.0;
};

// "relu" -> Act::relu, ...; throws std::invalid_argument listing the valid names.
Act act_from_name(const std::string& name);
const char* act_name(Act a);

// x (N) -> y (N). y may alias x.
template <typename T>
void act_forward(Act a, T* y, const T* x, int64_t N, const ActParams& p);

// dy (N), x (N) the forward input, y (N) the forward output -> dx (N). Overwrites dx;
// dx may alias dy. Each kind reads what it needs (relu-family x, sigmoid/tanh y, ...).
template <typename T>
void act_backward(Act a, T* dx, const T* dy, const T* x, const T* y, int64_t N,
                  const ActParams& p);

// x (R,K) -> y (R,K), softmax over the last axis (max-subtracted, stable).
template <typename T> void softmax_forward(T* y, const T* x, int64_t R, int64_t K);
// dy (R,K), y (R,K) softmax output -> dx (R,K) = y * (dy - sum(dy * y)).
template <typename T> void softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K);
// x (R,K) -> y (R,K) = x - logsumexp(x) over the last axis.
template <typename T> void log_softmax_forward(T* y, const T* x, int64_t R, int64_t K);
// dy (R,K), y (R,K) log_softmax output -> dx (R,K) = dy - exp(y) * sum(dy).
template <typename T> void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K);

// Dropout. Element i is kept iff u(seed, i) >= rate, u uniform in [0,1) from a
// counter-based hash (splitmix64 of seed and i): the mask depends only on (seed, i),
// never on the thread count. 0 <= rate < 1.
// mask (N) of 0/1 bytes.
void dropout_mask(uint8_t* mask, int64_t N, double rate, uint64_t seed);
// x (N) -> y (N) = x * mask / (1 - rate), mask (N).
template <typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, int64_t N, double rate, uint64_t seed);
// dy (N), mask (N) -> dx (N) = dy * mask / (1 - rate).
template <typename T>
void dropout_backward(T* dx, const T* dy, const uint8_t* mask, int64_t N, double rate);

// Fused softmax cross-entropy from logits.
// logits (B,K), target (B,K) probabilities/one-hot -> loss (B) = -sum_k target * log_softmax,
// grad (B,K) = scale * (softmax(logits) - target) or nullptr. Overwrites both.
template <typename T>
void softmax_xent(T* loss, T* grad, const T* logits, const T* target, int64_t B, int64_t K,
                  T scale);
// logits (B,K), labels (B) int32 in [0,K) -> loss (B) = logsumexp - logits[label],
// grad (B,K) = scale * (softmax - onehot(label)) or nullptr.
// Throws std::invalid_argument naming the first out-of-range label (checked before any work).
template <typename T>
void sparse_softmax_xent(T* loss, T* grad, const T* logits, const int32_t* labels, int64_t B,
                         int64_t K, T scale);

}  // namespace faltung
