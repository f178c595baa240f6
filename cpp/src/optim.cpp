// Fused optimizer updates (see faltung/optim.hpp). n = elements of one variable.
// One pass over each variable, single-threaded: the update is memory-bound (one core
// streams ~1M parameters in well under a millisecond) and a parallel region per variable
// costs more than it saves on a shared 2-core machine.
// The generic loops are the reference. GCC does not vectorize std::sqrt unless
// -fno-math-errno is set, so the float kernels that divide by a square root have a version
// over simd.hpp's vectors (the register width of the CPU level); tails run the scalar loop.
#include "faltung/optim.hpp"

#include <algorithm>
#include <cmath>

#include "simd.hpp"

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

// ---- float versions over whole vectors (simd.hpp: 4, 8 or 16 lanes, whichever the CPU
// level has); they return where the scalar tail starts ----------------------------------

using FV = simd::Vec<float>::type;
constexpr int kFW = simd::Vec<float>::width;

int64_t adam_vec(float* w, float* m, float* v, float* vhat, const float* g, int64_t n, float alpha,
                 float beta1, float beta2, float eps) {
  const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
  int64_t i = 0;
  for (; i + kFW <= n; i += kFW) {
    const FV gi = simd::load<FV>(g + i);
    FV mi = simd::load<FV>(m + i), vi = simd::load<FV>(v + i);
    mi += (gi - mi) * c1;  // m += (g - m) c1
    vi += (gi * gi - vi) * c2;  // v += (g^2 - v) c2
    simd::store(m + i, mi);
    simd::store(v + i, vi);
    if (vhat != nullptr) {
      const FV h = simd::load<FV>(vhat + i);
      vi = h > vi ? h : vi;
      simd::store(vhat + i, vi);
    }
    simd::store(w + i, simd::load<FV>(w + i) - alpha * mi / (simd::sqrt(vi) + eps));  // w -= alpha m / (sqrt v + eps)
  }
  return i;
}

int64_t rmsprop_vec(float* w, float* v, float* mom, float* avg, const float* g, int64_t n, float lr,
                    float rho, float momentum, float eps) {
  const float c = 1.0f - rho;
  int64_t i = 0;
  for (; i + kFW <= n; i += kFW) {
    const FV gi = simd::load<FV>(g + i);
    const FV vi = rho * simd::load<FV>(v + i) + c * (gi * gi);
    simd::store(v + i, vi);  // v = rho v + (1 - rho) g^2
    FV den = vi + eps;
    if (avg != nullptr) {
      const FV ai = rho * simd::load<FV>(avg + i) + c * gi;
      simd::store(avg + i, ai);
      den = vi - ai * ai + eps;  // v - avg^2 + eps
    }
    FV inc = lr * gi / simd::sqrt(den);
    if (mom != nullptr) {
      inc = momentum * simd::load<FV>(mom + i) + inc;
      simd::store(mom + i, inc);  // mom = momentum mom + inc
    }
    simd::store(w + i, simd::load<FV>(w + i) - inc);
  }
  return i;
}

int64_t adagrad_vec(float* w, float* acc, const float* g, int64_t n, float lr, float eps) {
  int64_t i = 0;
  for (; i + kFW <= n; i += kFW) {
    const FV gi = simd::load<FV>(g + i);
    const FV a = gi * gi + simd::load<FV>(acc + i);
    simd::store(acc + i, a);  // acc += g^2
    simd::store(w + i, simd::load<FV>(w + i) - lr * gi / simd::sqrt(a + eps));
  }
  return i;
}

// Start of the scalar tail: the vector blocks for float, nothing for other types.
template <typename T>
int64_t adam_fast(T*, T*, T*, T*, const T*, int64_t, T, T, T, T) { return 0; }
template <typename T>
int64_t rmsprop_fast(T*, T*, T*, T*, const T*, int64_t, T, T, T, T) { return 0; }
template <typename T>
int64_t adagrad_fast(T*, T*, const T*, int64_t, T, T) { return 0; }
template <>
int64_t adam_fast<float>(float* w, float* m, float* v, float* vh, const float* g, int64_t n, float a,
                         float b1, float b2, float e) {
  return adam_vec(w, m, v, vh, g, n, a, b1, b2, e);
}
template <>
int64_t rmsprop_fast<float>(float* w, float* v, float* mo, float* av, const float* g, int64_t n, float lr,
                            float rho, float mom, float e) {
  return rmsprop_vec(w, v, mo, av, g, n, lr, rho, mom, e);
}
template <>
int64_t adagrad_fast<float>(float* w, float* acc, const float* g, int64_t n, float lr, float e) {
  return adagrad_vec(w, acc, g, n, lr, e);
}

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
