// cpp/cuda/conv.cuh — 2D convolution over NHWC images as implicit GEMM, forward and backward,
// as kernel bodies and launch sequences (see hd.cuh for the design). Oracles: cpp/src/conv*.cpp
// (conv2d_forward / conv2d_backward) and cpp/src/conv_transpose.cpp. Geometry and layouts are
// faltung/conv_shape.hpp's: inp (N,H,W,C), weight (KH,KW,Cg,K) as Keras, out (N,OH,OW,K),
// G groups with Cg = C/G and Kg = K/G channels per group (G == C is depthwise: Keras's
// depthwise kernel (KH,KW,C,m) is this layout with Cg = 1, K = C*m). Output pixel (oh, ow)
// reads input row oh*stride_h - pad_top + kh*dil_h (same for w); reads outside the image are
// zeros. Conv1D is the case H = KH = 1; the transposed conv is the data gradient read forwards
// (conv_transpose.hpp), so it is these same bodies with the roles of the arrays swapped.
//
// "Implicit GEMM": no im2col buffer; each thread forms its dot product straight from the input
// window. Each body is a gather with one writer per output element (no atomics), so results
// are deterministic:
//   Forward         thread per output element (n, oh, ow, k): sum over (kh, kw, cg).
//   BackwardData    thread per input element (n, h, w, c): sum over the (kh, kw) whose window
//                   position lands on h, w (stride divides the offset) and over the group's Kg
//                   filters. Stride > kernel leaves some inputs with no window: they get 0.
//   Filter / bias   reductions over the P = N*OH*OW output pixels, split in S chunks of rows
//                   (split_rows): a partial pass (thread per chunk x weight element) into a
//                   workspace, then a pass summing the S partials in chunk order. S == 1 writes
//                   the result directly. Neighbouring threads differ in k, the fastest axis of
//                   dout and weight, so their reads of those are coalesced.
// Speed: no shared-memory tiling (the executors' contract has none), so each thread rereads its
// weights from L1/L2; a tiled body or cuDNN/cuBLAS is the fast path to add where a GPU can time
// it, with these bodies as its oracle on the device.
// Pads may be any integer (the transposed conv's geometry can cut or extend the output past
// the forward conv's windows); every index is bounds-checked.
#pragma once
#include <cstdint>

#include "faltung/conv_shape.hpp"
#include "hd.cuh"

namespace faltung::cuda::conv {

// How a sum over P rows of a (P, M) problem is cut into S chunks of `chunk` rows.
struct Split {
  int64_t S, chunk;
};
// Enough chunks that the partial pass has ~2^18 threads (a few waves on an A100/H100), but
// chunks of at least 16 rows; S = 1 when M alone fills the device.
inline Split split_rows(int64_t P, int64_t M) {
  int64_t S = ceil_div(int64_t(1) << 18, M > 0 ? M : 1);
  const int64_t max_s = ceil_div(P, 16);
  if (S > max_s) S = max_s;
  if (S < 1) S = 1;
  int64_t chunk = ceil_div(P, S);
  if (chunk < 1) chunk = 1;
  return Split{ceil_div(P > 0 ? P : 1, chunk), chunk};
}
// Workspace (elements) the filter or bias reduction of a (P, M) problem needs.
inline int64_t reduce_workspace_size(int64_t P, int64_t M) {
  const Split sp = split_rows(P, M);
  return sp.S > 1 ? sp.S * M : 0;
}
inline int64_t filter_size(const Conv2dShape& s) { return s.KH * s.KW * (s.C / s.groups) * s.K; }
inline int64_t filter_workspace_size(const Conv2dShape& s) {
  return reduce_workspace_size(s.N * s.OH * s.OW, filter_size(s));
}

// inp (N,H,W,C), weight (KH,KW,Cg,K), bias (K) or nullptr -> out (N,OH,OW,K); relu clamps
// negatives after the bias (as the CPU's fused relu). Thread per output element.
template <typename T>
struct Forward {
  T* out;
  const T* inp;
  const T* weight;
  const T* bias;
  Conv2dShape s;
  bool relu;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= s.N * s.OH * s.OW * s.K) return;
    const int64_t k = e % s.K, ow = e / s.K % s.OW, oh = e / (s.K * s.OW) % s.OH, n = e / (s.K * s.OW * s.OH);
    const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, c0 = k / Kg * Cg;
    T acc = 0;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
        if (iw < 0 || iw >= s.W) continue;
        const T* x = inp + ((n * s.H + ih) * s.W + iw) * s.C + c0;
        const T* w = weight + (kh * s.KW + kw) * Cg * s.K + k;
        for (int64_t cg = 0; cg < Cg; ++cg) acc += x[cg] * w[cg * s.K];
      }
    }
    if (bias) acc += bias[k];
    out[e] = (relu && acc < T(0)) ? T(0) : acc;
  }
};

// dout (N,OH,OW,K), weight (KH,KW,Cg,K), bias (C) or nullptr -> dinp (N,H,W,C). Thread per
// input element. The bias is the transposed conv's (its output is this dinp).
template <typename T>
struct BackwardData {
  T* dinp;
  const T* dout;
  const T* weight;
  const T* bias;
  Conv2dShape s;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= s.N * s.H * s.W * s.C) return;
    const int64_t c = e % s.C, w = e / s.C % s.W, h = e / (s.C * s.W) % s.H, n = e / (s.C * s.W * s.H);
    const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, cg = c % Cg, k0 = c / Cg * Kg;
    T acc = 0;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ph = h + s.pad_top - kh * s.dil_h;  // = oh * stride_h for a window holding h
      if (ph < 0 || ph % s.stride_h) continue;
      const int64_t oh = ph / s.stride_h;
      if (oh >= s.OH) continue;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t pw = w + s.pad_left - kw * s.dil_w;
        if (pw < 0 || pw % s.stride_w) continue;
        const int64_t ow = pw / s.stride_w;
        if (ow >= s.OW) continue;
        const T* d = dout + ((n * s.OH + oh) * s.OW + ow) * s.K + k0;
        const T* wt = weight + ((kh * s.KW + kw) * Cg + cg) * s.K + k0;
        for (int64_t j = 0; j < Kg; ++j) acc += d[j] * wt[j];
      }
    }
    if (bias) acc += bias[c];
    dinp[e] = acc;
  }
};

// dout (N,OH,OW,K), inp (N,H,W,C) -> the filter gradient (KH,KW,Cg,K) summed over the output
// pixels of chunk j: part[j * size + i]. Thread per (chunk, weight element).
template <typename T>
struct FilterPartial {
  T* part;
  const T* dout;
  const T* inp;
  Conv2dShape s;
  Split sp;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, size = s.KH * s.KW * Cg * s.K;
    const int64_t e = th.global();
    if (e >= sp.S * size) return;
    const int64_t j = e / size, i = e % size;
    const int64_t k = i % s.K, cg = i / s.K % Cg, kw = i / (s.K * Cg) % s.KW, kh = i / (s.K * Cg * s.KW);
    const int64_t c = k / Kg * Cg + cg, P = s.N * s.OH * s.OW;
    const int64_t p1 = (j + 1) * sp.chunk < P ? (j + 1) * sp.chunk : P;
    // (n, oh, ow) of pixel p, stepped along with p (no divisions in the loop)
    int64_t p = j * sp.chunk, ow = p % s.OW, oh = p / s.OW % s.OH, n = p / (s.OW * s.OH);
    T acc = 0;
    for (; p < p1; ++p) {
      const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h, iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
      if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W)
        acc += dout[p * s.K + k] * inp[((n * s.H + ih) * s.W + iw) * s.C + c];
      if (++ow == s.OW) {
        ow = 0;
        if (++oh == s.OH) oh = 0, ++n;
      }
    }
    part[e] = acc;
  }
};

// a (P, M) -> column sums of the rows of chunk j: part[j * M + m]. Thread per (chunk, column).
template <typename T>
struct ColumnPartial {
  T* part;
  const T* a;
  int64_t P, M;
  Split sp;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= sp.S * M) return;
    const int64_t j = e / M, m = e % M;
    const int64_t p1 = (j + 1) * sp.chunk < P ? (j + 1) * sp.chunk : P;
    T acc = 0;
    for (int64_t p = j * sp.chunk; p < p1; ++p) acc += a[p * M + m];
    part[e] = acc;
  }
};

// part (S, M) -> out (M): the chunks' partials summed in chunk order. Thread per column.
template <typename T>
struct SumChunks {
  T* out;
  const T* part;
  int64_t S, M;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t m = th.global();
    if (m >= M) return;
    T acc = 0;
    for (int64_t j = 0; j < S; ++j) acc += part[j * M + m];
    out[m] = acc;
  }
};

template <class Exec, typename T>
void forward(Exec& ex, T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s, bool relu,
             int64_t block) {
  ex.launch(cover(s.N * s.OH * s.OW * s.K, block), Forward<T>{out, inp, weight, bias, s, relu});
}
template <class Exec, typename T>
void backward_data(Exec& ex, T* dinp, const T* dout, const T* weight, const T* bias, const Conv2dShape& s,
                   int64_t block) {
  ex.launch(cover(s.N * s.H * s.W * s.C, block), BackwardData<T>{dinp, dout, weight, bias, s});
}
// dweight (KH,KW,Cg,K); ws of filter_workspace_size(s) elements.
template <class Exec, typename T>
void backward_filter(Exec& ex, T* dweight, T* ws, const T* dout, const T* inp, const Conv2dShape& s, int64_t block) {
  const int64_t M = filter_size(s);
  const Split sp = split_rows(s.N * s.OH * s.OW, M);
  ex.launch(cover(sp.S * M, block), FilterPartial<T>{sp.S > 1 ? ws : dweight, dout, inp, s, sp});
  if (sp.S > 1) ex.launch(cover(M, block), SumChunks<T>{dweight, ws, sp.S, M});
}
// a (P, M) -> out (M), the sum of the rows (the bias gradient: dout viewed as (N*OH*OW, K));
// ws of reduce_workspace_size(P, M) elements.
template <class Exec, typename T>
void column_sum(Exec& ex, T* out, T* ws, const T* a, int64_t P, int64_t M, int64_t block) {
  const Split sp = split_rows(P, M);
  ex.launch(cover(sp.S * M, block), ColumnPartial<T>{sp.S > 1 ? ws : out, a, P, M, sp});
  if (sp.S > 1) ex.launch(cover(M, block), SumChunks<T>{out, ws, sp.S, M});
}

}  // namespace faltung::cuda::conv
