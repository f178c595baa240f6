// cpp/cuda/normalization.cuh — BatchNormalization over the last axis (NHWC: channels last) as
// kernel bodies and launch sequences (see hd.cuh for the design): training forward (batch
// moments, the moving-average update, y), inference forward (the moving statistics), and the
// backward of both (dx, dgamma, dbeta). Oracles: cpp/src/normalization.cpp (batch_norm_moments,
// batch_norm_forward, batch_norm_backward) and python/faltung/layers/normalization/
// batch_normalization.py (the moving update, the inference scale/shift and its backward).
//
// R rows (N*H*W), C channels; x, y, dy, dx (R,C); the rest (C).
// The per-channel reductions run as the CPU's: in double, the moments as shifted sums
// (k = x[0,c]: S1 = sum (x - k), S2 = sum (x - k)^2, mean = k + S1/R, var = max(S2/R - (S1/R)^2, 0)),
// the backward's sum dy and sum dy * x_hat (x_hat rounded in T first). A block owns kChan
// adjacent channels (a warp reads kChan adjacent addresses of a row) and kGroups row groups:
// thread (g, c) sums rows g, g + kGroups, ...; a second step adds the groups' partials.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::bn {

constexpr int64_t kChan = 32, kGroups = 8, kBlock = kChan * kGroups;

struct Partials {
  double s1[kGroups][kChan], s2[kGroups][kChan];
};

inline Geometry channel_blocks(int64_t C) { return Geometry{ceil_div(C, kChan), kBlock}; }

// Training forward, per channel: mean, var (biased), inv_std = 1/sqrt(var + eps),
// scale = gamma inv_std, shift = beta - mean scale (ws: scale (C), shift (C));
// moving = moving momentum + batch (1 - momentum) (Keras's; both may be nullptr).
// gamma, beta may be nullptr (1, 0). R = 0 gives mean = var = 0, as the CPU.
template <typename T>
struct Moments {
  T *mean, *var, *inv_std, *scale, *shift, *moving_mean, *moving_var;
  const T *x, *gamma, *beta;
  T eps, momentum;
  int64_t R, C;
  using Shared = Partials;
  FALTUNG_HD void step(int64_t s, Thread th, Shared& sh) const {
    const int64_t g = th.thread / kChan, cl = th.thread % kChan, c = th.block * kChan + cl;
    if (c >= C) return;
    if (s == 0) {
      double s1 = 0, s2 = 0;
      const double k = R > 0 ? double(x[c]) : 0.0;
      for (int64_t r = g; r < R; r += kGroups) {
        const double d = double(x[r * C + c]) - k;
        s1 += d;
        s2 += d * d;
      }
      sh.s1[g][cl] = s1;
      sh.s2[g][cl] = s2;
      return;
    }
    if (g != 0) return;
    double s1 = 0, s2 = 0;
    for (int64_t q = 0; q < kGroups; ++q) s1 += sh.s1[q][cl], s2 += sh.s2[q][cl];
    T m = 0, v = 0;
    if (R > 0) {
      const double m1 = s1 / double(R), v1 = s2 / double(R) - m1 * m1;
      m = T(double(x[c]) + m1);
      v = T(v1 > 0.0 ? v1 : 0.0);
    }
    mean[c] = m;
    var[c] = v;
    const T is = T(1) / hd_sqrt(v + eps);
    inv_std[c] = is;
    scale[c] = (gamma ? gamma[c] : T(1)) * is;
    shift[c] = (beta ? beta[c] : T(0)) - m * scale[c];
    if (moving_mean) moving_mean[c] = moving_mean[c] * momentum + m * (T(1) - momentum);
    if (moving_var) moving_var[c] = moving_var[c] * momentum + v * (T(1) - momentum);
  }
};

// Inference, per channel: inv = 1/sqrt(moving_var + eps), scale = gamma inv, shift = beta -
// moving_mean scale (the layer's float arithmetic); inv_std (C) or nullptr receives inv.
template <typename T>
struct InferenceAffine {
  T *scale, *shift, *inv_std;
  const T *gamma, *beta, *moving_mean, *moving_var;
  T eps;
  int64_t C;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t c = th.global();
    if (c >= C) return;
    const T inv = T(1) / hd_sqrt(moving_var[c] + eps);
    if (inv_std) inv_std[c] = inv;
    scale[c] = gamma ? gamma[c] * inv : inv;
    shift[c] = (beta ? beta[c] : T(0)) - moving_mean[c] * scale[c];
  }
};

// y (R,C) = x scale[c] + shift[c] (shift nullptr: 0). Thread per element.
template <typename T>
struct Affine {
  T* y;
  const T *x, *scale, *shift;
  int64_t R, C;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= R * C) return;
    const int64_t c = i % C;
    y[i] = shift ? x[i] * scale[c] + shift[c] : x[i] * scale[c];
  }
};

// Backward reductions, per channel: dbeta = sum dy, dgamma = sum dy x_hat with
// x_hat = (x - mean) inv_std; then the dx coefficients k = gamma inv_std, mb = dbeta/R,
// mg = dgamma/R (ws: k, mb, mg (C) each). dgamma, dbeta may be nullptr.
template <typename T>
struct BackwardSums {
  T *dgamma, *dbeta, *k, *mb, *mg;
  const T *dy, *x, *mean, *inv_std, *gamma;
  int64_t R, C;
  using Shared = Partials;
  FALTUNG_HD void step(int64_t s, Thread th, Shared& sh) const {
    const int64_t g = th.thread / kChan, cl = th.thread % kChan, c = th.block * kChan + cl;
    if (c >= C) return;
    if (s == 0) {
      double sdy = 0, sdyx = 0;
      for (int64_t r = g; r < R; r += kGroups) {
        const T xh = (x[r * C + c] - mean[c]) * inv_std[c];
        sdy += double(dy[r * C + c]);
        sdyx += double(dy[r * C + c] * xh);
      }
      sh.s1[g][cl] = sdy;
      sh.s2[g][cl] = sdyx;
      return;
    }
    if (g != 0) return;
    double sdy = 0, sdyx = 0;
    for (int64_t q = 0; q < kGroups; ++q) sdy += sh.s1[q][cl], sdyx += sh.s2[q][cl];
    if (dbeta) dbeta[c] = T(sdy);
    if (dgamma) dgamma[c] = T(sdyx);
    k[c] = (gamma ? gamma[c] : T(1)) * inv_std[c];
    mb[c] = R > 0 ? T(sdy / double(R)) : T(0);
    mg[c] = R > 0 ? T(sdyx / double(R)) : T(0);
  }
};

// dx (R,C) = k[c] (dy - mb[c] - x_hat mg[c]). Thread per element.
template <typename T>
struct BackwardDx {
  T* dx;
  const T *dy, *x, *mean, *inv_std, *k, *mb, *mg;
  int64_t R, C;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= R * C) return;
    const int64_t c = i % C;
    const T xh = (x[i] - mean[c]) * inv_std[c];
    dx[i] = k[c] * (dy[i] - mb[c] - xh * mg[c]);
  }
};

// Workspace (elements of T) the launch sequences below need.
inline int64_t workspace_size(int64_t C) { return 3 * C; }

// x (R,C) -> y, mean, var, inv_std; moving_mean/var updated in place (or nullptr). ws (3C).
template <class Exec, typename T>
void train_forward(Exec& ex, T* y, T* mean, T* var, T* inv_std, T* moving_mean, T* moving_var, const T* x,
                   const T* gamma, const T* beta, T eps, T momentum, int64_t R, int64_t C, T* ws, int64_t block) {
  T *scale = ws, *shift = ws + C;
  ex.launch_shared(channel_blocks(C), 2,
                   Moments<T>{mean, var, inv_std, scale, shift, moving_mean, moving_var, x, gamma, beta, eps,
                              momentum, R, C});
  ex.launch(cover(R * C, block), Affine<T>{y, x, scale, shift, R, C});
}

// x (R,C) -> y with the moving statistics; inv_std (C) or nullptr. ws (3C).
template <class Exec, typename T>
void inference_forward(Exec& ex, T* y, T* inv_std, const T* x, const T* gamma, const T* beta,
                       const T* moving_mean, const T* moving_var, T eps, int64_t R, int64_t C, T* ws,
                       int64_t block) {
  T *scale = ws, *shift = ws + C;
  ex.launch(cover(C, block), InferenceAffine<T>{scale, shift, inv_std, gamma, beta, moving_mean, moving_var, eps, C});
  ex.launch(cover(R * C, block), Affine<T>{y, x, scale, shift, R, C});
}

// Training backward (mean, inv_std the batch's) or, with `inference`, the backward of
// y = x scale + shift with the moving statistics (mean = moving_mean, inv_std = its inv):
// dx = dy gamma inv, dgamma = sum dy x_hat, dbeta = sum dy. dx, dgamma, dbeta may be nullptr.
template <class Exec, typename T>
void backward(Exec& ex, T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean, const T* inv_std,
              const T* gamma, bool inference, int64_t R, int64_t C, T* ws, int64_t block) {
  T *k = ws, *mb = ws + C, *mg = ws + 2 * C;
  ex.launch_shared(channel_blocks(C), 2, BackwardSums<T>{dgamma, dbeta, k, mb, mg, dy, x, mean, inv_std, gamma, R, C});
  if (!dx) return;
  if (inference)
    ex.launch(cover(R * C, block), Affine<T>{dx, dy, k, nullptr, R, C});
  else
    ex.launch(cover(R * C, block), BackwardDx<T>{dx, dy, x, mean, inv_std, k, mb, mg, R, C});
}

}  // namespace faltung::cuda::bn
