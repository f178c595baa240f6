// Transposed convolution, NHWC, float and double.
//
// N batch; x (N,OH,OW,K) is the transposed conv's input, y (N,H,W,C) its output,
// weight (KH,KW,C,K); stride/dil/pad as in faltung/conv_transpose.hpp (the geometry is the
// forward conv whose data-gradient this is). COLS = KH*KW*C, one column-buffer row per
// input pixel (n,oh,ow), columns ordered (kh,kw,c).
//
// Fast path. Work items are (image, band of rows); one thread runs an item from
// start to end, so no two threads write the same out / dinp rows. An item goes over blocks
// of input rows whose column buffer (block rows * OW * COLS) is ~256 KB, so the buffer, the
// image's output and the weight stay in the core's L2 (the old version GEMMed a whole 8 MB
// chunk with parallel_gemm and then ran a separate col2im pass over it, round-tripping the
// buffer through L3/DRAM: measured 1.5-2.5x slower than this on the k4 s2 decoder case).
//   forward:  out rows = bias; per block: col = x rows @ weight^T (single-threaded gemm),
//             scatter-add col into the out rows the item owns
//   backward: per block: col = gather(dy) (im2col); dx rows = col @ weight;
//             dweight_t += col^T @ x rows; dbias_t += dy rows; per-thread partials summed last
// Phased forward (the default from 8 filters on): stride s -> s_h*s_w stride-1 convs of x with
// sub-kernels, written straight into the strided output, no column buffer or scatter. With
// GEMMs the phases measured ~15% slower (their GEMMs have only C columns); with the direct
// conv kernel (conv_direct.cpp) they measured 5-20% faster than the blocked GEMM above on the
// k4 s2 decoder case (64->32 channels, 16x16 -> 32x32, batch 64, 2 threads). When kernel =
// 2 * stride, all phases run as one Winograd F(3x3, 2x2) conv instead (another ~1.35x).
#include "faltung/conv_transpose.hpp"

#include <omp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "faltung/common.hpp"
#include "faltung/conv.hpp"
#include "faltung/conv_winograd.hpp"
#include "simd.hpp"

namespace faltung {

ConvTransposeDim conv_transpose_dim(int64_t in, int64_t k, int64_t stride, int64_t dil, bool same,
                                    int64_t output_padding) {
  const char* where = "conv_transpose";
  // dilated kernel extent
  const int64_t ke = size_add(size_mul(k - 1, dil, where, "(kernel_size - 1) * dilation_rate"), 1, where,
                              "the dilated kernel extent");
  const int64_t span = size_mul(in - 1, stride, where, "(input size - 1) * strides");
  const int64_t outpad = size_add(output_padding, 0, where, "output_padding");
  const bool none = output_padding < 0;
  if (!same) {
    // Full output plus output_padding zeros on the right; default pads up to the stride.
    const int64_t op = none ? std::max(ke, stride) - ke : outpad;
    return {size_add(size_add(span, ke, where, "the output size"), op, where, "the output size"), 0};
  }
  // "same": Keras pads the stride-dilated input by pad_len in total, left side first
  // (rounded up) but at most ke - 1; whatever the left side does not get is cut here.
  const int64_t pad_len = none ? size_add(stride, ke - 2, where, "strides + the dilated kernel extent")
                               : ke + ke % 2 - 2 + outpad;
  const int64_t left = std::min(pad_len / 2 + pad_len % 2, ke - 1);
  const int64_t out = none ? size_mul(in, stride, where, "input size * strides")
                           : size_add(span + ke % 2, outpad, where, "the output size");
  return {out, ke - 1 - left};
}

Conv2dShape conv_transpose2d_shape(int64_t N, int64_t IH, int64_t IW, int64_t CI, int64_t KH,
                                   int64_t KW, int64_t F, int64_t stride_h, int64_t stride_w,
                                   int64_t dil_h, int64_t dil_w, bool same, int64_t out_pad_h,
                                   int64_t out_pad_w) {
  const std::string op = "conv_transpose: ";
  FALTUNG_CHECK(N >= 0 && IH > 0 && IW > 0 && CI > 0,
                op + "expected positive input sizes, received input shape " + shape_str({N, IH, IW, CI}));
  FALTUNG_CHECK(KH > 0 && KW > 0 && F > 0,
                op + "expected positive kernel sizes, received kernel shape " + shape_str({KH, KW, F, CI}));
  FALTUNG_CHECK(stride_h > 0 && stride_w > 0,
                op + "expected positive strides, received strides=" + shape_str({stride_h, stride_w}));
  FALTUNG_CHECK(dil_h > 0 && dil_w > 0,
                op + "expected positive dilation_rate, received dilation_rate=" + shape_str({dil_h, dil_w}));
  FALTUNG_CHECK(out_pad_h >= -1 && out_pad_w >= -1,
                op + "expected output_padding >= 0, received output_padding=" +
                    shape_str({out_pad_h, out_pad_w}));
  const ConvTransposeDim dh = conv_transpose_dim(IH, KH, stride_h, dil_h, same, out_pad_h);
  const ConvTransposeDim dw = conv_transpose_dim(IW, KW, stride_w, dil_w, same, out_pad_w);
  FALTUNG_CHECK(dh.out > 0 && dw.out > 0,
                op + "the output would be empty: output spatial shape " + shape_str({dh.out, dw.out}));
  Conv2dShape s{};  // value-initialized: fields added later stay zero
  s.N = N; s.H = dh.out; s.W = dw.out; s.C = F; s.K = CI; s.KH = KH; s.KW = KW; s.OH = IH; s.OW = IW;
  s.stride_h = stride_h; s.stride_w = stride_w; s.dil_h = dil_h; s.dil_w = dil_w;
  s.pad_top = dh.pad; s.pad_left = dw.pad; s.groups = 1;
  return s;
}

namespace {

void check_geometry(const Conv2dShape& s) {
  FALTUNG_CHECK(s.groups == 1, "conv_transpose: groups must be 1, received " + std::to_string(s.groups));
  FALTUNG_CHECK(s.N >= 0 && s.H > 0 && s.W > 0 && s.C > 0 && s.K > 0 && s.KH > 0 && s.KW > 0 && s.OH > 0 &&
                    s.OW > 0 && s.stride_h > 0 && s.stride_w > 0 && s.dil_h > 0 && s.dil_w > 0,
                "conv_transpose: invalid geometry");
}

// Work is split into items (image n, band b of nb): each item is run by one thread from
// start to end, so items never race on out / dinp. With N >= 2 * threads (or N a multiple
// of the thread count) an item is a whole image; otherwise images are cut into nt bands so
// a small batch (N = 1 included) still keeps every thread busy.
int64_t bands_per_image(const Conv2dShape& s, int nt) {
  if (nt <= 1 || s.N >= 2 * nt || s.N % nt == 0) return 1;
  return nt;
}

// Input rows per block: the block's column buffer (rows * OW * COLS elements) is ~256 KB,
// half the 512 KB L2 of a core, so GEMM output and scatter/gather stay in L2 (measured:
// the old whole-chunk buffer of 8 MB went through L3 twice and cost more than the GEMM).
template <typename T>
int64_t block_rows(const Conv2dShape& s) {
  const int64_t row = s.OW * s.KH * s.KW * s.C;
  return std::max<int64_t>(1, (int64_t(256) << 10) / int64_t(sizeof(T)) / row);
}

// Input rows [lo, hi) of x that reach output rows [h0, h1): oh*sh - pad + kh*dh in [h0, h1)
// for some kh in [0, KH).
void input_rows_for(const Conv2dShape& s, int64_t h0, int64_t h1, int64_t* lo, int64_t* hi) {
  const int64_t a = h0 + s.pad_top - (s.KH - 1) * s.dil_h;  // oh*sh >= a
  const int64_t b = h1 - 1 + s.pad_top;                     // oh*sh <= b
  *lo = std::max<int64_t>(0, a <= 0 ? 0 : (a + s.stride_h - 1) / s.stride_h);
  *hi = b < 0 ? 0 : std::min<int64_t>(s.OH, b / s.stride_h + 1);
}

// col (rows oh in [oh0, oh1) of one image, (OW, KH, KW, C)) -> out_n (H, W, C): adds each
// column entry into the pixel it lands on, restricted to output rows [h0, h1).
template <typename T>
void scatter_add(T* out_n, const T* col, int64_t oh0, int64_t oh1, int64_t h0, int64_t h1,
                 const Conv2dShape& s) {
  const int64_t cols = s.KH * s.KW * s.C;
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t h = oh * s.stride_h - s.pad_top + kh * s.dil_h;
      if (h < h0 || h >= h1) continue;
      T* out_row = out_n + h * s.W * s.C;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const T* col_px = col + ((oh - oh0) * s.OW + ow) * cols + kh * s.KW * s.C;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t w = ow * s.stride_w - s.pad_left + kw * s.dil_w;
          if (w < 0 || w >= s.W) continue;
          const T* src = col_px + kw * s.C;
          T* dst = out_row + w * s.C;
#pragma omp simd
          for (int64_t c = 0; c < s.C; ++c) dst[c] += src[c];
        }
      }
    }
}

// dout_n (H, W, C) -> col (rows oh in [oh0, oh1), (OW, KH, KW, C)), zeros outside the image.
template <typename T>
void gather(T* col, const T* dout_n, int64_t oh0, int64_t oh1, const Conv2dShape& s) {
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      T* col_px = col + ((oh - oh0) * s.OW + ow) * s.KH * s.KW * s.C;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t h = oh * s.stride_h - s.pad_top + kh * s.dil_h;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t w = ow * s.stride_w - s.pad_left + kw * s.dil_w;
          T* dst = col_px + (kh * s.KW + kw) * s.C;
          if (h < 0 || h >= s.H || w < 0 || w >= s.W) {
            std::fill(dst, dst + s.C, T(0));
          } else {
            const T* src = dout_n + (h * s.W + w) * s.C;
            std::copy(src, src + s.C, dst);
          }
        }
      }
    }
}

// The kernel taps of one output phase along one dimension. Output index h = a + stride*i reads
// input oh = (a + pad - k*dil) / stride + i for every tap k with (a + pad - k*dil) divisible
// by stride; those taps form a progression k_0 < k_1 < ..., and the input offsets
// q_t = (a + pad - k_t*dil) / stride fall by a constant step. Reversed, the phase is a
// stride-1 correlation of x with taps k_{T-1}, ..., k_0 at dilation `step` and padding
// (T-1)*step - q_0.
struct StridePhase {
  std::vector<int64_t> taps;  // k_0, k_1, ...
  int64_t step = 1, pad = 0, out = 0;
};

StridePhase stride_phase(int64_t a, int64_t len, int64_t k, int64_t stride, int64_t dil, int64_t pad) {
  StridePhase d;
  d.out = a < len ? (len - a + stride - 1) / stride : 0;
  for (int64_t t = 0; t < k; ++t) {
    const int64_t r = a + pad - t * dil;
    if (((r % stride) + stride) % stride == 0) d.taps.push_back(t);
  }
  const int64_t T = static_cast<int64_t>(d.taps.size());
  if (T == 0) return d;
  const int64_t q0 = (a + pad - d.taps[0] * dil) / stride;  // exact
  d.step = T > 1 ? q0 - (a + pad - d.taps[1] * dil) / stride : 1;
  d.pad = (T - 1) * d.step - q0;
  return d;
}

// Phase (ph, pw)'s sub-kernel, flipped and with its channel axes swapped, into columns [0, C)
// of dst (Th, Tw, K, ld): dst[u][v][k][c] = weight[taps_h[Th-1-u]][taps_w[Tw-1-v]][c][k].
template <typename T>
void phase_sub_kernel(T* dst, int64_t ld, const StridePhase& ph, const StridePhase& pw, const T* weight,
                      const Conv2dShape& s) {
  const int64_t Th = static_cast<int64_t>(ph.taps.size()), Tw = static_cast<int64_t>(pw.taps.size());
  for (int64_t u = 0; u < Th; ++u)
    for (int64_t v = 0; v < Tw; ++v) {
      const T* w = weight + (ph.taps[Th - 1 - u] * s.KW + pw.taps[Tw - 1 - v]) * s.C * s.K;
      T* d = dst + (u * Tw + v) * s.K * ld;
      for (int64_t k = 0; k < s.K; ++k)
        for (int64_t c = 0; c < s.C; ++c) d[k * ld + c] = w[c * s.K + k];
    }
}

// kernel = 2 * stride, dilation 1 (e.g. k4 s2): every stride phase has a 2x2 sub-kernel, and
// the phases differ only in their padding, i.e. by a shift of at most one pixel. So all of them
// run as one 2x2 conv with stride_h*stride_w*C filters over a common grid (padding the largest
// phase padding, each phase reading its shifted part) by Winograd F(3x3, 2x2): one input
// transform and one GEMM per transform position for all phases, 2.25x fewer multiplies than the
// direct phases (k4 s2 64->32 16->32, batch 64, bench_conv_transpose, 2 threads: 6.6-7.5 ms
// against 9.6-9.7 ms for the direct phases).
bool winograd_phases_apply(const Conv2dShape& s) {
  return s.KH == 2 * s.stride_h && s.KW == 2 * s.stride_w && s.dil_h == 1 && s.dil_w == 1 && s.C >= 8 &&
         s.K >= 8;
}

template <typename T>
void forward_winograd_phases(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s) {
  const int64_t nph = s.stride_h * s.stride_w;
  std::vector<StridePhase> rows, cols;
  int64_t pad_h = 0, pad_w = 0, grid_h = 0, grid_w = 0;
  for (int64_t a = 0; a < s.stride_h; ++a) {
    rows.push_back(stride_phase(a, s.H, s.KH, s.stride_h, s.dil_h, s.pad_top));
    pad_h = std::max(pad_h, rows.back().pad);
  }
  for (int64_t b = 0; b < s.stride_w; ++b) {
    cols.push_back(stride_phase(b, s.W, s.KW, s.stride_w, s.dil_w, s.pad_left));
    pad_w = std::max(pad_w, cols.back().pad);
  }
  for (const auto& r : rows) grid_h = std::max(grid_h, r.out + pad_h - r.pad);
  for (const auto& c : cols) grid_w = std::max(grid_w, c.out + pad_w - c.pad);
  // sub (2, 2, K, nph*C): phase (a, b)'s flipped sub-kernel in filters [(a*stride_w + b)*C, +C)
  T* sub = workspace<T>(4 * s.K * nph * s.C, WorkspaceSlot::SubKernels);
  std::vector<WinogradView<T>> views;
  for (int64_t a = 0; a < s.stride_h; ++a)
    for (int64_t b = 0; b < s.stride_w; ++b) {
      const StridePhase &ph = rows[a], &pw = cols[b];
      const int64_t f0 = (a * s.stride_w + b) * s.C;
      phase_sub_kernel(sub + f0, nph * s.C, ph, pw, weight, s);
      views.push_back(WinogradView<T>{out + (a * s.W + b) * s.C, bias, f0, s.C, ph.out, pw.out, pad_h - ph.pad,
                                      pad_w - pw.pad, s.H * s.W * s.C, s.stride_h * s.W * s.C, s.stride_w * s.C});
    }
  Conv2dShape q{};
  q.N = s.N; q.H = s.OH; q.W = s.OW; q.C = s.K; q.K = nph * s.C; q.KH = 2; q.KW = 2;
  q.OH = grid_h; q.OW = grid_w; q.stride_h = 1; q.stride_w = 1; q.dil_h = 1; q.dil_w = 1;
  q.pad_top = pad_h; q.pad_left = pad_w; q.groups = 1;
  conv2d_winograd2x2_forward_views(inp, sub, q, views.data(), static_cast<int>(views.size()));
}

}  // namespace

// Phases: output phase (a, b) (rows a + stride_h*i, columns b + stride_w*j) is a stride-1
// conv of x with the sub-kernel of the taps that land there, flipped and with its channel
// axes swapped, run by the direct conv kernel straight into the strided output view.
// No column buffer, no scatter, and the kernel's register blocks stay full.
template <typename T>
void conv_transpose2d_forward_phased(T* out, const T* inp, const T* weight, const T* bias,
                                     const Conv2dShape& s) {
  check_geometry(s);
  if (winograd_phases_apply(s)) return forward_winograd_phases(out, inp, weight, bias, s);
  // An output above 8 MB goes out with streaming stores (where its pixels are whole 64-byte
  // lines): no read-for-ownership of the lines the phases overwrite. Paired, the stride-2 conv
  // 64->64 @32's training step (its input gradient, 16 MB, comes through here): 0.947; the
  // transposed conv 64->32 16->32 k4 s2 (8.4 MB out) 1.005.
  const bool stream = simd::stream_rows(s.N * s.H * s.W, s.C * int64_t(sizeof(T)), out);
  for (int64_t a = 0; a < s.stride_h; ++a)
    for (int64_t b = 0; b < s.stride_w; ++b) {
      const StridePhase ph = stride_phase(a, s.H, s.KH, s.stride_h, s.dil_h, s.pad_top);
      const StridePhase pw = stride_phase(b, s.W, s.KW, s.stride_w, s.dil_w, s.pad_left);
      if (ph.out == 0 || pw.out == 0) continue;
      T* o = out + (a * s.W + b) * s.C;
      const int64_t Th = static_cast<int64_t>(ph.taps.size()), Tw = static_cast<int64_t>(pw.taps.size());
      if (Th == 0 || Tw == 0) {  // no tap lands here (stride > kernel): the bias alone
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < s.N * ph.out; ++r) {
          T* row = o + (r / ph.out) * s.H * s.W * s.C + (r % ph.out) * s.stride_h * s.W * s.C;
          for (int64_t j = 0; j < pw.out; ++j)
            for (int64_t c = 0; c < s.C; ++c) row[j * s.stride_w * s.C + c] = bias ? bias[c] : T(0);
        }
        continue;
      }
      T* sub = workspace<T>(Th * Tw * s.K * s.C, WorkspaceSlot::SubKernels);  // (Th, Tw, K, C)
      phase_sub_kernel(sub, s.C, ph, pw, weight, s);
      Conv2dShape q{};
      q.N = s.N; q.H = s.OH; q.W = s.OW; q.C = s.K; q.K = s.C; q.KH = Th; q.KW = Tw;
      q.OH = ph.out; q.OW = pw.out; q.stride_h = 1; q.stride_w = 1; q.dil_h = ph.step; q.dil_w = pw.step;
      q.pad_top = ph.pad; q.pad_left = pw.pad; q.groups = 1;
      conv2d_direct_forward_view(o, s.H * s.W * s.C, s.stride_h * s.W * s.C, s.stride_w * s.C, inp, sub, bias,
                                 q, false, stream);
    }
}

template <typename T>
void conv_transpose2d_forward_gemm(T* out, const T* inp, const T* weight, const T* bias,
                                   const Conv2dShape& s) {
  check_geometry(s);
  const int64_t cols = s.KH * s.KW * s.C, rb = block_rows<T>(s);
  const int64_t nb = bands_per_image(s, get_num_threads()), items = s.N * nb;
#pragma omp parallel
  {
    T* col = workspace<T>(rb * s.OW * cols, WorkspaceSlot::Columns);
#pragma omp for schedule(static) nowait  // the end of the region is the barrier
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / nb, b = item % nb;
      const int64_t h0 = s.H * b / nb, h1 = s.H * (b + 1) / nb;
      T* out_n = out + n * s.H * s.W * s.C;
      for (int64_t p = h0 * s.W; p < h1 * s.W; ++p) {
        T* o = out_n + p * s.C;
        if (bias) std::copy(bias, bias + s.C, o);
        else std::fill(o, o + s.C, T(0));
      }
      int64_t lo, hi;
      input_rows_for(s, h0, h1, &lo, &hi);
      for (int64_t oh0 = lo; oh0 < hi; oh0 += rb) {
        const int64_t oh1 = std::min(hi, oh0 + rb);
        // col ((oh1-oh0)*OW, COLS) = x rows (.., K) @ weight (COLS, K)^T
        gemm<T>(false, true, (oh1 - oh0) * s.OW, cols, s.K, T(1),
                inp + (n * s.OH + oh0) * s.OW * s.K, s.K, weight, s.K, T(0), col, cols);
        scatter_add<T>(out_n, col, oh0, oh1, h0, h1, s);
      }
    }
  }
}

template <typename T>
void conv_transpose2d_forward(T* out, const T* inp, const T* weight, const T* bias,
                              const Conv2dShape& s) {
  // Phases need >= 8 output channels to fill the direct kernel's 16-channel register blocks.
  if (s.C >= 8)
    conv_transpose2d_forward_phased(out, inp, weight, bias, s);
  else
    conv_transpose2d_forward_gemm(out, inp, weight, bias, s);
}

template <typename T>
void conv_transpose2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                               const T* weight, const Conv2dShape& s) {
  check_geometry(s);
  const int64_t cols = s.KH * s.KW * s.C, rb = block_rows<T>(s), DK = cols * s.K;
  const int64_t nb = bands_per_image(s, get_num_threads()), items = s.N * nb;
  const int nt = get_num_threads();
  std::vector<T*> dw_parts(nt, nullptr), db_parts(nt, nullptr);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    T* col = workspace<T>(rb * s.OW * cols, WorkspaceSlot::Columns);
    // Per-thread partial sums, thread 0's straight into the result; summed at the end.
    T* dw = nullptr;
    if (dweight) {
      dw = t == 0 ? dweight : workspace<T>(DK, WorkspaceSlot::Partials);
      std::fill(dw, dw + DK, T(0));
    }
    T* db = nullptr;
    if (dbias) {
      db = t == 0 ? dbias : workspace<T>(s.C, WorkspaceSlot::Vectors);
      std::fill(db, db + s.C, T(0));
    }
    dw_parts[t] = dw;
    db_parts[t] = db;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      // Band b owns input rows [lo, hi) (for dinp) and output rows [h0, h1) (for dbias).
      const int64_t n = item / nb, b = item % nb;
      const int64_t lo = s.OH * b / nb, hi = s.OH * (b + 1) / nb;
      const int64_t h0 = s.H * b / nb, h1 = s.H * (b + 1) / nb;
      const T* dout_n = dout + n * s.H * s.W * s.C;
      if (dinp || dweight)
        for (int64_t oh0 = lo; oh0 < hi; oh0 += rb) {
          const int64_t oh1 = std::min(hi, oh0 + rb), rows = (oh1 - oh0) * s.OW;
          const int64_t px = (n * s.OH + oh0) * s.OW;
          gather<T>(col, dout_n, oh0, oh1, s);
          // dinp rows (rows, K) = col (rows, COLS) @ weight (COLS, K)
          if (dinp)
            gemm<T>(false, false, rows, s.K, cols, T(1), col, cols, weight, s.K, T(0),
                    dinp + px * s.K, s.K);
          // dw (COLS, K) += col^T (COLS, rows) @ x rows (rows, K)
          if (dweight)
            gemm<T>(true, false, cols, s.K, rows, T(1), col, cols, inp + px * s.K, s.K, T(1), dw, s.K);
        }
      if (dbias)
        for (int64_t p = h0 * s.W; p < h1 * s.W; ++p) {
          const T* dy = dout_n + p * s.C;
#pragma omp simd
          for (int64_t c = 0; c < s.C; ++c) db[c] += dy[c];
        }
    }
    // (the implicit barrier of omp for: every partial is complete)
    if (dweight) {
#pragma omp for schedule(static)
      for (int64_t e = 0; e < DK; ++e)
        for (int u = 1; u < nth; ++u) dweight[e] += dw_parts[u][e];
    }
    if (dbias && t == 0)
      for (int u = 1; u < nth; ++u)
        for (int64_t c = 0; c < s.C; ++c) dbias[c] += db_parts[u][c];
  }
}

template <typename T>
void conv_transpose2d_forward_ref(T* out, const T* inp, const T* weight, const T* bias,
                                  const Conv2dShape& s) {
  check_geometry(s);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n) {
    T* out_n = out + n * s.H * s.W * s.C;
    for (int64_t i = 0; i < s.H * s.W * s.C; ++i) out_n[i] = bias ? bias[i % s.C] : T(0);
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const T* x = inp + ((n * s.OH + oh) * s.OW + ow) * s.K;
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t h = oh * s.stride_h - s.pad_top + kh * s.dil_h;
            const int64_t w = ow * s.stride_w - s.pad_left + kw * s.dil_w;
            if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
            // out[n,h,w,c] += sum_k x[k] * weight[kh,kw,c,k]
            for (int64_t c = 0; c < s.C; ++c) {
              const T* w_c = weight + ((kh * s.KW + kw) * s.C + c) * s.K;
              T acc = 0;
              for (int64_t k = 0; k < s.K; ++k) acc += x[k] * w_c[k];
              out_n[(h * s.W + w) * s.C + c] += acc;
            }
          }
      }
  }
}

template <typename T>
void conv_transpose2d_backward_ref(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                   const T* weight, const Conv2dShape& s) {
  check_geometry(s);
  if (dinp) std::fill(dinp, dinp + s.N * s.OH * s.OW * s.K, T(0));
  if (dweight) std::fill(dweight, dweight + s.KH * s.KW * s.C * s.K, T(0));
  if (dbias) std::fill(dbias, dbias + s.C, T(0));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t px = (n * s.OH + oh) * s.OW + ow;
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t h = oh * s.stride_h - s.pad_top + kh * s.dil_h;
            const int64_t w = ow * s.stride_w - s.pad_left + kw * s.dil_w;
            if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
            const T* dy = dout + ((n * s.H + h) * s.W + w) * s.C;
            // forward: out[n,h,w,c] += inp[px,k] * weight[kh,kw,c,k]
            for (int64_t c = 0; c < s.C; ++c)
              for (int64_t k = 0; k < s.K; ++k) {
                const int64_t wi = ((kh * s.KW + kw) * s.C + c) * s.K + k;
                if (dinp) dinp[px * s.K + k] += dy[c] * weight[wi];
                if (dweight) dweight[wi] += dy[c] * inp[px * s.K + k];
              }
          }
      }
  if (dbias)
    for (int64_t p = 0; p < s.N * s.H * s.W; ++p)
      for (int64_t c = 0; c < s.C; ++c) dbias[c] += dout[p * s.C + c];
}

#define FALTUNG_INSTANTIATE(T)                                                                  \
  template void conv_transpose2d_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&); \
  template void conv_transpose2d_forward_gemm<T>(T*, const T*, const T*, const T*, const Conv2dShape&); \
  template void conv_transpose2d_forward_phased<T>(T*, const T*, const T*, const T*, const Conv2dShape&); \
  template void conv_transpose2d_backward<T>(T*, T*, T*, const T*, const T*, const T*,          \
                                             const Conv2dShape&);                               \
  template void conv_transpose2d_forward_ref<T>(T*, const T*, const T*, const T*,               \
                                                const Conv2dShape&);                            \
  template void conv_transpose2d_backward_ref<T>(T*, T*, T*, const T*, const T*, const T*,      \
                                                 const Conv2dShape&);
FALTUNG_INSTANTIATE(float)
FALTUNG_INSTANTIATE(double)
#undef FALTUNG_INSTANTIATE

}  // namespace faltung
