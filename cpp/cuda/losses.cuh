// cpp/cuda/losses.cuh — what a device-resident functional model needs beyond the layers (see
// hd.cuh for the design): the losses of faltung.losses as per-row bodies, the plumbing of a
// graph (copies into and out of a stacked buffer, the sum of two gradients) and the optimizer's
// gradient clipping (norms reduced on the device, gradients scaled or clipped in place).
// Oracles: faltung/_loss_math.py (the loss formulas, whose order of operations the bodies keep)
// and faltung/optimizers/base.py (_clip).
// R rows (the samples, or every position of a sequence output), K the reduced (last) axis,
// n elements of one array, S partial sums of a reduction.
#pragma once
#include <cstdint>

#include "activations.cuh"
#include "hd.cuh"

namespace faltung::cuda::loss {

FALTUNG_HD inline float l_log1p(float x) { return log1pf(x); }
FALTUNG_HD inline double l_log1p(double x) { return log1p(x); }
template <typename T> FALTUNG_HD inline T l_abs(T x) { return x < T(0) ? -x : x; }
template <typename T> FALTUNG_HD inline T l_sign(T x) { return x > T(0) ? T(1) : x < T(0) ? T(-1) : T(0); }
template <typename T> FALTUNG_HD inline bool l_finite(T x) { return x - x == T(0); }  // NaN, inf: NaN

// The losses, each as its formula in _loss_math.py (per row: value, and dvalue/dpred):
//   softmax_xent  logits, targets t: sum(t) lse(x) - sum(t x); g = softmax(x) sum(t) - t
//   probs_xent    probabilities p: q = p / sum(p), qc = clip(q, eps, 1 - eps), -sum(t log qc);
//                 gq = -t / qc (0 where q was clipped), g = (gq - sum(gq q)) / sum(p)
//   bce_logits    mean(max(x, 0) - x t + log1p(exp(-|x|))); g = (sigmoid(x) - t) / K
//   bce_probs     pc = clip(p, eps, 1 - eps), mean(-(t log pc + (1 - t) log(1 - pc)));
//                 g = -(t / pc - (1 - t) / (1 - pc)) / K (0 where p was clipped)
//   mse, mae      mean(d^2), mean(|d|) with d = p - t; g = 2 d / K, sign(d) / K
//   huber         mean(|d| <= delta ? d^2 / 2 : delta |d| - delta^2 / 2); g = (|d| <= delta ? d :
//                 delta sign(d)) / K
enum class Kind : int32_t { softmax_xent, probs_xent, bce_logits, bce_probs, mse, mae, huber };

constexpr double kEps = 1e-7;  // faltung.losses.EPSILON (Keras's clip of probabilities)

// pred (R,K) and targets: dense (R,K), or labels (R) int32 (one-hot rows) when target is null;
// the targets enter as t tmul + tadd (label smoothing: tmul = 1 - ls, tadd = ls / K for the
// crossentropies, ls / 2 for the binary one). -> values (R), grad (R,K) (or null) times
// scale (row_scale[r] scale when row_scale is given: sample weights).
template <typename T>
struct RowLoss {
  T *values, *grad;
  const T *pred, *target;
  const int32_t* labels;
  const T* row_scale;
  T scale, tmul, tadd, delta;
  int64_t R, K;
  Kind kind;

  FALTUNG_HD T t_at(int64_t r, int64_t k) const {
    const T base = target ? target[r * K + k] : T(labels[r] == k ? 1 : 0);
    return tmul == T(1) && tadd == T(0) ? base : base * tmul + tadd;
  }
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= R) return;
    const T* p = pred + r * K;
    T* g = grad ? grad + r * K : nullptr;
    const T s = row_scale ? row_scale[r] * scale : scale;
    const T lo = T(kEps), hi = T(1.0 - kEps);
    T v = 0;
    switch (kind) {
      case Kind::softmax_xent: {
        const T lse = act::row_logsumexp(p, K);
        T tsum = 0, tx = 0;
        for (int64_t k = 0; k < K; ++k) tsum += t_at(r, k), tx += t_at(r, k) * p[k];
        v = tsum * lse - tx;
        if (g)
          for (int64_t k = 0; k < K; ++k) g[k] = s * (hd_exp(p[k] - lse) * tsum - t_at(r, k));
        break;
      }
      case Kind::probs_xent: {
        T sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += p[k];
        for (int64_t k = 0; k < K; ++k) {
          const T q = p[k] / sum, qc = q < lo ? lo : q > hi ? hi : q;
          v -= t_at(r, k) * hd_log(qc);
        }
        if (!g) break;
        T dot = 0;  // sum(gq q)
        for (int64_t k = 0; k < K; ++k) {
          const T q = p[k] / sum, qc = q < lo ? lo : q > hi ? hi : q;
          g[k] = q < lo || q > hi ? T(0) : -t_at(r, k) / qc;
          dot += g[k] * q;
        }
        for (int64_t k = 0; k < K; ++k) g[k] = s * ((g[k] - dot) / sum);
        break;
      }
      case Kind::bce_logits:
        for (int64_t k = 0; k < K; ++k) {
          const T x = p[k], t = t_at(r, k);
          v += (x > T(0) ? x : T(0)) - x * t + l_log1p(hd_exp(-l_abs(x)));
          if (g) g[k] = s * ((T(1) / (T(1) + hd_exp(-x)) - t) / T(K));
        }
        v = v / T(K);
        break;
      case Kind::bce_probs:
        for (int64_t k = 0; k < K; ++k) {
          const T x = p[k], t = t_at(r, k), pc = x < lo ? lo : x > hi ? hi : x;
          v += -(t * hd_log(pc) + (T(1) - t) * hd_log(T(1) - pc));
          if (g) g[k] = x < lo || x > hi ? T(0) : s * (-(t / pc - (T(1) - t) / (T(1) - pc)) / T(K));
        }
        v = v / T(K);
        break;
      case Kind::mse:
      case Kind::mae:
      case Kind::huber:
        for (int64_t k = 0; k < K; ++k) {
          const T d = p[k] - t_at(r, k), a = l_abs(d);
          T dv;
          if (kind == Kind::mse) v += d * d, dv = T(2) * d;
          else if (kind == Kind::mae) v += a, dv = l_sign(d);
          else if (a <= delta) v += T(0.5) * d * d, dv = d;
          else v += delta * a - T(0.5) * delta * delta, dv = delta * l_sign(d);
          if (g) g[k] = s * (dv / T(K));
        }
        v = v / T(K);
        break;
    }
    values[r] = v;
  }
};

template <class Exec, typename T>
void row_loss(Exec& ex, const RowLoss<T>& body, int64_t block) {
  ex.launch(cover(body.K > 0 ? body.R : 0, block), body);
}

// ---- graph plumbing ---------------------------------------------------------------------------
// dst[dst_off + i] = src[src_off + i] for i < n (stacking a merge's inputs, splitting its
// gradients). Thread per element.
template <typename T>
struct Copy {
  T* dst;
  const T* src;
  int64_t n;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < n) dst[i] = src[i];
  }
};
// y = a + b (the gradients of a tensor read by several layers, or of a weight used twice).
template <typename T>
struct Add {
  T* y;
  const T *a, *b;
  int64_t n;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < n) y[i] = a[i] + b[i];
  }
};

template <class Exec, typename T>
void copy(Exec& ex, T* dst, const T* src, int64_t n, int64_t block) {
  ex.launch(cover(n, block), Copy<T>{dst, src, n});
}
template <class Exec, typename T>
void add(Exec& ex, T* y, const T* a, const T* b, int64_t n, int64_t block) {
  ex.launch(cover(n, block), Add<T>{y, a, b, n});
}

// ---- gradient clipping ------------------------------------------------------------------------
// The sum of squares of x (n): S threads, thread j sums x[j], x[j + S], ... (coalesced), then one
// thread sums the S partials into *out. part holds S elements.
template <typename T>
struct SumSqPartial {
  T* part;
  const T* x;
  int64_t n, S;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t j = th.global();
    if (j >= S) return;
    T acc = 0;
    for (int64_t i = j; i < n; i += S) acc += x[i] * x[i];
    part[j] = acc;
  }
};
template <typename T>
struct SumParts {
  T* out;
  const T* part;
  int64_t S;
  FALTUNG_HD void operator()(Thread th) const {
    if (th.global() != 0) return;
    T acc = 0;
    for (int64_t j = 0; j < S; ++j) acc += part[j];
    *out = acc;
  }
};
inline int64_t sumsq_parts(int64_t n) { return n < 1024 ? (n > 0 ? n : 1) : 1024; }

// The factor a gradient is multiplied by: *factor = c / norm where norm = sqrt(sum of sumsq[0..m))
// exceeds c, 1 otherwise; when `global` (global_clipnorm) a non-finite norm gives NaN, as
// base.py's _clip (clipnorm leaves a gradient with a NaN norm unchanged, as its comparison does).
template <typename T>
struct NormFactor {
  T* factor;
  const T* sumsq;
  int64_t m;
  T c;
  bool global;
  FALTUNG_HD void operator()(Thread th) const {
    if (th.global() != 0) return;
    T acc = 0;
    for (int64_t j = 0; j < m; ++j) acc += sumsq[j];
    const T norm = hd_sqrt(acc);
    if (global && !l_finite(norm)) *factor = T(0) / T(0);
    else *factor = norm > c ? c / norm : T(1);
  }
};
// x *= *factor (in place); clip_value: x = clip(x, -c, c), NaN kept.
template <typename T>
struct ScaleBy {
  T* x;
  const T* factor;
  int64_t n;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < n) x[i] = x[i] * *factor;
  }
};
template <typename T>
struct ClipValue {
  T* x;
  T c;
  int64_t n;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= n) return;
    const T v = x[i];
    x[i] = v != v ? v : v < -c ? -c : v > c ? c : v;
  }
};

// *out = sum of squares of x (n); part holds sumsq_parts(n) elements.
template <class Exec, typename T>
void sum_squares(Exec& ex, T* out, T* part, const T* x, int64_t n, int64_t block) {
  const int64_t S = sumsq_parts(n);
  ex.launch(cover(S, block), SumSqPartial<T>{part, x, n, S});
  ex.launch(Geometry{1, 1}, SumParts<T>{out, part, S});
}
template <class Exec, typename T>
void norm_factor(Exec& ex, T* factor, const T* sumsq, int64_t m, T c, bool global) {
  ex.launch(Geometry{1, 1}, NormFactor<T>{factor, sumsq, m, c, global});
}
template <class Exec, typename T>
void scale_by(Exec& ex, T* x, const T* factor, int64_t n, int64_t block) {
  ex.launch(cover(n, block), ScaleBy<T>{x, factor, n});
}
template <class Exec, typename T>
void clip_value(Exec& ex, T* x, T c, int64_t n, int64_t block) {
  ex.launch(cover(n, block), ClipValue<T>{x, c, n});
}

}  // namespace faltung::cuda::loss
