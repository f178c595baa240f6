// Internal to cpp/src (not part of the C++ API): the elementwise loop driver and the
// vectorizable float math shared by activations.cpp and softmax_dropout.cpp, and row
// reductions over simd.hpp vectors (also conv.cpp's and conv_depthwise.cpp's bias sums).
// N elements, R rows x K row length.
// Include it after the no-trapping-math pragma (see the top of activations.cpp): without
// it GCC does not vectorize the plain loops (the explicit-vector reductions do not need it).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "faltung/common.hpp"
#include "simd.hpp"

namespace faltung::elementwise {


// Size thresholds below which a loop stays on the calling thread (waking the pool costs
// more than the loop): cheap ops (compare, multiply) and transcendental ones (exp, erf).
constexpr int64_t kCheap = 1 << 16;
constexpr int64_t kCostly = 1 << 13;

// Runs body(i0, i1) over [0, N), split into one contiguous range per thread when N is
// large enough. One parallel region per call.
template <typename Body>
void ew(int64_t N, int64_t min_parallel, Body body) {
  const int nt = (N < min_parallel || omp_in_parallel()) ? 1 : get_num_threads();
  if (nt <= 1) {
    body(int64_t(0), N);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    // ranges aligned to 16 elements so that threads do not share cache lines
    const int64_t i0 = (N * t / n) & ~int64_t(15);
    const int64_t i1 = t + 1 == n ? N : (N * (t + 1) / n) & ~int64_t(15);
    body(i0, i1);
  }
}

// y[i] = f(x[i])
// (The loops copy the functor and pointers into locals first: the closure lives in memory,
// and a store through y might alias its captured parameters, forcing a reload per element.)
template <typename T, typename F>
void map_x(T* y, const T* x, int64_t N, int64_t thr, F f) {
  ew(N, thr, [=](int64_t i0, int64_t i1) {
    const F fl = f;
    T* const yl = y;
    const T* const xl = x;
    for (int64_t i = i0; i < i1; ++i) yl[i] = fl(xl[i]);
  });
}

// dx[i] = g(dy[i], v[i]) with v the forward input or output
template <typename T, typename G>
void map_dv(T* dx, const T* dy, const T* v, int64_t N, int64_t thr, G g) {
  ew(N, thr, [=](int64_t i0, int64_t i1) {
    const G gl = g;
    T* const dxl = dx;
    const T *const dyl = dy, *const vl = v;
    for (int64_t i = i0; i < i1; ++i) dxl[i] = gl(dyl[i], vl[i]);
  });
}

// min(max(x, -b), b), keeping NaN (std::max(x, -b) returns x when x is NaN).
template <typename T> inline T clamp_nan(T x, T b) { return std::min(std::max(x, -b), b); }
// x with -inf replaced by the lowest finite value: x * g(x) for a g that vanishes at -inf
// (silu, gelu, mish, hard_silu) gives -0 at -inf instead of -inf * 0 = NaN.
template <typename T> inline T finite_below(T x) {
  return std::max(x, std::numeric_limits<T>::lowest());
}

// ---- vectorizable float exp / tanh -----------------------------------------------------
// libm's expf/tanhf are scalar calls that stop GCC from vectorizing a loop. These are
// branch-free (blends, floor, integer ops), so loops over them compile to AVX2. Double
// keeps libm (float64 serves gradient checks, where accuracy matters more than speed).

// exp(x) = 2^n exp(r), n = round(x / ln2), |r| <= ln2/2; exp(r) by its Taylor series to
// degree 7 (truncation error < 6e-9 relative; measured max error ~1.3 ulp).
// x < -87.3 gives 0 (the true value is denormal or 0), x > 88.72 gives +inf, NaN gives NaN.
inline float exp_f(float x) {
  // NaN-free clamp (std::max(a, b) returns a when either is NaN): NaN becomes -87.3 here,
  // so the int32 conversion below always sees a finite value; the NaN comes back through
  // the x == x select at the end.
  const float xc = std::min(88.7f, std::max(-87.3f, x));
  // round to nearest by the 1.5 * 2^23 trick (no libm call)
  const float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = xc - n * 0.693359375f;  // ln2 split in a short high part ...
  r = r + n * 2.12194440e-4f;       // ... and the low remainder: ln2 = 0.693359375 - 2.1219444e-4
  const float p =
      1.f + r * (1.f + r * (0.5f + r * (1.f / 6 + r * (1.f / 24 + r * (1.f / 120 + r * (1.f / 720 + r * (1.f / 5040)))))));
  const float n1 = std::min(n, 127.f);  // n = 128 only near 88.7: 2^128 = 2 * 2^127
  const int32_t bits = (int32_t(n1) + 127) << 23;  // 2^n1, n1 in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  float y = p * scale * (1.f + (n - n1));
  y = x > 88.72283f ? std::numeric_limits<float>::infinity() : y;
  y = x < -87.3f ? 0.f : y;
  return x == x ? y : x;
}

// tanh(x): odd Taylor polynomial to x^7 for |x| < 0.2 (error < 2e-11), else
// (1 - e) / (1 + e) with e = exp(-2|x|), with the sign of x. The polynomial sees x clamped
// to [-0.2, 0.2] (NaN stays NaN): unclamped, x^7 overflows for |x| >= 5e5 and the blend's
// 0 * inf would give NaN.
template <typename T>
inline T tanh_series(T x) {  // |x| <= 0.2: error < 2e-11
  const T z = x * x;
  return x * (T(1) + z * (T(-1) / 3 + z * (T(2) / 15 + z * (T(-17) / 315))));
}
inline float tanh_f(float x) {
  const float a = std::abs(x);
  const float small = tanh_series(clamp_nan(x, 0.2f));
  const float e = exp_f(-2.f * a);
  const float big = std::copysign((1.f - e) / (1.f + e), x);
  const float w = float(a < 0.2f);
  return w * small + (1.f - w) * big;
}

// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7, fine for float).
inline float erf_f(float x) {
  const float a = std::abs(x);
  const float t = 1.f / (1.f + 0.3275911f * a);
  const float poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  return std::copysign(1.f - poly * exp_f(-a * a), x);
}

// exp(x) for x <= 0 (ctc.cpp's log-sum-exps, the LSTM cell's exp(-|z|)): exp_f without its
// overflow, infinity and NaN cases, and below -87.3 it returns exp(-87.3) ~ 1e-38 instead of 0,
// which the 1 it is added to absorbs. A NaN argument gives that too: the callers carry NaNs
// around it.
inline float exp_le0_f(float x) {
  const float xc = std::max(-87.3f, x);
  const float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round to nearest
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;         // xc - n ln2
  const float p =
      1.f + r * (1.f + r * (0.5f + r * (1.f / 6 + r * (1.f / 24 + r * (1.f / 120 + r * (1.f / 720 + r * (1.f / 5040)))))));
  const int32_t bits = (int32_t(n) + 127) << 23;  // 2^n, n in [-126, 0]
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
template <typename Real> inline Real vexp_le0(Real x) { return std::exp(x); }
template <> inline float vexp_le0<float>(float x) { return exp_le0_f(x); }
template <typename T> inline T vexp(T x) { return std::exp(x); }
template <typename T> inline T verf(T x) { return std::erf(x); }
template <> inline float verf<float>(float x) { return erf_f(x); }
template <> inline float vexp<float>(float x) { return exp_f(x); }
template <typename T> inline T vtanh(T x) { return std::tanh(x); }
template <> inline float vtanh<float>(float x) { return tanh_f(x); }
// exp(x) - 1 for x <= 0 (elu, selu): libm's expm1 for double. Float: exp - 1 loses the
// relative precision near 0 (x = -1e-6 came out 5% off, where PyTorch's expm1 is exact), so
// |x| < 0.35 takes the Taylor series to x^8 (truncation error < 3e-10 relative) and the rest
// exp - 1 (|result| > 0.29 there: relative error < 3e-7). Branch-free: both, then a blend.
template <typename T> inline T vexpm1(T x) { return std::expm1(x); }
inline float expm1_f(float x) {
  const float small = x * (1.f + x * (0.5f + x * (1.f / 6 + x * (1.f / 24 + x * (1.f / 120 +
                      x * (1.f / 720 + x * (1.f / 5040 + x * (1.f / 40320))))))));
  return std::abs(x) < 0.35f ? small : exp_f(x) - 1.f;
}
template <> inline float vexpm1<float>(float x) { return expm1_f(x); }

// log(1 + u) for u in [0, 1] as 2 atanh(s), s = u / (2 + u) in [0, 1/3] (no rounding of
// 1 + u), odd series to s^13 (truncation error < 1e-8 relative).
inline float log1p_unit_f(float u) {
  const float s = u / (2.f + u), z = s * s;
  return 2.f * s *
         (1.f + z * (1.f / 3 + z * (1.f / 5 + z * (1.f / 7 + z * (1.f / 9 + z * (1.f / 11 + z * (1.f / 13)))))));
}
template <typename T> inline T vlog1p_unit(T u) { return std::log1p(u); }
template <> inline float vlog1p_unit<float>(float u) { return log1p_unit_f(u); }

template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + vexp(-x)); }
template <typename T> inline T softplus(T x) {
  return std::max(x, T(0)) + vlog1p_unit(vexp(-std::abs(x)));
}

// Runs row(r) for r in [0, R), split over threads when R*K is large.
template <typename Row>
void rows(int64_t R, int64_t K, Row row) {
  ew(R, std::max<int64_t>(1, kCostly / std::max<int64_t>(K, 1)), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row(r);
  });
}
// Row reductions over simd.hpp vectors: GCC does not vectorize a plain float reduction (it
// may not reorder the sum, and a max that must skip NaNs), which left softmax scalar (4x
// PyTorch's time at 256 x 1000). The order of the sums differs from a left-to-right loop.

// The max of x (K) as std::max folds it from -inf (a NaN element is skipped). Whole vectors:
// a row that is no multiple of the vector width takes its last vector at K - W, overlapping
// the one before (the max does not mind); rows narrower than a vector go scalar.
template <typename T>
T max_of(const T* x, int64_t K) {
  using V = typename simd::Vec<T>::type;
  constexpr int W = simd::Vec<T>::width;
  T m = -std::numeric_limits<T>::infinity();
  if (K < W) {
    for (int64_t k = 0; k < K; ++k) m = std::max(m, x[k]);
    return m;
  }
  V vm = V{} + m;
  for (int64_t k = 0; k + W <= K; k += W) {
    const V v = simd::load<V>(x + k);
    vm = v > vm ? v : vm;
  }
  const V v = simd::load<V>(x + K - W);
  vm = v > vm ? v : vm;
  return simd::hmax<T>(vm);
}
// sum of x (K): two vector partial sums, their lanes pairwise, then the scalar tail.
template <typename T>
T sum_of(const T* x, int64_t K) {
  using V = typename simd::Vec<T>::type;
  constexpr int W = simd::Vec<T>::width;
  V a0 = V{}, a1 = V{};
  int64_t k = 0;
  for (; k + 2 * W <= K; k += 2 * W) a0 += simd::load<V>(x + k), a1 += simd::load<V>(x + k + W);
  for (; k + W <= K; k += W) a0 += simd::load<V>(x + k);
  T s = simd::hsum<T>(a0 + a1);
  for (; k < K; ++k) s += x[k];
  return s;
}
// sum of a[k] * b[k] (K), as sum_of.
template <typename T>
T dot_of(const T* a, const T* b, int64_t K) {
  using V = typename simd::Vec<T>::type;
  constexpr int W = simd::Vec<T>::width;
  V a0 = V{}, a1 = V{};
  int64_t k = 0;
  for (; k + 2 * W <= K; k += 2 * W) {
    a0 += simd::load<V>(a + k) * simd::load<V>(b + k);
    a1 += simd::load<V>(a + k + W) * simd::load<V>(b + k + W);
  }
  for (; k + W <= K; k += W) a0 += simd::load<V>(a + k) * simd::load<V>(b + k);
  T s = simd::hsum<T>(a0 + a1);
  for (; k < K; ++k) s += a[k] * b[k];
  return s;
}
// sum over k of exp(x[k] - m); e (K), if given, receives the exps. The exp loops vectorize as
// they stand; without e they fill a stack buffer a piece at a time.
template <typename T>
T sum_exp(const T* x, int64_t K, T m, T* e = nullptr) {
  if (e) {
    for (int64_t k = 0; k < K; ++k) e[k] = vexp(x[k] - m);
    return sum_of(e, K);
  }
  constexpr int64_t kPiece = 256;
  T buf[kPiece];
  T s = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kPiece) {
    const int64_t n = std::min(kPiece, K - k0);
    for (int64_t k = 0; k < n; ++k) buf[k] = vexp(x[k0 + k] - m);
    s += sum_of(buf, n);
  }
  return s;
}
// acc[c] += sum over rows r < n of g[r*C + c], up to four channel vectors in registers at a
// time, each block walking the rows (conv bias gradients; the callers pass row chunks that
// stay in L1 when C is wider than four vectors).
template <typename T>
void sum_rows(T* acc, const T* g, int64_t n, int64_t C) {
  using V = typename simd::Vec<T>::type;
  constexpr int VW = simd::Vec<T>::width;
  auto sum = [&](auto zero, auto cv, int64_t c) {
    using W_ = decltype(zero);
    constexpr int CV = decltype(cv)::value;
    constexpr int64_t w = sizeof(W_) / sizeof(T);
    W_ a[CV];
#pragma GCC unroll 4
    for (int v = 0; v < CV; ++v) a[v] = zero;
    for (int64_t ow = 0; ow < n; ++ow)
#pragma GCC unroll 4
      for (int v = 0; v < CV; ++v) a[v] += simd::load<W_>(g + ow * C + c + v * w);
#pragma GCC unroll 4
    for (int v = 0; v < CV; ++v) simd::store(acc + c + v * w, simd::load<W_>(acc + c + v * w) + a[v]);
  };
  int64_t c = 0;
  for (; c + 4 * VW <= C; c += 4 * VW) sum(V{}, std::integral_constant<int, 4>{}, c);
  for (; c + VW <= C; c += VW) sum(V{}, std::integral_constant<int, 1>{}, c);
  for (; c < C; ++c) sum(T(0), std::integral_constant<int, 1>{}, c);
}

// logsumexp of x (K)
template <typename T>
T logsumexp(const T* x, int64_t K) {
  const T m = max_of(x, K);
  if (std::isinf(m)) return m;
  return m + std::log(sum_exp(x, K, m));
}

}  // namespace faltung::elementwise
