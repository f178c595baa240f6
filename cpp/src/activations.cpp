// Activations, dropout and fused softmax cross-entropy.
// N elements (flat), R rows x K row length (softmax family), B batch x K classes (xent).
// The float kernels below are written to vectorize; under GCC's default -ftrapping-math,
// GCC turns their clamps into branches and refuses to if-convert them, so this file opts
// out of trapping math (nothing here reads floating-point exception flags). The pragma
// comes before every include so that all inlined functions share the option (GCC does not
// inline across differing optimize options).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "faltung/activations.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "faltung/common.hpp"

namespace faltung {

namespace {

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

// ---- vectorizable float exp / tanh -----------------------------------------------------
// libm's expf/tanhf are scalar calls that stop GCC from vectorizing a loop. These are
// branch-free (blends, floor, integer ops), so loops over them compile to AVX2. Double
// keeps libm (float64 serves gradient checks, where accuracy matters more than speed).

// exp(x) = 2^n exp(r), n = round(x / ln2), |r| <= ln2/2; exp(r) by its Taylor series to
// degree 7 (truncation error < 6e-9 relative; measured max error ~1.3 ulp).
// x < -87.3 gives 0 (the true value is denormal or 0), x > 88.72 gives +inf.
inline float exp_f(float x) {
  const float xc = std::min(std::max(x, -87.3f), 88.7f);
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
  return y;
}

// tanh(x): odd Taylor polynomial to x^7 for |x| < 0.2 (error < 2e-11), else
// (1 - e) / (1 + e) with e = exp(-2|x|), with the sign of x.
inline float tanh_f(float x) {
  const float a = std::abs(x);
  const float z = x * x;
  const float small = x * (1.f + z * (-1.f / 3 + z * (2.f / 15 + z * (-17.f / 315))));
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

template <typename T> inline T vexp(T x) { return std::exp(x); }
template <typename T> inline T verf(T x) { return std::erf(x); }
template <> inline float verf<float>(float x) { return erf_f(x); }
template <> inline float vexp<float>(float x) { return exp_f(x); }
template <typename T> inline T vtanh(T x) { return std::tanh(x); }
template <> inline float vtanh<float>(float x) { return tanh_f(x); }
// exp(x) - 1 for x <= 0 (elu, selu): libm's expm1 for double; float accepts the absolute
// error (~6e-8) of exp - 1 near 0 for vectorization.
template <typename T> inline T vexpm1(T x) { return std::expm1(x); }
template <> inline float vexpm1<float>(float x) { return exp_f(x) - 1.f; }

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

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSqrt2 = 1.4142135623730950488;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/sqrt(2 pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kGeluC = 0.044715;

struct NameAct {
  const char* name;
  Act act;
};
constexpr NameAct kActs[] = {
    {"linear", Act::linear},       {"relu", Act::relu},
    {"sigmoid", Act::sigmoid},     {"tanh", Act::tanh},
    {"softplus", Act::softplus},   {"softsign", Act::softsign},
    {"elu", Act::elu},             {"selu", Act::selu},
    {"gelu", Act::gelu},           {"gelu_approximate", Act::gelu_approx},
    {"silu", Act::silu},           {"exponential", Act::exponential},
    {"hard_sigmoid", Act::hard_sigmoid}, {"hard_silu", Act::hard_silu},
    {"mish", Act::mish},
};

}  // namespace

Act act_from_name(const std::string& name) {
  std::string valid;
  for (const auto& na : kActs) {
    if (name == na.name) return na.act;
    valid += std::string(valid.empty() ? "" : ", ") + na.name;
  }
  throw std::invalid_argument("Unknown activation kernel '" + name + "'. Expected one of: " + valid);
}

const char* act_name(Act a) {
  for (const auto& na : kActs)
    if (na.act == a) return na.name;
  return "?";
}

// x (N) -> y (N)
template <typename T>
void act_forward(Act a, T* y, const T* x, int64_t N, const ActParams& p) {
  switch (a) {
    case Act::linear:
      if (y != x) map_x(y, x, N, kCheap, [](T v) { return v; });
      break;
    case Act::relu: {
      const T s = T(p.negative_slope), th = T(p.threshold), mx = T(p.max_value);
      if (s == T(0) && th == T(0) && !p.has_max) {
        map_x(y, x, N, kCheap, [](T v) { return v > T(0) ? v : T(0); });
      } else if (!p.has_max) {
        map_x(y, x, N, kCheap, [=](T v) { return (v > th ? v : T(0)) - s * std::max(th - v, T(0)); });
      } else {
        map_x(y, x, N, kCheap, [=](T v) {
          const T pos = std::min(std::max(v > th ? v : T(0), T(0)), mx);
          return pos - s * std::max(th - v, T(0));
        });
      }
      break;
    }
    case Act::sigmoid: map_x(y, x, N, kCostly, [](T v) { return sigmoid(v); }); break;
    case Act::tanh: map_x(y, x, N, kCostly, [](T v) { return vtanh(v); }); break;
    case Act::softplus: map_x(y, x, N, kCostly, [](T v) { return softplus(v); }); break;
    case Act::softsign: map_x(y, x, N, kCheap, [](T v) { return v / (T(1) + std::abs(v)); }); break;
    case Act::elu: {
      const T al = T(p.alpha);
      map_x(y, x, N, kCostly, [=](T v) { return std::max(v, T(0)) + al * vexpm1(std::min(v, T(0))); });
      break;
    }
    case Act::selu: {
      const T sc = T(kSeluScale), sa = T(kSeluScale * kSeluAlpha);
      map_x(y, x, N, kCostly,
            [=](T v) { return sc * std::max(v, T(0)) + sa * vexpm1(std::min(v, T(0))); });
      break;
    }
    case Act::gelu:
      map_x(y, x, N, kCostly, [](T v) { return T(0.5) * v * (T(1) + verf(v / T(kSqrt2))); });
      break;
    case Act::gelu_approx:
      map_x(y, x, N, kCostly, [](T v) {
        return T(0.5) * v * (T(1) + vtanh(T(kSqrt2OverPi) * (v + T(kGeluC) * v * v * v)));
      });
      break;
    case Act::silu: map_x(y, x, N, kCostly, [](T v) { return v * sigmoid(v); }); break;
    case Act::exponential: map_x(y, x, N, kCostly, [](T v) { return vexp(v); }); break;
    case Act::hard_sigmoid:
      map_x(y, x, N, kCheap, [](T v) { return std::min(std::max(v / T(6) + T(0.5), T(0)), T(1)); });
      break;
    case Act::hard_silu:
      map_x(y, x, N, kCheap,
            [](T v) { return v * std::min(std::max(v / T(6) + T(0.5), T(0)), T(1)); });
      break;
    case Act::mish: map_x(y, x, N, kCostly, [](T v) { return v * vtanh(softplus(v)); }); break;
  }
}

// dy (N), x (N), y (N) -> dx (N)
template <typename T>
void act_backward(Act a, T* dx, const T* dy, const T* x, const T* y, int64_t N,
                  const ActParams& p) {
  switch (a) {
    case Act::linear:
      if (dx != dy) map_x(dx, dy, N, kCheap, [](T v) { return v; });
      break;
    case Act::relu: {
      // y = clip(x > th ? x : 0, 0, max) - s * max(th - x, 0)
      // dy/dx = [x > th] (and 0 < x < max when clipped) + s [x < th]
      const T s = T(p.negative_slope), th = T(p.threshold), mx = T(p.max_value);
      if (!p.has_max)
        map_dv(dx, dy, x, N, kCheap,
               [=](T d, T v) { return d * (T(v > th) + s * T(v < th)); });
      else
        map_dv(dx, dy, x, N, kCheap, [=](T d, T v) {
          return d * (T(v > th && v > T(0) && v < mx) + s * T(v < th));
        });
      break;
    }
    case Act::sigmoid:  // y = sigmoid(x): dy/dx = y (1 - y)
      map_dv(dx, dy, y, N, kCheap, [](T d, T w) { return d * w * (T(1) - w); });
      break;
    case Act::tanh:  // dy/dx = 1 - y^2
      map_dv(dx, dy, y, N, kCheap, [](T d, T w) { return d * (T(1) - w * w); });
      break;
    case Act::softplus:  // dy/dx = sigmoid(x)
      map_dv(dx, dy, x, N, kCostly, [](T d, T v) { return d * sigmoid(v); });
      break;
    case Act::softsign:  // dy/dx = 1 / (1 + |x|)^2
      map_dv(dx, dy, x, N, kCheap, [](T d, T v) {
        const T q = T(1) + std::abs(v);
        return d / (q * q);
      });
      break;
    case Act::elu: {  // x <= 0: y = a (e^x - 1), dy/dx = a e^x
      const T al = T(p.alpha);
      map_dv(dx, dy, x, N, kCostly, [=](T d, T v) {
        return d * (T(v > T(0)) + T(v <= T(0)) * al * vexp(std::min(v, T(0))));
      });
      break;
    }
    case Act::selu: {
      const T sc = T(kSeluScale), sa = T(kSeluScale * kSeluAlpha);
      map_dv(dx, dy, x, N, kCostly,
             [=](T d, T v) { return d * (T(v > T(0)) * sc + T(v <= T(0)) * sa * vexp(std::min(v, T(0)))); });
      break;
    }
    case Act::gelu:  // y = x Phi(x): dy/dx = Phi(x) + x phi(x)
      map_dv(dx, dy, x, N, kCostly, [](T d, T v) {
        const T cdf = T(0.5) * (T(1) + verf(v / T(kSqrt2)));
        const T pdf = T(kInvSqrt2Pi) * vexp(T(-0.5) * v * v);
        return d * (cdf + v * pdf);
      });
      break;
    case Act::gelu_approx:  // y = x/2 (1 + tanh(u)), u = c1 (x + c2 x^3)
      map_dv(dx, dy, x, N, kCostly, [](T d, T v) {
        const T t = vtanh(T(kSqrt2OverPi) * (v + T(kGeluC) * v * v * v));
        const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluC) * v * v);
        return d * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
      });
      break;
    case Act::silu:  // y = x s(x): dy/dx = s (1 + x (1 - s))
      map_dv(dx, dy, x, N, kCostly, [](T d, T v) {
        const T s = sigmoid(v);
        return d * s * (T(1) + v * (T(1) - s));
      });
      break;
    case Act::exponential: map_dv(dx, dy, y, N, kCheap, [](T d, T w) { return d * w; }); break;
    case Act::hard_sigmoid:
      map_dv(dx, dy, x, N, kCheap,
             [](T d, T v) { return d * T(v > T(-3) && v < T(3)) / T(6); });
      break;
    case Act::hard_silu:  // y = x h(x): dy/dx = h(x) + x h'(x)
      map_dv(dx, dy, x, N, kCheap, [](T d, T v) {
        const T h = std::min(std::max(v / T(6) + T(0.5), T(0)), T(1));
        return d * (h + T(v > T(-3) && v < T(3)) * v / T(6));
      });
      break;
    case Act::mish:  // y = x tanh(sp(x)): dy/dx = t + x (1 - t^2) sigmoid(x)
      map_dv(dx, dy, x, N, kCostly, [](T d, T v) {
        const T t = vtanh(softplus(v));
        return d * (t + v * (T(1) - t * t) * sigmoid(v));
      });
      break;
  }
}

// ---- softmax family: rows of length K, one row per iteration -------------------------

namespace {
// Runs row(r) for r in [0, R), split over threads when R*K is large.
template <typename Row>
void rows(int64_t R, int64_t K, Row row) {
  ew(R, std::max<int64_t>(1, kCostly / std::max<int64_t>(K, 1)), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row(r);
  });
}
// logsumexp of x (K)
template <typename T>
T logsumexp(const T* x, int64_t K) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < K; ++k) m = std::max(m, x[k]);
  if (std::isinf(m)) return m;
  T s = 0;
  for (int64_t k = 0; k < K; ++k) s += vexp(x[k] - m);
  return m + std::log(s);
}
}  // namespace

// x (R,K) -> y (R,K)
template <typename T>
void softmax_forward(T* y, const T* x, int64_t R, int64_t K) {
  rows(R, K, [=](int64_t r) {
    const T* x_r = x + r * K;
    T* y_r = y + r * K;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < K; ++k) m = std::max(m, x_r[k]);
    T s = 0;
    for (int64_t k = 0; k < K; ++k) s += (y_r[k] = vexp(x_r[k] - m));
    const T inv = T(1) / s;
    for (int64_t k = 0; k < K; ++k) y_r[k] *= inv;
  });
}

// dy (R,K), y (R,K) -> dx (R,K)
template <typename T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K) {
  rows(R, K, [=](int64_t r) {
    const T *dy_r = dy + r * K, *y_r = y + r * K;
    T* dx_r = dx + r * K;
    T dot = 0;
    for (int64_t k = 0; k < K; ++k) dot += dy_r[k] * y_r[k];
    for (int64_t k = 0; k < K; ++k) dx_r[k] = y_r[k] * (dy_r[k] - dot);
  });
}

// x (R,K) -> y (R,K)
template <typename T>
void log_softmax_forward(T* y, const T* x, int64_t R, int64_t K) {
  rows(R, K, [=](int64_t r) {
    const T* x_r = x + r * K;
    T* y_r = y + r * K;
    const T lse = logsumexp(x_r, K);
    for (int64_t k = 0; k < K; ++k) y_r[k] = x_r[k] - lse;
  });
}

// dy (R,K), y (R,K) -> dx (R,K)
template <typename T>
void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K) {
  rows(R, K, [=](int64_t r) {
    const T *dy_r = dy + r * K, *y_r = y + r * K;
    T* dx_r = dx + r * K;
    T s = 0;
    for (int64_t k = 0; k < K; ++k) s += dy_r[k];
    for (int64_t k = 0; k < K; ++k) dx_r[k] = dy_r[k] - vexp(y_r[k]) * s;
  });
}

// ---- dropout ---------------------------------------------------------------------------

namespace {
inline uint64_t mix64(uint64_t z) {  // splitmix64 finalizer (for the key only)
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
inline uint32_t fmix32(uint32_t h) {  // murmur3's 32-bit finalizer: a bijection
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  return h ^ (h >> 16);
}
// Element i is kept iff the top 24 bits of hash(seed, i) are >= thr24 = round(rate 2^24).
// The hash works on 32-bit lanes (AVX2 has 32-bit but no 64-bit multiplies): two rounds of
// fmix32 over (i * golden + key_lo) and key_hi; the high half of i enters the first round.
struct KeepRule {
  uint32_t key_lo, key_hi, thr24;
  KeepRule(double rate, uint64_t seed) {
    const uint64_t k = mix64(seed + 0x9E3779B97F4A7C15ULL);
    key_lo = uint32_t(k);
    key_hi = uint32_t(k >> 32);
    thr24 = uint32_t(std::llround(rate * 16777216.0));
  }
  bool keep(int64_t i) const {
    const uint32_t c = uint32_t(i) * 0x9E3779B9u + key_lo + uint32_t(uint64_t(i) >> 32) * 0x7FEB352Du;
    return (fmix32(fmix32(c) ^ key_hi) >> 8) >= thr24;
  }
};
void check_rate(double rate) {
  check(rate >= 0.0 && rate <= 1.0,
        "dropout: expected 0 <= rate <= 1, received rate=" + std::to_string(rate));
}
}  // namespace

// -> mask (N)
void dropout_mask(uint8_t* mask, int64_t N, double rate, uint64_t seed) {
  check_rate(rate);
  const KeepRule rule(rate, seed);
  ew(N, kCostly, [=](int64_t i0, int64_t i1) {
    // locals: uint8_t stores may alias anything, so captured fields would be reloaded
    // every iteration and the loop would not vectorize
    const KeepRule r = rule;
    uint8_t* const m = mask;
    for (int64_t i = i0; i < i1; ++i) m[i] = r.keep(i) ? 1 : 0;
  });
}

// x (N) -> y (N), mask (N)
template <typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, int64_t N, double rate, uint64_t seed) {
  check_rate(rate);
  const KeepRule rule(rate, seed);
  const T scale = rate < 1.0 ? T(1.0 / (1.0 - rate)) : T(0);
  ew(N, kCostly, [=](int64_t i0, int64_t i1) {
    const KeepRule r = rule;  // locals, see dropout_mask
    uint8_t* const m = mask;
    T* const yy = y;
    const T* const xx = x;
    const T sc = scale;
    for (int64_t i = i0; i < i1; ++i) {
      const bool k = r.keep(i);
      m[i] = k ? 1 : 0;
      yy[i] = k ? xx[i] * sc : T(0);
    }
  });
}

// dy (N), mask (N) -> dx (N)
template <typename T>
void dropout_backward(T* dx, const T* dy, const uint8_t* mask, int64_t N, double rate) {
  check_rate(rate);
  const T scale = rate < 1.0 ? T(1.0 / (1.0 - rate)) : T(0);
  ew(N, kCheap, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = mask[i] ? dy[i] * scale : T(0);
  });
}

// ---- fused softmax cross-entropy ----------------------------------------------------------

// logits (B,K), target (B,K) -> loss (B), grad (B,K) or nullptr
template <typename T>
void softmax_xent(T* loss, T* grad, const T* logits, const T* target, int64_t B, int64_t K,
                  T scale) {
  rows(B, K, [=](int64_t b) {
    const T *x_b = logits + b * K, *t_b = target + b * K;
    const T lse = logsumexp(x_b, K);
    // loss = -sum_k t_k (x_k - lse); d loss / d x_k = p_k sum(t) - t_k
    T l = 0, tsum = 0;
    for (int64_t k = 0; k < K; ++k) {
      l += t_b[k] * (lse - x_b[k]);
      tsum += t_b[k];
    }
    loss[b] = l;
    if (grad) {
      T* g_b = grad + b * K;
      for (int64_t k = 0; k < K; ++k) g_b[k] = scale * (vexp(x_b[k] - lse) * tsum - t_b[k]);
    }
  });
}

// logits (B,K), labels (B) -> loss (B), grad (B,K) or nullptr
template <typename T>
void sparse_softmax_xent(T* loss, T* grad, const T* logits, const int32_t* labels, int64_t B,
                         int64_t K, T scale) {
  for (int64_t b = 0; b < B; ++b)
    check(labels[b] >= 0 && labels[b] < K,
          "sparse softmax cross-entropy: label " + std::to_string(labels[b]) + " at index " +
              std::to_string(b) + " is out of range [0, " + std::to_string(K) + ")");
  rows(B, K, [=](int64_t b) {
    const T* x_b = logits + b * K;
    const int64_t y = labels[b];
    const T lse = logsumexp(x_b, K);
    loss[b] = lse - x_b[y];
    if (grad) {
      T* g_b = grad + b * K;
      for (int64_t k = 0; k < K; ++k) g_b[k] = scale * vexp(x_b[k] - lse);
      g_b[y] -= scale;
    }
  });
}

#define FALTUNG_ACT_INSTANTIATE(T)                                                             \
  template void act_forward<T>(Act, T*, const T*, int64_t, const ActParams&);                  \
  template void act_backward<T>(Act, T*, const T*, const T*, const T*, int64_t,                \
                                const ActParams&);                                             \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t);                            \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                 \
  template void log_softmax_forward<T>(T*, const T*, int64_t, int64_t);                        \
  template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);             \
  template void dropout_forward<T>(T*, uint8_t*, const T*, int64_t, double, uint64_t);         \
  template void dropout_backward<T>(T*, const T*, const uint8_t*, int64_t, double);            \
  template void softmax_xent<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);              \
  template void sparse_softmax_xent<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t, T);
FALTUNG_ACT_INSTANTIATE(float)
FALTUNG_ACT_INSTANTIATE(double)
#undef FALTUNG_ACT_INSTANTIATE

}  // namespace faltung
