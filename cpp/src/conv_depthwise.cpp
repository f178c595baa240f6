// Depthwise convolution (groups == C): direct NHWC loops, vectorized over the channels.
//
// N batch, H/W input size, C in-channels, m channel multiplier, K = C*m filters,
// KH/KW kernel, OH/OW output size. inp (N,H,W,C), weight (KH,KW,1,K) (Keras's depthwise
// kernel (KH,KW,C,m) reshaped), out (N,OH,OW,K). Output channel k = c*m + j reads input
// channel c = k / m:  out[n,oh,ow,k] = sum_{kh,kw} inp[n,ih,iw,k/m] * weight[kh,kw,k].
#include <omp.h>

#include <algorithm>
#include <vector>

#include "faltung/conv.hpp"

namespace faltung {

namespace {
// acc (K) += x (C) expanded by m, times w (K)
template <typename T>
inline void madd_expand(T* acc, const T* x, const T* w, int64_t C, int64_t m) {
  if (m == 1) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) acc[c] += x[c] * w[c];
  } else {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < m; ++j) acc[c * m + j] += x[c] * w[c * m + j];
  }
}
}  // namespace

// inp (N,H,W,C), weight (KH,KW,1,K), bias (K)|nullptr -> out (N,OH,OW,K). Parallel over (n, oh).
template <typename T>
void conv2d_depthwise_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                              bool relu) {
  const int64_t C = s.C, K = s.K, m = K / C;
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
  for (int64_t r = 0; r < s.N * s.OH; ++r) {
    const int64_t n = r / s.OH, oh = r % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      T* acc = out + (r * s.OW + ow) * K;
      if (bias)
        std::copy(bias, bias + K, acc);
      else
        std::fill(acc, acc + K, T(0));
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
        if (ih < 0 || ih >= s.H) continue;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
          if (iw < 0 || iw >= s.W) continue;
          madd_expand(acc, inp + ((n * s.H + ih) * s.W + iw) * C, weight + (kh * s.KW + kw) * K, C, m);
        }
      }
      if (relu)
        for (int64_t k = 0; k < K; ++k) acc[k] = acc[k] > T(0) ? acc[k] : T(0);
    }
  }
}

// dout (N,OH,OW,K), weight (KH,KW,1,K) -> dinp (N,H,W,C). Gather form of the forward line:
// dinp[n,ih,iw,c] = sum over (kh,kw) with ih = oh*sh - pt + kh*dh, iw likewise, of
// sum_j dout[n,oh,ow,c*m+j] * weight[kh,kw,c*m+j]. Parallel over input rows (n, ih).
template <typename T>
void conv2d_depthwise_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s) {
  const int64_t C = s.C, K = s.K, m = K / C;
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
  for (int64_t r = 0; r < s.N * s.H; ++r) {
    const int64_t n = r / s.H, ih = r % s.H;
    for (int64_t iw = 0; iw < s.W; ++iw) {
      T* acc = dinp + (r * s.W + iw) * C;
      std::fill(acc, acc + C, T(0));
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t th = ih + s.pad_top - kh * s.dil_h;  // = oh * stride_h
        if (th < 0 || th % s.stride_h) continue;
        const int64_t oh = th / s.stride_h;
        if (oh >= s.OH) continue;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t tw = iw + s.pad_left - kw * s.dil_w;
          if (tw < 0 || tw % s.stride_w) continue;
          const int64_t ow = tw / s.stride_w;
          if (ow >= s.OW) continue;
          const T* g = dout + ((n * s.OH + oh) * s.OW + ow) * K;
          const T* w = weight + (kh * s.KW + kw) * K;
          if (m == 1) {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) acc[c] += g[c] * w[c];
          } else {
            for (int64_t c = 0; c < C; ++c)
              for (int64_t j = 0; j < m; ++j) acc[c] += g[c * m + j] * w[c * m + j];
          }
        }
      }
    }
  }
}

// dout (N,OH,OW,K), inp (N,H,W,C) -> dweight (KH,KW,1,K): dweight[kh,kw,k] = sum over
// (n,oh,ow) of inp[n,ih,iw,k/m] * dout[n,oh,ow,k]. Per-thread partials over output rows
// (WorkspaceSlot::Partials), then summed.
template <typename T>
void conv2d_depthwise_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s) {
  const int64_t C = s.C, K = s.K, m = K / C, WK = s.KH * s.KW * K, rows = s.N * s.OH;
  std::fill(dweight, dweight + WK, T(0));
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(conv_threads(s), rows)));
  std::vector<T*> parts(nt, nullptr);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    T* acc = t == 0 ? dweight : workspace<T>(WK, WorkspaceSlot::Partials);
    if (t) std::fill(acc, acc + WK, T(0));
    parts[t] = acc;
    for (int64_t r = rows * t / nth; r < rows * (t + 1) / nth; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
        if (ih < 0 || ih >= s.H) continue;
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const T* g = dout + (r * s.OW + ow) * K;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
            if (iw < 0 || iw >= s.W) continue;
            madd_expand(acc + (kh * s.KW + kw) * K, inp + ((n * s.H + ih) * s.W + iw) * C, g, C, m);
          }
        }
      }
    }
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t e = 0; e < WK; ++e)
      for (int u = 1; u < nth; ++u) dweight[e] += parts[u][e];
  }
}

#define FALTUNG_CONV_DW(T)                                                                             \
  template void conv2d_depthwise_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&, bool); \
  template void conv2d_depthwise_backward_data<T>(T*, const T*, const T*, const Conv2dShape&);          \
  template void conv2d_depthwise_backward_filter<T>(T*, const T*, const T*, const Conv2dShape&);
FALTUNG_CONV_DW(float)
FALTUNG_CONV_DW(double)
#undef FALTUNG_CONV_DW

}  // namespace faltung
