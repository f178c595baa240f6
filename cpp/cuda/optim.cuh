// cpp/cuda/optim.cuh — the optimizers' fused updates as kernel bodies (thread per element) and
// launch sequences (see hd.cuh for the design). Oracle: cpp/src/optim.cpp; the formulas are
// faltung/optim.hpp's (Keras 3's). n elements of one variable, all updated in place.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::optim {

// w, g (n), m (n) or nullptr (momentum 0).
template <typename T>
struct Sgd {
  T *w, *m;
  const T* g;
  int64_t n;
  T lr, momentum;
  bool nesterov;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= n) return;
    if (m == nullptr) {
      w[i] -= lr * g[i];
      return;
    }
    m[i] = momentum * m[i] - lr * g[i];
    w[i] += nesterov ? momentum * m[i] - lr * g[i] : m[i];
  }
};

// w, m, v, g (n), vhat (n) or nullptr (amsgrad off); alpha the bias-corrected rate.
template <typename T>
struct Adam {
  T *w, *m, *v, *vhat;
  const T* g;
  int64_t n;
  T alpha, beta1, beta2, eps;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= n) return;
    const T gi = g[i];
    m[i] += (gi - m[i]) * (T(1) - beta1);
    v[i] += (gi * gi - v[i]) * (T(1) - beta2);
    T vi = v[i];
    if (vhat != nullptr) vi = vhat[i] = hd_max(vhat[i], vi);
    w[i] -= alpha * m[i] / (hd_sqrt(vi) + eps);
  }
};

template <class Exec, typename T>
void sgd_update(Exec& ex, T* w, T* m, const T* g, int64_t n, T lr, T momentum, bool nesterov, int64_t block) {
  ex.launch(cover(n, block), Sgd<T>{w, m, g, n, lr, momentum, nesterov});
}
template <class Exec, typename T>
void adam_update(Exec& ex, T* w, T* m, T* v, T* vhat, const T* g, int64_t n, T alpha, T beta1, T beta2,
                 T eps, int64_t block) {
  ex.launch(cover(n, block), Adam<T>{w, m, v, vhat, g, n, alpha, beta1, beta2, eps});
}

}  // namespace faltung::cuda::optim
