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

// ---- beyond SGD/Adam: RMSprop, Adagrad (oracle: the fused CPU kernels of cpp/src/optim.cpp),
// Adamax and the decoupled weight decay of AdamW & co. (oracle: python/faltung/optimizers,
// which has no fused CPU kernel for them). Thread per element, in place.

// w, v, g (n), mom (n) or nullptr (momentum 0), avg (n) or nullptr (not centered).
template <typename T>
struct Rmsprop {
  T *w, *v, *mom, *avg;
  const T* g;
  int64_t n;
  T lr, rho, momentum, eps;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= n) return;
    const T gi = g[i], c = T(1) - rho;
    v[i] = rho * v[i] + c * gi * gi;
    T den = v[i] + eps;
    if (avg != nullptr) {
      avg[i] = rho * avg[i] + c * gi;
      den = v[i] - avg[i] * avg[i] + eps;
    }
    const T inc = lr * gi / hd_sqrt(den);
    if (mom != nullptr) {
      mom[i] = momentum * mom[i] + inc;
      w[i] -= mom[i];
    } else {
      w[i] -= inc;
    }
  }
};

// w, acc, g (n): acc += g^2; w -= lr g / sqrt(acc + eps)
template <typename T>
struct Adagrad {
  T *w, *acc;
  const T* g;
  int64_t n;
  T lr, eps;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= n) return;
    acc[i] += g[i] * g[i];
    w[i] -= lr * g[i] / hd_sqrt(acc[i] + eps);
  }
};

// w, m, u, g (n); c = lr / (1 - beta1^t) (the caller's step count):
// m += (g - m)(1 - beta1); u = max(beta2 u, |g|); w -= (m / (u + eps)) c  (the numpy order)
template <typename T>
struct Adamax {
  T *w, *m, *u;
  const T* g;
  int64_t n;
  T c, beta1, beta2, eps;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= n) return;
    const T gi = g[i], ag = gi < T(0) ? -gi : gi;
    m[i] += (gi - m[i]) * (T(1) - beta1);
    const T ui = beta2 * u[i];
    u[i] = ui < ag ? ag : ui;  // np.maximum(u, |g|), u first
    w[i] -= (m[i] / (u[i] + eps)) * c;
  }
};

// w (n) *= factor, factor = 1 - weight_decay * lr (the optimizers' decoupled decay, base.py).
template <typename T>
struct Scale {
  T* w;
  int64_t n;
  T factor;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < n) w[i] *= factor;
  }
};

template <class Exec, typename T>
void rmsprop_update(Exec& ex, T* w, T* v, T* mom, T* avg, const T* g, int64_t n, T lr, T rho, T momentum, T eps,
                    int64_t block) {
  ex.launch(cover(n, block), Rmsprop<T>{w, v, mom, avg, g, n, lr, rho, momentum, eps});
}
template <class Exec, typename T>
void adagrad_update(Exec& ex, T* w, T* acc, const T* g, int64_t n, T lr, T eps, int64_t block) {
  ex.launch(cover(n, block), Adagrad<T>{w, acc, g, n, lr, eps});
}
template <class Exec, typename T>
void adamax_update(Exec& ex, T* w, T* m, T* u, const T* g, int64_t n, T c, T beta1, T beta2, T eps,
                   int64_t block) {
  ex.launch(cover(n, block), Adamax<T>{w, m, u, g, n, c, beta1, beta2, eps});
}
template <class Exec, typename T>
void weight_decay(Exec& ex, T* w, int64_t n, T factor, int64_t block) {
  ex.launch(cover(n, block), Scale<T>{w, n, factor});
}

}  // namespace faltung::cuda::optim
