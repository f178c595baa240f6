// Batch normalization over the last axis: R rows (all other axes), C channels.
// Reductions: OpenMP over blocks of rows, each thread sums into its own (C) slice of a
// double-precision partial buffer, the slices are reduced after the parallel region.
#include "faltung/normalization.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "faltung/common.hpp"

namespace faltung {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this many elements one thread is faster

int threads_for(int64_t n) { return n >= kParallelMin ? get_num_threads() : 1; }

// Rows [r0, r1) of thread t among nt.
inline void row_range(int64_t R, int t, int nt, int64_t& r0, int64_t& r1) {
  r0 = R * t / nt;
  r1 = R * (t + 1) / nt;
}

}  // namespace

// x (R,C) -> mean (C), var (C) biased. One pass of shifted sums in double: with
// k = x[0,:], S1 = sum (x - k), S2 = sum (x - k)^2, mean = k + S1/R, var = S2/R - (S1/R)^2.
// The shift keeps the cancellation small (x - k is of the order of the spread of x).
template <typename T>
void batch_norm_moments(T* mean, T* var, const T* x, int64_t R, int64_t C) {
  if (R <= 0) {
    for (int64_t c = 0; c < C; ++c) mean[c] = var[c] = T(0);
    return;
  }
  const int nt = threads_for(R * C);
  double* part = workspace<double>(2 * nt * C, WorkspaceSlot::NormPartials);  // (nt, 2, C): S1, S2
  double* sums = workspace<double>(3 * C, WorkspaceSlot::NormSums);
  double* k = sums + 2 * C;
  for (int64_t c = 0; c < C; ++c) k[c] = double(x[c]);
  int used = 1;
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    int64_t r0, r1;
    row_range(R, t, n, r0, r1);
    double* s1 = part + 2 * t * C;
    double* s2 = s1 + C;
    for (int64_t c = 0; c < 2 * C; ++c) s1[c] = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const T* x_r = x + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const double d = double(x_r[c]) - k[c];
        s1[c] += d;
        s2[c] += d * d;
      }
    }
    if (t == 0) used = n;  // the team may be smaller than asked
  }
  for (int64_t c = 0; c < 2 * C; ++c) sums[c] = 0.0;
  for (int t = 0; t < used; ++t)
    for (int64_t c = 0; c < 2 * C; ++c) sums[c] += part[2 * t * C + c];
  for (int64_t c = 0; c < C; ++c) {
    const double m1 = sums[c] / double(R);
    mean[c] = T(k[c] + m1);
    var[c] = T(std::max(sums[C + c] / double(R) - m1 * m1, 0.0));
  }
}

// x (R,C) -> y (R,C), inv_std (C) or nullptr.
template <typename T>
void batch_norm_forward(T* y, T* inv_std, const T* x, const T* mean, const T* var, const T* gamma,
                        const T* beta, T eps, int64_t R, int64_t C) {
  T* scale = workspace<T>(2 * C, WorkspaceSlot::NormScale);
  T* shift = scale + C;
  for (int64_t c = 0; c < C; ++c) {
    const T is = T(1) / std::sqrt(var[c] + eps);
    if (inv_std) inv_std[c] = is;
    scale[c] = (gamma ? gamma[c] : T(1)) * is;                 // y = x*scale + shift
    shift[c] = (beta ? beta[c] : T(0)) - mean[c] * scale[c];   //   = gamma*(x-mean)*is + beta
  }
  channel_affine<T>(y, x, scale, shift, R, C);
}

// x (R,C), scale (C), shift (C) or nullptr -> y (R,C).
template <typename T>
void channel_affine(T* y, const T* x, const T* scale, const T* shift, int64_t R, int64_t C) {
  const int nt = threads_for(R * C);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* x_r = x + r * C;
    T* y_r = y + r * C;
    if (shift)
      for (int64_t c = 0; c < C; ++c) y_r[c] = x_r[c] * scale[c] + shift[c];
    else
      for (int64_t c = 0; c < C; ++c) y_r[c] = x_r[c] * scale[c];
  }
}

// dy (R,C), x (R,C), mean, inv_std, gamma (C) -> dx (R,C), dgamma (C), dbeta (C).
template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                         const T* inv_std, const T* gamma, int64_t R, int64_t C) {
  const int nt = threads_for(R * C);
  // (nt, 2, C): sum dy, sum dy*x_hat
  double* part = workspace<double>(2 * nt * C, WorkspaceSlot::NormPartials);
  double* sums = workspace<double>(2 * C, WorkspaceSlot::NormSums);
  int used = 1;
  // Pass 1: dbeta = sum dy, dgamma = sum dy * x_hat.
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    int64_t r0, r1;
    row_range(R, t, n, r0, r1);
    double* sdy = part + 2 * t * C;
    double* sdyx = sdy + C;
    for (int64_t c = 0; c < 2 * C; ++c) sdy[c] = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const T* x_r = x + r * C;
      const T* dy_r = dy + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const T xh = (x_r[c] - mean[c]) * inv_std[c];
        sdy[c] += double(dy_r[c]);
        sdyx[c] += double(dy_r[c] * xh);
      }
    }
    if (t == 0) used = n;
  }
  for (int64_t c = 0; c < 2 * C; ++c) sums[c] = 0.0;
  for (int t = 0; t < used; ++t)
    for (int64_t c = 0; c < 2 * C; ++c) sums[c] += part[2 * t * C + c];
  const double* sdy = sums;
  const double* sdyx = sums + C;
  if (dbeta)
    for (int64_t c = 0; c < C; ++c) dbeta[c] = T(sdy[c]);
  if (dgamma)
    for (int64_t c = 0; c < C; ++c) dgamma[c] = T(sdyx[c]);
  if (!dx) return;
  // Pass 2: dx = gamma*inv_std * (dy - dbeta/R - x_hat * dgamma/R).
  T* k = workspace<T>(3 * C, WorkspaceSlot::NormScale);
  T* mb = k + C;  // dbeta / R
  T* mg = k + 2 * C;  // dgamma / R
  for (int64_t c = 0; c < C; ++c) {
    k[c] = (gamma ? gamma[c] : T(1)) * inv_std[c];
    mb[c] = T(sdy[c] / double(R));
    mg[c] = T(sdyx[c] / double(R));
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* x_r = x + r * C;
    const T* dy_r = dy + r * C;
    T* dx_r = dx + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const T xh = (x_r[c] - mean[c]) * inv_std[c];
      dx_r[c] = k[c] * (dy_r[c] - mb[c] - xh * mg[c]);
    }
  }
}

template <typename T>
void batch_norm_train_ref(T* y, T* mean, T* var, const T* x, const T* gamma, const T* beta, T eps,
                          int64_t R, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, ss = 0;
    for (int64_t r = 0; r < R; ++r) s += x[r * C + c];
    const double m = s / R;
    for (int64_t r = 0; r < R; ++r) ss += (x[r * C + c] - m) * (x[r * C + c] - m);
    const double v = ss / R;
    mean[c] = T(m);
    var[c] = T(v);
    for (int64_t r = 0; r < R; ++r)
      y[r * C + c] = T((gamma ? gamma[c] : 1) * (x[r * C + c] - m) / std::sqrt(v + eps) + (beta ? beta[c] : 0));
  }
}

template <typename T>
void batch_norm_backward_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* inv_std, const T* gamma, int64_t R, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    double sdy = 0, sdyx = 0;
    for (int64_t r = 0; r < R; ++r) {
      sdy += dy[r * C + c];
      sdyx += dy[r * C + c] * (x[r * C + c] - mean[c]) * inv_std[c];
    }
    if (dbeta) dbeta[c] = T(sdy);
    if (dgamma) dgamma[c] = T(sdyx);
    if (dx)
      for (int64_t r = 0; r < R; ++r) {
        const double xh = (x[r * C + c] - mean[c]) * inv_std[c];
        dx[r * C + c] = T((gamma ? gamma[c] : 1) * inv_std[c] * (dy[r * C + c] - sdy / R - xh * sdyx / R));
      }
  }
}

#define FALTUNG_BN_INSTANTIATE(T)                                                                     \
  template void batch_norm_moments<T>(T*, T*, const T*, int64_t, int64_t);                          \
  template void batch_norm_forward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, T,   \
                                      int64_t, int64_t);                                             \
  template void channel_affine<T>(T*, const T*, const T*, const T*, int64_t, int64_t);               \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                       int64_t, int64_t);                                            \
  template void batch_norm_train_ref<T>(T*, T*, T*, const T*, const T*, const T*, T, int64_t,        \
                                        int64_t);                                                    \
  template void batch_norm_backward_ref<T>(T*, T*, T*, const T*, const T*, const T*, const T*,       \
                                           const T*, int64_t, int64_t);
FALTUNG_BN_INSTANTIATE(float)
FALTUNG_BN_INSTANTIATE(double)
#undef FALTUNG_BN_INSTANTIATE

}  // namespace faltung
