// Fused optimizer updates (see faltung/optim.hpp). n = elements of one variable.
// One pass over each variable, single-threaded: the update is memory-bound (one core
// streams ~1M parameters in well under a millisecond) and a parallel region per variable
// costs more than it saves on a shared 2-core machine.
// The generic loops are the reference. GCC does not vectorize std::sqrt unless
// -fno-math-errno is set, so the float kernels that divide by a square root have an
// AVX (8-wide) version, used when the compiler targets AVX2; tails run the scalar loop.
#include "faltung/optim.hpp"

#include <algorithm>
#include <cmath>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FALTUNG_OPTIM_AVX 1
#endif

namespace faltung {

namespace {

// ---- scalar reference loops over [b, e) ----------------------------------------------

template <typename T>
void adam_range(T* w, T* m, T* v, T* vhat, const T* g, int64_t b, int64_t e, T alpha, T beta1, T beta2,
                T eps) {
  const T c1 = T(1) - beta1, c2 = T(1) - beta2;
  for (int64_t i = b; i < e; ++i) {
    const T gi = g[i];
    m[i] += (gi - m[i]) * c1;
    v[i] += (gi * gi - v[i]) * c2;
    T vi = v[i];
    if (vhat != nullptr) vi = vhat[i] = std::max(vhat[i], vi);
    w[i] -= alpha * m[i] / (std::sqrt(vi) + eps);
  }
}

template <typename T>
void rmsprop_range(T* w, T* v, T* mom, T* avg, const T* g, int64_t b, int64_t e, T lr, T rho, T momentum,
                   T eps) {
  const T c = T(1) - rho;
  for (int64_t i = b; i < e; ++i) {
    const T gi = g[i];
    v[i] = rho * v[i] + c * gi * gi;
    T den = v[i] + eps;
    if (avg != nullptr) {
      avg[i] = rho * avg[i] + c * gi;
      den = v[i] - avg[i] * avg[i] + eps;
    }
    const T inc = lr * gi / std::sqrt(den);
    if (mom != nullptr) {
      mom[i] = momentum * mom[i] + inc;
      w[i] -= mom[i];
    } else {
      w[i] -= inc;
    }
  }
}

template <typename T>
void adagrad_range(T* w, T* acc, const T* g, int64_t b, int64_t e, T lr, T eps) {
  for (int64_t i = b; i < e; ++i) {
    acc[i] += g[i] * g[i];
    w[i] -= lr * g[i] / std::sqrt(acc[i] + eps);
  }
}

// ---- AVX float versions of the blocks of 8; return where the scalar tail starts ---------

#ifdef FALTUNG_OPTIM_AVX
int64_t adam_avx(float* w, float* m, float* v, float* vhat, const float* g, int64_t n, float alpha,
                 float beta1, float beta2, float eps) {
  const __m256 c1 = _mm256_set1_ps(1.0f - beta1), c2 = _mm256_set1_ps(1.0f - beta2);
  const __m256 va = _mm256_set1_ps(alpha), ve = _mm256_set1_ps(eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    __m256 mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
    mi = _mm256_fmadd_ps(_mm256_sub_ps(gi, mi), c1, mi);                      // m += (g - m) c1
    vi = _mm256_fmadd_ps(_mm256_fmsub_ps(gi, gi, vi), c2, vi);                // v += (g^2 - v) c2
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    if (vhat != nullptr) {
      vi = _mm256_max_ps(_mm256_loadu_ps(vhat + i), vi);
      _mm256_storeu_ps(vhat + i, vi);
    }
    const __m256 step = _mm256_div_ps(_mm256_mul_ps(va, mi), _mm256_add_ps(_mm256_sqrt_ps(vi), ve));
    _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_loadu_ps(w + i), step));  // w -= alpha m / (sqrt v + eps)
  }
  return i;
}

int64_t rmsprop_avx(float* w, float* v, float* mom, float* avg, const float* g, int64_t n, float lr,
                    float rho, float momentum, float eps) {
  const __m256 vr = _mm256_set1_ps(rho), vc = _mm256_set1_ps(1.0f - rho), vl = _mm256_set1_ps(lr);
  const __m256 vmo = _mm256_set1_ps(momentum), ve = _mm256_set1_ps(eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 vi = _mm256_fmadd_ps(vr, _mm256_loadu_ps(v + i), _mm256_mul_ps(vc, _mm256_mul_ps(gi, gi)));
    _mm256_storeu_ps(v + i, vi);                                              // v = rho v + (1 - rho) g^2
    __m256 den = _mm256_add_ps(vi, ve);
    if (avg != nullptr) {
      const __m256 ai = _mm256_fmadd_ps(vr, _mm256_loadu_ps(avg + i), _mm256_mul_ps(vc, gi));
      _mm256_storeu_ps(avg + i, ai);
      den = _mm256_add_ps(_mm256_fnmadd_ps(ai, ai, vi), ve);                 // v - avg^2 + eps
    }
    __m256 inc = _mm256_div_ps(_mm256_mul_ps(vl, gi), _mm256_sqrt_ps(den));
    if (mom != nullptr) {
      inc = _mm256_fmadd_ps(vmo, _mm256_loadu_ps(mom + i), inc);
      _mm256_storeu_ps(mom + i, inc);                                         // mom = momentum mom + inc
    }
    _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_loadu_ps(w + i), inc));
  }
  return i;
}

int64_t adagrad_avx(float* w, float* acc, const float* g, int64_t n, float lr, float eps) {
  const __m256 vl = _mm256_set1_ps(lr), ve = _mm256_set1_ps(eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 a = _mm256_fmadd_ps(gi, gi, _mm256_loadu_ps(acc + i));
    _mm256_storeu_ps(acc + i, a);                                             // acc += g^2
    const __m256 step = _mm256_div_ps(_mm256_mul_ps(vl, gi), _mm256_sqrt_ps(_mm256_add_ps(a, ve)));
    _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_loadu_ps(w + i), step));
  }
  return i;
}
#endif

// Start of the scalar tail: the AVX blocks for float, nothing for other types.
template <typename T>
int64_t adam_fast(T*, T*, T*, T*, const T*, int64_t, T, T, T, T) { return 0; }
template <typename T>
int64_t rmsprop_fast(T*, T*, T*, T*, const T*, int64_t, T, T, T, T) { return 0; }
template <typename T>
int64_t adagrad_fast(T*, T*, const T*, int64_t, T, T) { return 0; }
#ifdef FALTUNG_OPTIM_AVX
template <>
int64_t adam_fast<float>(float* w, float* m, float* v, float* vh, const float* g, int64_t n, float a,
                         float b1, float b2, float e) {
  return adam_avx(w, m, v, vh, g, n, a, b1, b2, e);
}
template <>
int64_t rmsprop_fast<float>(float* w, float* v, float* mo, float* av, const float* g, int64_t n, float lr,
                            float rho, float mom, float e) {
  return rmsprop_avx(w, v, mo, av, g, n, lr, rho, mom, e);
}
template <>
int64_t adagrad_fast<float>(float* w, float* acc, const float* g, int64_t n, float lr, float e) {
  return adagrad_avx(w, acc, g, n, lr, e);
}
#endif

}  // namespace

// w, g, m (n) -> w, m updated (GCC vectorizes these loops as written)
template <typename T>
void sgd_update(T* w, T* m, const T* g, int64_t n, T lr, T momentum, bool nesterov) {
  if (m == nullptr) {
    for (int64_t i = 0; i < n; ++i) w[i] -= lr * g[i];
  } else if (nesterov) {
    for (int64_t i = 0; i < n; ++i) {
      m[i] = momentum * m[i] - lr * g[i];
      w[i] += momentum * m[i] - lr * g[i];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      m[i] = momentum * m[i] - lr * g[i];
      w[i] += m[i];
    }
  }
}

// w, g, m, v, vhat (n) -> w, m, v, vhat updated
template <typename T>
void adam_update(T* w, T* m, T* v, T* vhat, const T* g, int64_t n, T alpha, T beta1, T beta2, T eps) {
  const int64_t b = adam_fast<T>(w, m, v, vhat, g, n, alpha, beta1, beta2, eps);
  adam_range<T>(w, m, v, vhat, g, b, n, alpha, beta1, beta2, eps);
}

// w, g, v, mom, avg (n) -> all updated
template <typename T>
void rmsprop_update(T* w, T* v, T* mom, T* avg, const T* g, int64_t n, T lr, T rho, T momentum, T eps) {
  const int64_t b = rmsprop_fast<T>(w, v, mom, avg, g, n, lr, rho, momentum, eps);
  rmsprop_range<T>(w, v, mom, avg, g, b, n, lr, rho, momentum, eps);
}

// w, g, acc (n) -> w, acc updated
template <typename T>
void adagrad_update(T* w, T* acc, const T* g, int64_t n, T lr, T eps) {
  const int64_t b = adagrad_fast<T>(w, acc, g, n, lr, eps);
  adagrad_range<T>(w, acc, g, b, n, lr, eps);
}

#define FALTUNG_OPTIM_INSTANTIATE(T)                                                           \
  template void sgd_update<T>(T*, T*, const T*, int64_t, T, T, bool);                          \
  template void adam_update<T>(T*, T*, T*, T*, const T*, int64_t, T, T, T, T);                 \
  template void rmsprop_update<T>(T*, T*, T*, T*, const T*, int64_t, T, T, T, T);              \
  template void adagrad_update<T>(T*, T*, const T*, int64_t, T, T);
FALTUNG_OPTIM_INSTANTIATE(float)
FALTUNG_OPTIM_INSTANTIATE(double)
#undef FALTUNG_OPTIM_INSTANTIATE

}  // namespace faltung
