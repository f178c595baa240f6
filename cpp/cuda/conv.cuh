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
// weights from L1/L2. Where the executor has a BLAS (cuBLAS on the device, blas.hpp) and the
// caller passes a `col` buffer (col_workspace_size), 1-group convolutions run as im2col + GEMM
// instead (a 1x1 kernel at stride 1 without padding as the GEMM alone, on the input itself),
// over chunks of output pixels so that the column buffer stays bounded:
//   forward         col (rows, KH*KW*C) = the chunk's windows; out rows = col W; bias, relu after
//   backward data   dcol = dout rows W^T; Col2im gathers dcol back onto the input (thread per
//                   input element of the chunk's images; the chunk holding an image's first
//                   pixel writes, later ones add)
//   backward filter dW (+)= col^T dout rows (the first chunk writes, later ones add)
// The implicit-GEMM bodies stay as the fallback (groups > 1, no BLAS) and the oracle.
// Pads may be any integer (the transposed conv's geometry can cut or extend the output past
// the forward conv's windows); every index is bounds-checked.
#pragma once
#include <cstdint>

#include "blas.hpp"
#include "dense.cuh"
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

// f(kh, kw, oh, ow) for every kernel tap and output pixel whose window reads input pixel
// (h, w): the gather form of the data gradient (BackwardData, Col2im).
template <class F>
FALTUNG_HD void for_windows_reading(const Conv2dShape& s, int64_t h, int64_t w, F&& f) {
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
      f(kh, kw, oh, ow);
    }
  }
}

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
    for_windows_reading(s, h, w, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
      const T* d = dout + ((n * s.OH + oh) * s.OW + ow) * s.K + k0;
      const T* wt = weight + ((kh * s.KW + kw) * Cg + cg) * s.K + k0;
      for (int64_t j = 0; j < Kg; ++j) acc += d[j] * wt[j];
    });
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

// ---- im2col + GEMM (1 group, with a BLAS) ----
// The column buffer holds at most this many elements (or one row, when a row is longer): 2^24
// (64 MB of float); the host harness lowers it (set_col_budget) to test the chunking.
inline int64_t& col_budget() {
  static int64_t budget = int64_t(1) << 24;
  return budget;
}
inline int64_t col_row(const Conv2dShape& s) { return s.KH * s.KW * s.C; }  // one output pixel's window
// Output pixels per chunk.
inline int64_t col_chunk(const Conv2dShape& s) {
  const int64_t P = s.N * s.OH * s.OW, rows = col_budget() / (col_row(s) > 0 ? col_row(s) : 1);
  return rows < 1 ? 1 : (rows < P ? rows : P);
}
// Whether the GEMM path applies: one group, and something to multiply.
inline bool gemm_applies(const Conv2dShape& s) {
  return s.groups == 1 && s.N * s.OH * s.OW > 0 && col_row(s) > 0 && s.K > 0;
}
// A 1x1 kernel at stride 1 without padding: the im2col matrix is the input itself, (P, C), taken
// whole (P within BLAS's int).
inline bool pointwise(const Conv2dShape& s) {
  return s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
         s.OH == s.H && s.OW == s.W && s.N * s.H * s.W <= 2147483647;
}
// Elements of the `col` buffer the im2col path needs; 0 where it needs none (pointwise) or does
// not apply.
inline int64_t col_workspace_size(const Conv2dShape& s) {
  if (!gemm_applies(s) || pointwise(s)) return 0;
  return col_chunk(s) * col_row(s);
}

// inp (N,H,W,C) -> col (rows, KH*KW*C): row r is output pixel p0 + r's window, (kh, kw, c)
// order as the weight's rows; zeros outside the image. Thread per col element.
template <typename T>
struct Im2col {
  T* col;
  const T* inp;
  Conv2dShape s;
  int64_t p0, rows;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t L = s.KH * s.KW * s.C, e = th.global();
    if (e >= rows * L) return;
    const int64_t p = p0 + e / L, i = e % L;
    const int64_t c = i % s.C, kw = i / s.C % s.KW, kh = i / (s.C * s.KW);
    const int64_t ow = p % s.OW, oh = p / s.OW % s.OH, n = p / (s.OW * s.OH);
    const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h, iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
    col[e] = (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) ? inp[((n * s.H + ih) * s.W + iw) * s.C + c] : T(0);
  }
};

// dcol (rows, KH*KW*C) of output pixels [p0, p1) -> dinp (N,H,W,C) of the images they cover,
// each input element the sum of the dcol entries that read it (as BackwardData finds them),
// plus bias[c] (or nullptr), written by the chunk holding its image's first pixel, added to
// by the later ones. Thread per input element of images n0.. (th.global() counts from n0).
template <typename T>
struct Col2im {
  T* dinp;
  const T* dcol;
  const T* bias;
  Conv2dShape s;
  int64_t p0, p1, n0;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t HWC = s.H * s.W * s.C, n1 = (p1 - 1) / (s.OH * s.OW);
    const int64_t e = n0 * HWC + th.global();
    if (e >= (n1 + 1) * HWC) return;
    const int64_t c = e % s.C, w = e / s.C % s.W, h = e / (s.C * s.W) % s.H, n = e / HWC;
    T acc = 0;
    for_windows_reading(s, h, w, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
      const int64_t p = (n * s.OH + oh) * s.OW + ow;
      if (p >= p0 && p < p1) acc += dcol[(p - p0) * s.KH * s.KW * s.C + (kh * s.KW + kw) * s.C + c];
    });
    const bool first = n * s.OH * s.OW >= p0;
    dinp[e] = (first ? (bias ? bias[c] : T(0)) : dinp[e]) + acc;
  }
};

// The GEMM path's epilogue over out (P, K): += bias[k] (bias or nullptr), then relu clamps
// (relu or linear: relu's defaults are the Forward body's v < 0 ? 0 : v, NaN kept).
template <typename T>
dense::Epilogue<T> bias_act(T* out, const T* bias, int64_t P, int64_t K, bool relu) {
  ew::ActSpec<T> act = dense::no_act<T>();
  if (relu) act.kind = Act::relu;
  return dense::Epilogue<T>{out, K, bias, nullptr, act, P, K};
}

// Whether forward/backward take the GEMM path (im2col + GEMM; GEMM alone when pointwise).
template <class Exec>
bool use_gemm(Exec& ex, const void* col, const Conv2dShape& s) {
  return ex.blas() && gemm_applies(s) && (col || pointwise(s));
}

// col: col_workspace_size(s) elements, or nullptr (the implicit-GEMM bodies, unless pointwise).
template <class Exec, typename T>
void forward(Exec& ex, T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s, bool relu,
             int64_t block, T* col = nullptr) {
  if (!use_gemm(ex, col, s)) {
    ex.launch(cover(s.N * s.OH * s.OW * s.K, block), Forward<T>{out, inp, weight, bias, s, relu});
    return;
  }
  const bool pw = pointwise(s);
  const int64_t P = s.N * s.OH * s.OW, L = col_row(s), chunk = pw ? P : col_chunk(s);
  for (int64_t p0 = 0; p0 < P; p0 += chunk) {
    const int64_t rows = p0 + chunk < P ? chunk : P - p0;
    if (!pw) ex.launch(cover(rows * L, block), Im2col<T>{col, inp, s, p0, rows});
    // out rows (rows, K) = col (rows, L) W (L, K); pointwise: col is the input
    ex.gemm(blas::RowGemm<T>{false, false, rows, s.K, L, T(1), pw ? inp : col, L, weight, s.K, T(0),
                             out + p0 * s.K, s.K});
  }
  if (bias || relu) ex.launch(cover(P * s.K, block), bias_act(out, bias, P, s.K, relu));
}
template <class Exec, typename T>
void backward_data(Exec& ex, T* dinp, const T* dout, const T* weight, const T* bias, const Conv2dShape& s,
                   int64_t block, T* col = nullptr) {
  if (!use_gemm(ex, col, s)) {
    ex.launch(cover(s.N * s.H * s.W * s.C, block), BackwardData<T>{dinp, dout, weight, bias, s});
    return;
  }
  if (pointwise(s)) {  // dinp (P, C) = dout (P, K) W^T (K, C), + bias
    const int64_t P = s.N * s.H * s.W;
    ex.gemm(blas::RowGemm<T>{false, true, P, s.C, s.K, T(1), dout, s.K, weight, s.K, T(0), dinp, s.C});
    if (bias) ex.launch(cover(P * s.C, block), bias_act(dinp, bias, P, s.C, false));
    return;
  }
  const int64_t P = s.N * s.OH * s.OW, L = col_row(s), chunk = col_chunk(s), HWC = s.H * s.W * s.C;
  for (int64_t p0 = 0; p0 < P; p0 += chunk) {
    const int64_t rows = p0 + chunk < P ? chunk : P - p0;
    // dcol (rows, L) = dout rows (rows, K) W^T (K, L)
    ex.gemm(blas::RowGemm<T>{false, true, rows, L, s.K, T(1), dout + p0 * s.K, s.K, weight, s.K, T(0), col, L});
    const int64_t n0 = p0 / (s.OH * s.OW), n1 = (p0 + rows - 1) / (s.OH * s.OW);
    ex.launch(cover((n1 - n0 + 1) * HWC, block), Col2im<T>{dinp, col, bias, s, p0, p0 + rows, n0});
  }
}
// dweight (KH,KW,Cg,K); ws of filter_workspace_size(s) elements (the implicit-GEMM path only).
template <class Exec, typename T>
void backward_filter(Exec& ex, T* dweight, T* ws, const T* dout, const T* inp, const Conv2dShape& s, int64_t block,
                     T* col = nullptr) {
  if (use_gemm(ex, col, s)) {
    const bool pw = pointwise(s);
    const int64_t P = s.N * s.OH * s.OW, L = col_row(s), chunk = pw ? P : col_chunk(s);
    for (int64_t p0 = 0; p0 < P; p0 += chunk) {
      const int64_t rows = p0 + chunk < P ? chunk : P - p0;
      if (!pw) ex.launch(cover(rows * L, block), Im2col<T>{col, inp, s, p0, rows});
      // dW (L, K) (+)= col^T (L, rows) dout rows (rows, K); pointwise: col is the input
      ex.gemm(blas::RowGemm<T>{true, false, L, s.K, rows, T(1), pw ? inp : col, L, dout + p0 * s.K, s.K,
                               p0 ? T(1) : T(0), dweight, s.K});
    }
    return;
  }
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
