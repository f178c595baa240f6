// cpp/cuda/elementwise.cuh — every elementwise activation of faltung (faltung::Act, Keras 3's
// definitions), forward and backward, and log_softmax over the last axis, as kernel bodies and
// launch sequences (see hd.cuh for the design). Oracle: cpp/src/activations.cpp and
// cpp/src/softmax_dropout.cpp; each formula below is the CPU kernel's, case by case, including
// its edge rules (NaN through relu, +-inf through softsign, -inf through x * g(x), the kFlat
// clamp of the backward). The float CPU kernels use vectorizable approximations of exp/tanh/erf
// (cpp/src/elementwise.hpp, ~1 ulp); the bodies use libm / CUDA's math library, so float
// agrees to a few ulp, double to rounding.
// N elements (flat), R rows x K row length.
#pragma once
#include <cstdint>

#include "faltung/activations.hpp"  // faltung::Act, the kinds (no code: an enum and declarations)
#include "activations.cuh"  // act::row_logsumexp
#include "hd.cuh"

namespace faltung::cuda::ew {

// The math the activations need, one overload per precision (hd.cuh has exp, log, sqrt).
FALTUNG_HD inline float hd_tanh(float x) { return tanhf(x); }
FALTUNG_HD inline double hd_tanh(double x) { return tanh(x); }
FALTUNG_HD inline float hd_erf(float x) { return erff(x); }
FALTUNG_HD inline double hd_erf(double x) { return erf(x); }
FALTUNG_HD inline float hd_expm1(float x) { return expm1f(x); }
FALTUNG_HD inline double hd_expm1(double x) { return expm1(x); }
FALTUNG_HD inline float hd_log1p(float x) { return log1pf(x); }
FALTUNG_HD inline double hd_log1p(double x) { return log1p(x); }
FALTUNG_HD inline float hd_abs(float x) { return fabsf(x); }
FALTUNG_HD inline double hd_abs(double x) { return fabs(x); }
// std::max / std::min semantics: the first argument comes back when either is NaN (the CPU
// kernels rely on it: relu's max(x, 0) keeps NaN).
template <typename T> FALTUNG_HD inline T smax(T a, T b) { return a < b ? b : a; }
template <typename T> FALTUNG_HD inline T smin(T a, T b) { return b < a ? b : a; }
template <typename T> FALTUNG_HD inline T clamp_nan(T x, T b) { return smin(smax(x, -b), b); }
template <typename T> FALTUNG_HD inline T lowest();
template <> FALTUNG_HD inline float lowest<float>() { return -3.402823466e+38f; }
template <> FALTUNG_HD inline double lowest<double>() { return -1.7976931348623157e+308; }
template <typename T> FALTUNG_HD inline T finite_below(T x) { return smax(x, lowest<T>()); }
template <typename T> FALTUNG_HD inline T sigmoid(T x) { return T(1) / (T(1) + hd_exp(-x)); }
template <typename T> FALTUNG_HD inline T softplus(T x) { return smax(x, T(0)) + hd_log1p(hd_exp(-hd_abs(x))); }
template <typename T> FALTUNG_HD inline T hard_sig(T v) { return smin(smax(v / T(6) + T(0.5), T(0)), T(1)); }

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSqrt2 = 1.4142135623730950488;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluC = 0.044715;
constexpr double kFlat = 1e4;  // the CPU's clamp of x in the backward of x * g(x) kinds

// An activation and its parameters (faltung::ActParams in the body's precision; a plain
// aggregate, so that it travels as a kernel argument).
template <typename T>
struct ActSpec {
  Act kind;
  T negative_slope, threshold, max_value, alpha;
  bool has_max;
};
template <typename T>
inline ActSpec<T> act_spec(Act a, const ActParams& p) {
  return ActSpec<T>{a, T(p.negative_slope), T(p.threshold), T(p.max_value), T(p.alpha), p.has_max};
}
// Whether the backward of `a` reads the forward output y (else the input x): the CPU's choice.
FALTUNG_HD inline bool backward_reads_y(Act a) {
  return a == Act::sigmoid || a == Act::tanh || a == Act::exponential;
}

// The slope part relu subtracts, s max(th - x, 0); zero (not 0 * inf) when s = 0.
template <typename T> FALTUNG_HD inline T relu_negative(T v, T s, T th) {
  return s == T(0) ? T(0) : s * smax(th - v, T(0));
}

// y = act(v)
template <typename T>
FALTUNG_HD inline T act_forward(const ActSpec<T>& a, T v) {
  switch (a.kind) {
    case Act::linear: return v;
    case Act::relu: {
      if (a.negative_slope == T(0) && a.threshold == T(0) && !a.has_max) return smax(v, T(0));
      T pos = v > a.threshold ? v : T(0);
      if (a.has_max) pos = smin(smax(pos, T(0)), a.max_value);
      return v == v ? pos - relu_negative(v, a.negative_slope, a.threshold) : v;
    }
    case Act::sigmoid: return sigmoid(v);
    case Act::tanh: return hd_tanh(v);
    case Act::softplus: return softplus(v);
    case Act::softsign: {
      const T c = clamp_nan(v, -lowest<T>());  // +-inf -> +-max: +-1, not inf/inf
      return c / (T(1) + hd_abs(c));
    }
    case Act::elu: return smax(v, T(0)) + a.alpha * hd_expm1(smin(v, T(0)));
    case Act::selu:
      return T(kSeluScale) * smax(v, T(0)) + T(kSeluScale * kSeluAlpha) * hd_expm1(smin(v, T(0)));
    case Act::gelu: {
      const T u = finite_below(v);
      return T(0.5) * u * (T(1) + hd_erf(u / T(kSqrt2)));
    }
    case Act::gelu_approx: {
      const T u = finite_below(v);
      return T(0.5) * u * (T(1) + hd_tanh(T(kSqrt2OverPi) * (u + T(kGeluC) * u * u * u)));
    }
    case Act::silu: return finite_below(v) * sigmoid(v);
    case Act::exponential: return hd_exp(v);
    case Act::hard_sigmoid: return hard_sig(v);
    case Act::hard_silu: return finite_below(v) * hard_sig(v);
    case Act::mish: return finite_below(v) * hd_tanh(softplus(v));
  }
  return v;
}

// dx = d * act'(.) with v the forward input x, or the output y where backward_reads_y.
template <typename T>
FALTUNG_HD inline T act_backward(const ActSpec<T>& a, T d, T v) {
  switch (a.kind) {
    case Act::linear: return d;
    case Act::relu: {
      const T th = a.threshold, s = a.negative_slope;
      if (!a.has_max) return d * (T(v > th) + s * T(v < th));
      return d * (T(v > th && v > T(0) && v < a.max_value) + s * T(v < th));
    }
    case Act::sigmoid: return d * v * (T(1) - v);
    case Act::tanh: return d * (T(1) - v * v);
    case Act::softplus: return d * sigmoid(v);
    case Act::softsign: {
      const T q = T(1) + hd_abs(v);
      return d / (q * q);
    }
    case Act::elu: return d * (T(v > T(0)) + T(v <= T(0)) * a.alpha * hd_exp(smin(v, T(0))));
    case Act::selu:
      return d * (T(v > T(0)) * T(kSeluScale) + T(v <= T(0)) * T(kSeluScale * kSeluAlpha) * hd_exp(smin(v, T(0))));
    case Act::gelu: {
      const T u = clamp_nan(v, T(kFlat));
      const T cdf = T(0.5) * (T(1) + hd_erf(u / T(kSqrt2)));
      const T pdf = T(kInvSqrt2Pi) * hd_exp(T(-0.5) * u * u);
      return d * (cdf + u * pdf);
    }
    case Act::gelu_approx: {
      const T u = clamp_nan(v, T(kFlat));
      const T t = hd_tanh(T(kSqrt2OverPi) * (u + T(kGeluC) * u * u * u));
      const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluC) * u * u);
      return d * (T(0.5) * (T(1) + t) + T(0.5) * u * (T(1) - t * t) * du);
    }
    case Act::silu: {
      const T u = clamp_nan(v, T(kFlat));
      const T s = sigmoid(u);
      return d * s * (T(1) + u * (T(1) - s));
    }
    case Act::exponential: return d * v;
    case Act::hard_sigmoid: return d * T(v > T(-3) && v < T(3)) / T(6);
    case Act::hard_silu: {
      const T u = clamp_nan(v, T(kFlat));
      return d * (hard_sig(u) + T(u > T(-3) && u < T(3)) * u / T(6));
    }
    case Act::mish: {
      const T u = clamp_nan(v, T(kFlat));
      const T t = hd_tanh(softplus(u));
      return d * (t + u * (T(1) - t * t) * sigmoid(u));
    }
  }
  return d;
}

// x (N) -> y (N). Thread per element.
template <typename T>
struct ActForward {
  T* y;
  const T* x;
  int64_t N;
  ActSpec<T> a;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < N) y[i] = act_forward(a, x[i]);
  }
};

// dy (N), v (N) the forward input or output (backward_reads_y) -> dx (N). Thread per element.
template <typename T>
struct ActBackward {
  T* dx;
  const T *dy, *v;
  int64_t N;
  ActSpec<T> a;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < N) dx[i] = act_backward(a, dy[i], v[i]);
  }
};

template <class Exec, typename T>
void act_forward(Exec& ex, T* y, const T* x, int64_t N, const ActSpec<T>& a, int64_t block) {
  ex.launch(cover(N, block), ActForward<T>{y, x, N, a});
}
template <class Exec, typename T>
void act_backward(Exec& ex, T* dx, const T* dy, const T* v, int64_t N, const ActSpec<T>& a, int64_t block) {
  ex.launch(cover(N, block), ActBackward<T>{dx, dy, v, N, a});
}

// ---- log_softmax over rows -------------------------------------------------------------------
// x (R,K) -> y (R,K) = x - logsumexp(x). Thread per row.
template <typename T>
struct LogSoftmaxForward {
  T* y;
  const T* x;
  int64_t R, K;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= R) return;
    const T* x_r = x + r * K;
    const T lse = act::row_logsumexp(x_r, K);  // as the CPU's (an infinite max returned as is)
    for (int64_t k = 0; k < K; ++k) y[r * K + k] = x_r[k] - lse;
  }
};

// dy (R,K), y (R,K) the log_softmax output -> dx (R,K) = dy - exp(y) sum(dy). Thread per row.
template <typename T>
struct LogSoftmaxBackward {
  T* dx;
  const T *dy, *y;
  int64_t R, K;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= R) return;
    const T *dy_r = dy + r * K, *y_r = y + r * K;
    T s = 0;
    for (int64_t k = 0; k < K; ++k) s += dy_r[k];
    for (int64_t k = 0; k < K; ++k) dx[r * K + k] = dy_r[k] - hd_exp(y_r[k]) * s;
  }
};

template <class Exec, typename T>
void log_softmax_forward(Exec& ex, T* y, const T* x, int64_t R, int64_t K, int64_t block) {
  ex.launch(cover(K > 0 ? R : 0, block), LogSoftmaxForward<T>{y, x, R, K});
}
template <class Exec, typename T>
void log_softmax_backward(Exec& ex, T* dx, const T* dy, const T* y, int64_t R, int64_t K, int64_t block) {
  ex.launch(cover(K > 0 ? R : 0, block), LogSoftmaxBackward<T>{dx, dy, y, R, K});
}

}  // namespace faltung::cuda::ew
