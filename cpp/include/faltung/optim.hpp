// faltung/optim.hpp — fused optimizer updates: one pass over a variable per step.
// n = number of elements of one variable (flattened); w the variable, g its gradient,
// the other arrays the optimizer's per-variable state (same n). All update in place.
// Formulas are Keras 3's (keras/src/optimizers/*.py); the numpy versions in
// python/faltung/optimizers/rules.py are the reference.
#pragma once
#include <cstdint>

namespace faltung {

// w, g, m (n); m == nullptr when momentum == 0.
// m = momentum * m - lr * g; w += m (nesterov: w += momentum * m - lr * g); no m: w -= lr * g
template <typename T>
void sgd_update(T* w, T* m, const T* g, int64_t n, T lr, T momentum, bool nesterov);

// w, g, m, v (n), vhat (n) or nullptr (amsgrad off). alpha = lr * sqrt(1 - b2^t) / (1 - b1^t):
// m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); vhat = max(vhat, v); w -= alpha * m / (sqrt(v|vhat) + eps)
template <typename T>
void adam_update(T* w, T* m, T* v, T* vhat, const T* g, int64_t n, T alpha, T beta1, T beta2, T eps);

// w, g, v (n), mom (n) or nullptr (momentum 0), avg (n) or nullptr (not centered).
// v = rho v + (1 - rho) g^2; den = v (- avg^2 if centered, avg = rho avg + (1 - rho) g) + eps;
// inc = lr g / sqrt(den); mom = momentum mom + inc, w -= mom (or w -= inc)
template <typename T>
void rmsprop_update(T* w, T* v, T* mom, T* avg, const T* g, int64_t n, T lr, T rho, T momentum, T eps);

// w, g, acc (n): acc += g^2; w -= lr g / sqrt(acc + eps)
template <typename T>
void adagrad_update(T* w, T* acc, const T* g, int64_t n, T lr, T eps);

}  // namespace faltung
