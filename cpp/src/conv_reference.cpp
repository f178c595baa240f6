// Reference convolution: plain nested loops, the oracle of every other conv algorithm
// and the fallback for any shape. Also the bias gradient, which every algorithm shares.
//
// N batch, H/W input size, C in-channels, K filters, KH/KW kernel, OH/OW output size,
// G groups, Cg = C/G, Kg = K/G. inp (N,H,W,C), weight (KH,KW,Cg,K), out (N,OH,OW,K).
// Output (n,oh,ow,k) with g = k/Kg reads inp (n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw,
// g*Cg + c) times weight (kh,kw,c,k); reads outside the input are zeros.
#include <omp.h>

#include <algorithm>

#include "faltung/conv.hpp"

namespace faltung {

// inp (N,H,W,C), weight (KH,KW,Cg,K), bias (K)|nullptr -> out (N,OH,OW,K)
template <typename T>
void conv2d_reference_forward(T* out, const T* inp, const T* weight, const T* bias,
                              const Conv2dShape& s, bool relu) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        T* out_px = out + ((n * s.OH + oh) * s.OW + ow) * s.K;
        for (int64_t k = 0; k < s.K; ++k) {
          const int64_t g = k / Kg;
          T acc = bias ? bias[k] : T(0);
          for (int64_t kh = 0; kh < s.KH; ++kh) {
            const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
            if (ih < 0 || ih >= s.H) continue;
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
              if (iw < 0 || iw >= s.W) continue;
              const T* in_px = inp + ((n * s.H + ih) * s.W + iw) * s.C + g * Cg;
              const T* w_k = weight + (kh * s.KW + kw) * Cg * s.K + k;
              for (int64_t c = 0; c < Cg; ++c) acc += in_px[c] * w_k[c * s.K];
            }
          }
          out_px[k] = (relu && acc < T(0)) ? T(0) : acc;
        }
      }
  }
}

// dout (N,OH,OW,K), weight (KH,KW,Cg,K) -> dinp (N,H,W,C). Scatter of the forward line
// out[n,oh,ow,k] += inp[n,ih,iw,g*Cg+c] * w[kh,kw,c,k]; images are disjoint.
template <typename T>
void conv2d_reference_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
  for (int64_t n = 0; n < s.N; ++n) {
    T* dinp_n = dinp + n * s.H * s.W * s.C;
    std::fill(dinp_n, dinp_n + s.H * s.W * s.C, T(0));
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const T* dout_px = dout + ((n * s.OH + oh) * s.OW + ow) * s.K;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
          if (ih < 0 || ih >= s.H) continue;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
            if (iw < 0 || iw >= s.W) continue;
            T* din_px = dinp_n + (ih * s.W + iw) * s.C;
            const T* w_kk = weight + (kh * s.KW + kw) * Cg * s.K;
            for (int64_t k = 0; k < s.K; ++k) {
              const int64_t g = k / Kg;
              for (int64_t c = 0; c < Cg; ++c) din_px[g * Cg + c] += dout_px[k] * w_kk[c * s.K + k];
            }
          }
        }
      }
  }
}

// dout (N,OH,OW,K), inp (N,H,W,C) -> dweight (KH,KW,Cg,K). Each weight element is
// independent: parallel over (kh, kw).
template <typename T>
void conv2d_reference_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
  for (int64_t khw = 0; khw < s.KH * s.KW; ++khw) {
    const int64_t kh = khw / s.KW, kw = khw % s.KW;
    T* dw_kk = dweight + khw * Cg * s.K;
    std::fill(dw_kk, dw_kk + Cg * s.K, T(0));
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
        if (ih < 0 || ih >= s.H) continue;
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
          if (iw < 0 || iw >= s.W) continue;
          const T* dout_px = dout + ((n * s.OH + oh) * s.OW + ow) * s.K;
          const T* in_px = inp + ((n * s.H + ih) * s.W + iw) * s.C;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t k = 0; k < s.K; ++k) dw_kk[c * s.K + k] += in_px[(k / Kg) * Cg + c] * dout_px[k];
        }
      }
  }
}

#define FALTUNG_CONV_REF(T)                                                                      \
  template void conv2d_reference_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&, \
                                            bool);                                              \
  template void conv2d_reference_backward_data<T>(T*, const T*, const T*, const Conv2dShape&);   \
  template void conv2d_reference_backward_filter<T>(T*, const T*, const T*, const Conv2dShape&);
FALTUNG_CONV_REF(float)
FALTUNG_CONV_REF(double)
#undef FALTUNG_CONV_REF

}  // namespace faltung
