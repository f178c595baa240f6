// Direct convolution, NHWC, register-blocked: no im2col matrix, no GEMM call.
//
// N batch, H/W input size, C in-channels, K filters, KH/KW kernel, OH/OW output size,
// VW lanes of one vector register (simd.hpp: 8 floats at the AVX2 level), KB = KV*VW filters
// per forward block (KV = 2, or 4 at AVX-512), OWB = 6 output pixels per block. groups == 1;
// any stride, dilation and padding.
//
// Why: im2col + GEMM pays for a copy of every receptive field and for GEMM shapes it does not
// like (D = 27 columns for a 3-channel first layer, or K = 32/64 filters); PyTorch's oneDNN
// runs direct NHWC kernels there. The forward keeps a (OWB x KB) output block in registers
// and streams the packed weights once per block: per (kh, kw, c) step KV weight loads + 6
// broadcasts feed 6*KV FMAs, so the loop is FMA-bound, not load-bound. Every block runs one
// KW*C-long FMA run per kernel row: a pixel whose window crosses the image's border reads a
// copy of its window with zeros outside (the per-tap runs of C values these pixels took before
// cost stride 2 64->64 @32 15%: 3.57 ms against 3.10 ms for the same work with no border).
// Threads take chunks of blocks, from their own share first (chunks.hpp); a conv whose every
// window lies inside the image skips the per-block border set-up.
//
//   forward          out[p, k]       = sum_{kh,kw,c} inp[window(p), c] * weight[kh,kw,c,k]
//   backward filter  dweight[t, c, k] = sum_p inp[window_t(p), c] * dout[p, k]
//                    (per thread: 6 input channels x KB filters in registers, summed over
//                    up to 4 rows of output pixels; per-thread partials are summed at the end)
//   backward data    dinp[q, c]      = sum_{t, p: window_t(p) = q} dout[p, :] . weight[t, c, :]
//                    (gather form, vectorized over K, for few input channels; stride > 1
//                    handled by the divisibility test of the gather)
//
// Workspaces (common.hpp). Forward: packed weights (ceil(K/KB), KH, KW, C, KB), zero-padded
// past K, with the padded bias behind them: the calling thread's PackedWeights; the padded input
// copy for few channels: PaddedInput; per thread, the border pixels' window copies: WindowCopies.
// Filter gradient: each thread's partial: Partials; its padded dout rows: Vectors.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "chunks.hpp"
#include "faltung/conv.hpp"
#include "simd.hpp"

namespace faltung {

namespace {

using simd::bcast;
using simd::load;
using simd::store;
using simd::Vec;

constexpr int kOWB = 6;  // output pixels per register block
constexpr int kKV = 2;   // vectors of filters per block of the filter gradient (KB = kKV * VW)
// Vectors of filters per forward register block: 4 where there are 32 vector registers (AVX-512:
// 6 x 4 accumulators), so each broadcast feeds 4 FMAs (stride-2 64->64 @32, one core: 160 ->
// 182 GFLOP/s); else 2 (6 x 2 of AVX2's 16 registers).
#if defined(__AVX512F__)
constexpr int kMaxFKV = 4;
#else
constexpr int kMaxFKV = 2;
#endif

// weight (KH,KW,C,K), bias (K)|nullptr -> packed (nkb, KH, KW, C, KB) + bias (nkb*KB).
template <class T>
T* pack_weight(const T* weight, const T* bias, const Conv2dShape& s, int64_t KB) {
  const int64_t nkb = (s.K + KB - 1) / KB, R = s.KH * s.KW * s.C;
  T* wp = workspace<T>(nkb * R * KB + nkb * KB, WorkspaceSlot::PackedWeights);
  for (int64_t kb = 0; kb < nkb; ++kb) {
    const int64_t k0 = kb * KB, nk = std::min(KB, s.K - k0);
    for (int64_t r = 0; r < R; ++r) {
      T* dst = wp + (kb * R + r) * KB;
      std::copy(weight + r * s.K + k0, weight + r * s.K + k0 + nk, dst);
      std::fill(dst + nk, dst + KB, T(0));
    }
  }
  T* bp = wp + nkb * R * KB;
  std::fill(bp, bp + nkb * KB, T(0));
  if (bias) std::copy(bias, bias + s.K, bp);
  return wp;
}

// First and one-past-last index o in [0, O) whose input o*stride + off - pad is in [0, I), both
// clamped to [0, O] (output columns of a kernel column, or kernel rows of an output row: a
// window wholly above the image would otherwise give lo = hi > KH). The stride-1 branches
// skip two integer divisions, which in the per-block use cost as much as a 3-channel block's FMAs.
inline void valid_range(int64_t O, int64_t I, int64_t stride, int64_t pad, int64_t off, int64_t* lo,
                        int64_t* hi) {
  const int64_t a = pad - off;  // o*stride >= a
  *lo = std::min(O, a <= 0 ? 0 : (stride == 1 ? a : (a + stride - 1) / stride));
  const int64_t b = I - 1 + pad - off;  // o*stride <= b
  *hi = b < 0 ? 0 : std::min(O, stride == 1 ? b + 1 : b / stride + 1);
  if (*hi < *lo) *hi = *lo;
}

// a[j][:] += sum over r < L of x[j][r] * w[r, :] (w: L rows of KB packed filters): the FMA
// loop of every forward block. Per r: KV weight loads and OWB broadcasts feed OWB*KV FMAs.
template <class T, int OWB, int KV>
__attribute__((always_inline)) inline void fma_run(typename Vec<T>::type (&a)[OWB][KV], const T* const (&x)[OWB],
                                                   const T* w, int64_t L) {
  using V = typename Vec<T>::type;
  constexpr int VW = Vec<T>::width, KB = KV * VW;
  for (int64_t r = 0; r < L; ++r) {
    V wv[KV];
#pragma GCC unroll 4
    for (int v = 0; v < KV; ++v) wv[v] = load<V>(w + r * KB + v * VW);
#pragma GCC unroll 8
    for (int j = 0; j < OWB; ++j) {
      const V b = bcast(x[j] + r);
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) a[j][v] += b * wv[v];
    }
  }
}

// The output pixels of one register block: OWB consecutive pixels of one image in row-major
// order, so a block may run over the end of an output row (small outputs such as 16x16 or
// 8x8 then need no narrow tail blocks). Pixel j reads KW*C contiguous values per kernel row
// kh in [lo, hi): from x[j] on, x[j] moving on by step[j] from row to row. Where its window
// lies inside the image (and dilation_w is 1) x[j] points into the input; else into a copy of
// its window with zeros outside the image (border pixels, dilated columns: 1/(K*OWB) of the
// block's work), so every block runs the same long FMA runs.
template <class T, int OWB>
struct PixelBlock {
  int64_t out[OWB];  // output offset of pixel j within its image
  int64_t lo, hi;
  const T* x[OWB];
  int64_t step[OWB];
};

// a[j][:] = the KB bias values bk (every loop over an accumulator array is fully unrolled by
// pragmas: GCC keeps such an array in registers only when no loop indexes it at run time).
template <class T, int OWB, int KV>
__attribute__((always_inline)) inline void init_block(typename Vec<T>::type (&a)[OWB][KV], const T* bk) {
  using V = typename Vec<T>::type;
  constexpr int VW = Vec<T>::width;
#pragma GCC unroll 4
  for (int v = 0; v < KV; ++v) {
    const V b = load<V>(bk + v * VW);
#pragma GCC unroll 8
    for (int j = 0; j < OWB; ++j) a[j][v] = b;
  }
}

// The block's FMAs: kernel rows [lo, hi), each one contiguous run of KW*C input values (one run
// per kernel row keeps the FMA loop long even for 3 input channels); wk: the filter block's
// packed weights. The accumulators stay in registers across kernel rows.
template <class T, int OWB, int KV>
__attribute__((always_inline)) inline void block_rows(typename Vec<T>::type (&a)[OWB][KV], const PixelBlock<T, OWB>& pb,
                                                      const T* wk, const Conv2dShape& s) {
  constexpr int64_t KB = KV * Vec<T>::width;
  const int64_t L = s.KW * s.C;
  const T* xj[OWB];
#pragma GCC unroll 8
  for (int j = 0; j < OWB; ++j) xj[j] = pb.x[j];
  const T* w = wk + pb.lo * L * KB;
  for (int64_t kh = pb.lo; kh < pb.hi; ++kh, w += L * KB) {
    fma_run<T, OWB, KV>(a, xj, w, L);
#pragma GCC unroll 8
    for (int j = 0; j < OWB; ++j) xj[j] += pb.step[j];
  }
}

// What the forward does with its sums on the way out: ReLU, and streaming stores (whole vectors
// past the caches; the caller decides, and fences).
struct OutputMode {
  bool relu, stream;
};

// Pixel j's nk (<= KB) filters of a[j] (ReLU'd if m.relu) to out_px + out[j].
template <class T, int OWB, int KV>
__attribute__((always_inline)) inline void store_block(const typename Vec<T>::type (&a)[OWB][KV], T* out_px,
                                                       const int64_t (&out)[OWB], int64_t nk, OutputMode m) {
  using V = typename Vec<T>::type;
  constexpr int VW = Vec<T>::width, KB = KV * VW;
  T tmp[KB];
#pragma GCC unroll 8
  for (int j = 0; j < OWB; ++j) {
    T* o = out_px + out[j];
#pragma GCC unroll 4
    for (int v = 0; v < KV; ++v) {
      V r = a[j][v];
      if (m.relu) r = r > V{} ? r : V{};
      if (nk == KB && m.stream)
        simd::stream(o + v * VW, r);
      else if (nk == KB)
        store(o + v * VW, r);
      else
        store(tmp + v * VW, r);
    }
    if (nk != KB) std::copy(tmp, tmp + nk, o);
  }
}

// Every filter block of the pixels of pb: outputs at out_img + pb.out[j] + k0.
template <class T, int OWB, int KV>
inline void forward_filters(T* out_img, const PixelBlock<T, OWB>& pb, const T* wp, const T* bp,
                            const Conv2dShape& s, OutputMode m) {
  using V = typename Vec<T>::type;
  constexpr int64_t KB = KV * Vec<T>::width;
  const int64_t R = s.KH * s.KW * s.C;
  for (int64_t k0 = 0; k0 < s.K; k0 += KB) {
    V a[OWB][KV];
    init_block<T, OWB, KV>(a, bp + k0);
    if (pb.lo < pb.hi) block_rows<T, OWB, KV>(a, pb, wp + k0 * R, s);
    store_block<T, OWB, KV>(a, out_img + k0, pb.out, std::min(KB, s.K - k0), m);
  }
}

// Pixels [p0, p0 + n) of one image (n <= kOWB), all filter blocks, at any position: border
// pixels read copies of their windows from win (kOWB * KH*KW*C values of this thread's).
template <class T, int OWB, int KV>
void forward_pixels(int64_t n, T* out_img, int64_t row_stride, int64_t px_stride, const T* in_img, const T* wp,
                    const T* bp, T* win, const Conv2dShape& s, int64_t p0, OutputMode m) {
  if constexpr (OWB > 0) {
    if (n < OWB)
      return forward_pixels<T, OWB - 1, KV>(n, out_img, row_stride, px_stride, in_img, wp, bp, win, s, p0, m);
    const int64_t C = s.C, L = s.KW * C, span = s.KW - 1, hspan = (s.KH - 1) * s.dil_h;
    PixelBlock<T, OWB> pb;
    pb.lo = s.KH;
    pb.hi = 0;
    int64_t oh = p0 / s.OW, ow = p0 % s.OW;  // one division per block, not per pixel (they
    for (int j = 0; j < OWB; ++j, ++ow) {      // cost as much as the FMAs of a 3-channel block)
      if (ow == s.OW) {
        ow = 0;
        ++oh;
      }
      pb.out[j] = oh * row_stride + ow * px_stride;
      const int64_t ih0 = oh * s.stride_h - s.pad_top, iw0 = ow * s.stride_w - s.pad_left;
      int64_t lo, hi;  // kernel rows inside the image
      valid_range(s.KH, s.H, s.dil_h, 0, ih0, &lo, &hi);
      pb.lo = std::min(pb.lo, lo);
      pb.hi = std::max(pb.hi, hi);
      if (s.dil_w == 1 && iw0 >= 0 && iw0 + span < s.W && ih0 >= 0 && ih0 + hspan < s.H) {
        pb.x[j] = in_img + (ih0 * s.W + iw0) * C;
        pb.step[j] = s.dil_h * s.W * C;
        continue;
      }
      T* wj = win + j * s.KH * L;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = ih0 + kh * s.dil_h;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = iw0 + kw * s.dil_w;
          T* dst = wj + kh * L + kw * C;
          if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W)
            std::copy(in_img + (ih * s.W + iw) * C, in_img + (ih * s.W + iw + 1) * C, dst);
          else
            std::fill(dst, dst + C, T(0));
        }
      }
      pb.x[j] = wj;
      pb.step[j] = L;
    }
    if (pb.lo < pb.hi)
      for (int j = 0; j < OWB; ++j) pb.x[j] += pb.lo * pb.step[j];
    forward_filters<T, OWB, KV>(out_img, pb, wp, bp, s, m);
  }
}

// True when every window of every output pixel lies inside the image and dilation_w is 1.
inline bool windows_inside(const Conv2dShape& s) {
  return s.dil_w == 1 && s.pad_top <= 0 && s.pad_left <= 0 &&
         (s.OH - 1) * s.stride_h - s.pad_top + (s.KH - 1) * s.dil_h < s.H &&
         (s.OW - 1) * s.stride_w - s.pad_left + (s.KW - 1) < s.W;
}

// The kOWB pixels of the flattened output image from (oh, ow) on, all filter blocks, for a
// conv with windows_inside(s).
template <class T, int KV>
void forward_inside_block(T* out_img, int64_t row_stride, int64_t px_stride, const T* in_img, const T* wp,
                          const T* bp, const Conv2dShape& s, int64_t oh, int64_t ow, OutputMode m) {
  PixelBlock<T, kOWB> pb;
  pb.lo = 0;
  pb.hi = s.KH;
  for (int j = 0; j < kOWB; ++j, ++ow) {
    if (ow == s.OW) {
      ow = 0;
      ++oh;
    }
    pb.out[j] = oh * row_stride + ow * px_stride;
    pb.x[j] = in_img + ((oh * s.stride_h - s.pad_top) * s.W + ow * s.stride_w - s.pad_left) * s.C;
    pb.step[j] = s.dil_h * s.W * s.C;
  }
  forward_filters<T, kOWB, KV>(out_img, pb, wp, bp, s, m);
}

}  // namespace

template <typename T>
void conv2d_direct_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                           bool relu) {
  conv2d_direct_forward_view(out, s.OH * s.OW * s.K, s.OW * s.K, s.K, inp, weight, bias, s, relu);
}

namespace {

// by_row: blocks of kOWB pixels along each output row (wide rows: every block but the last
// of a row then holds no border pixel), else over the flattened image (an 8- or 16-pixel row would
// otherwise leave narrow tail blocks; measured 10-15% faster at 16x16 stride 2). A conv with
// every window inside the image always takes flattened blocks: none holds a border pixel.
template <typename T, int KV>
void direct_forward_blocks(T* out, int64_t img_stride, int64_t row_stride, int64_t px_stride, const T* inp,
                           const T* weight, const T* bias, const Conv2dShape& s, OutputMode m, bool by_row) {
  const bool inside = windows_inside(s);
  if (inside) by_row = false;
  constexpr int64_t KB = KV * Vec<T>::width;
  const int64_t nkb = (s.K + KB - 1) / KB, R = s.KH * s.KW * s.C;
  const T* wp = pack_weight(weight, bias, s, KB);
  const T* bp = wp + nkb * R * KB;
  const int64_t OHW = s.OH * s.OW, run_len = by_row ? s.OW : OHW, runs = by_row ? s.OH : 1;
  const int64_t per_run = (run_len + kOWB - 1) / kOWB, nblk = runs * per_run;
  // Each thread takes the chunks of its contiguous share of the blocks in order, then the last
  // ones left in the other's share (ChunkQueue: consecutive blocks read overlapping input rows,
  // which then stay in one core's cache; a core slowed by a neighbour is still relieved). A
  // chunk is at most an eighth of a thread's share of the blocks and at most ~1 MFLOP
  // (15-20 us), and at least one block.
  const int nt = conv_threads(s);
  const int64_t nb = s.N * nblk, flops = kOWB * KB * nkb * R * 2;
  const int64_t chunk = std::max<int64_t>({int64_t(1), std::min<int64_t>((int64_t(1) << 20) / flops, nb / (8 * nt)),
                                           nb >> 30});  // (ChunkQueue counts chunks in 32 bits)
  const int64_t nchunks = (nb + chunk - 1) / chunk;
  if (inside) {
    // Every window inside the image and dilation_w 1 (the padded few-channel input, "valid"
    // padding, the stride phases of a transposed conv): every block is set up from its first
    // pixel's position, carried from block to block, with no divisions and no border tests.
    // For 3 channels a block's FMAs are only 2 x 162 cycles, and the general set-up took ~30%
    // of the time.
    ChunkQueue queue(nchunks, nt);
#pragma omp parallel num_threads(nt)
    {
      for (int64_t c; queue.next(omp_get_thread_num(), &c);) {
        const int64_t b0 = c * chunk, b1 = std::min(nb, b0 + chunk);
        int64_t n = b0 / nblk, i = b0 % nblk, oh = i * kOWB / s.OW, ow = i * kOWB % s.OW;
        for (int64_t b = b0; b < b1; ++b) {
          T* out_img = out + n * img_stride;
          const T* in_img = inp + n * s.H * s.W * s.C;
          if (i + 1 < nblk || OHW % kOWB == 0) {
            forward_inside_block<T, KV>(out_img, row_stride, px_stride, in_img, wp, bp, s, oh, ow, m);
          } else {
            forward_pixels<T, kOWB, KV>(OHW - i * kOWB, out_img, row_stride, px_stride, in_img, wp, bp, nullptr, s,
                                        i * kOWB, m);
          }
          ow += kOWB;
          while (ow >= s.OW) {
            ow -= s.OW;
            ++oh;
          }
          if (++i == nblk) {
            i = oh = ow = 0;
            ++n;
          }
        }
      }
      if (m.stream) simd::stream_fence();  // each thread orders its own streaming stores
    }
    return;
  }
  ChunkQueue queue(nchunks, nt);
#pragma omp parallel num_threads(nt)
  {
    // this thread's window copies of border pixels (WindowCopies: no caller of the direct
    // forward holds it)
    T* win = workspace<T>(kOWB * R, WorkspaceSlot::WindowCopies);
    for (int64_t c; queue.next(omp_get_thread_num(), &c);) {
      for (int64_t b = c * chunk; b < std::min(nb, (c + 1) * chunk); ++b) {
        const int64_t n = b / nblk, r = (b % nblk) / per_run, i = (b % nblk) % per_run;
        const int64_t p0 = r * run_len + i * kOWB;
        forward_pixels<T, kOWB, KV>(std::min<int64_t>(kOWB, run_len - i * kOWB), out + n * img_stride, row_stride,
                                    px_stride, inp + n * s.H * s.W * s.C, wp, bp, win, s, p0, m);
      }
    }
    if (m.stream) simd::stream_fence();  // each thread orders its own streaming stores
  }
}

// The forward's blocks with KV filter vectors, or with half as many where that needs no more
// zero-padded filters (K = 32 at AVX-512 keeps 2 x 16).
template <typename T, int KV>
void direct_forward_kv(T* out, int64_t img_stride, int64_t row_stride, int64_t px_stride, const T* inp,
                       const T* weight, const T* bias, const Conv2dShape& s, OutputMode m, bool by_row) {
  constexpr int64_t KB = KV * Vec<T>::width;
  if constexpr (KV > 2) {
    if ((s.K + KB - 1) / KB * KB > (s.K + KB / 2 - 1) / (KB / 2) * (KB / 2))
      return direct_forward_kv<T, KV / 2>(out, img_stride, row_stride, px_stride, inp, weight, bias, s, m, by_row);
  }
  direct_forward_blocks<T, KV>(out, img_stride, row_stride, px_stride, inp, weight, bias, s, m, by_row);
}

}  // namespace

template <typename T>
void conv2d_direct_forward_view(T* out, int64_t img_stride, int64_t row_stride, int64_t px_stride, const T* inp,
                                const T* weight, const T* bias, const Conv2dShape& s, bool relu, bool stream) {
  const OutputMode m{relu, stream && s.K * int64_t(sizeof(T)) % 64 == 0 &&
                               reinterpret_cast<uintptr_t>(out) % 64 == 0 && px_stride * int64_t(sizeof(T)) % 64 == 0 &&
                               row_stride * int64_t(sizeof(T)) % 64 == 0 && img_stride * int64_t(sizeof(T)) % 64 == 0};
  // Few input channels: copy the input once into a zero-padded image (cheap: 3 channels of
  // a 32x32 batch of 64 are 0.9 MB, against 113 MFLOP), so that every window is inside the
  // image: flattened blocks across output rows, no border blocks, one tail block per image
  // (1st CIFAR layer, one thread: ~2.0 vs ~2.4 ms, on a noisy machine).
  const int64_t bottom = std::max<int64_t>(0, (s.OH - 1) * s.stride_h - s.pad_top + (s.KH - 1) * s.dil_h + 1 - s.H);
  const int64_t right = std::max<int64_t>(0, (s.OW - 1) * s.stride_w - s.pad_left + (s.KW - 1) * s.dil_w + 1 - s.W);
  const int64_t top = std::max<int64_t>(0, s.pad_top), left = std::max<int64_t>(0, s.pad_left);
  if (s.C <= kDirectDataMaxC && top + bottom + left + right > 0) {
    Conv2dShape q = s;
    q.H = top + s.H + bottom;
    q.W = left + s.W + right;
    q.pad_top -= top;
    q.pad_left -= left;
    T* xp = workspace<T>(s.N * q.H * q.W * s.C, WorkspaceSlot::PaddedInput);
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
    for (int64_t r = 0; r < s.N * q.H; ++r) {
      const int64_t n = r / q.H, h = r % q.H - top;
      T* dst = xp + r * q.W * s.C;
      if (h < 0 || h >= s.H) {
        std::fill(dst, dst + q.W * s.C, T(0));
        continue;
      }
      std::fill(dst, dst + left * s.C, T(0));
      std::copy(inp + (n * s.H + h) * s.W * s.C, inp + (n * s.H + h + 1) * s.W * s.C, dst + left * s.C);
      std::fill(dst + (left + s.W) * s.C, dst + q.W * s.C, T(0));
    }
    return direct_forward_kv<T, kMaxFKV>(out, img_stride, row_stride, px_stride, xp, weight, bias, q, m, false);
  }
  return direct_forward_kv<T, kMaxFKV>(out, img_stride, row_stride, px_stride, inp, weight, bias, s, m,
                                       s.OW >= 4 * kOWB);
}

namespace {

constexpr int kCB = 6;  // input channels per register block of the filter gradient
// Output rows per filter-gradient block: a block's accumulators sum over the pixels of up to
// kRB rows of one image before they are added to the partial (16-pixel rows of a stride-2
// conv left the FMA loop 16 steps long against 12-24 read-modify-writes of the partial).
constexpr int64_t kRB = 4;

// nr output rows of one image, n pixels of each, for one kernel tap: pixel i of row r reads
// the input at in0 + r * in_step + i * sw * C and dout at d0 + r * d_step + i * ldd.
template <class T>
struct FilterRows {
  const T* in0;
  const T* d0;
  int64_t nr, n, in_step, d_step, ldd, sw, C;
};

// part (CB x KB) += sum over the rows and pixels of f of inp[pixel, c0..c0+CB) (outer)
// dout[pixel, k0..k0+KB): in0 and d0 of f already point at c0 and k0.
template <class T, int CB, int KV>
inline void filter_block(T* part, int64_t ldp, const FilterRows<T>& f) {
  using V = typename Vec<T>::type;
  constexpr int VW = Vec<T>::width;
  V a[CB][KV] = {};
  const int64_t xs = f.sw * f.C;
  for (int64_t r = 0; r < f.nr; ++r) {
    const T* x = f.in0 + r * f.in_step;
    const T* d = f.d0 + r * f.d_step;
    for (int64_t i = 0; i < f.n; ++i) {
      V dv[KV];
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) dv[v] = load<V>(d + i * f.ldd + v * VW);
#pragma GCC unroll 8
      for (int j = 0; j < CB; ++j) {
        const V b = bcast(x + i * xs + j);
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) a[j][v] += b * dv[v];
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < CB; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < KV; ++v) store(part + j * ldp + v * VW, load<V>(part + j * ldp + v * VW) + a[j][v]);
}

template <class T, int CB, int KV>
inline void filter_tail(int64_t rem, T* part, int64_t ldp, const FilterRows<T>& f) {
  if constexpr (CB > 0) {
    if (rem == CB) return filter_block<T, CB, KV>(part, ldp, f);
    filter_tail<T, CB - 1, KV>(rem, part, ldp, f);
  }
}

// dout (N,OH,OW,K), inp (N,H,W,C) -> dweight (KH,KW,C,K) with blocks of KV filter vectors.
// Threads split the output rows; each accumulates a padded partial (KH*KW*C, nkb*KB) in its
// Partials slot, then the partials are summed into dweight.
template <typename T, int KV>
void direct_backward_filter_kv(T* dweight, const T* dout, const T* inp, const Conv2dShape& s) {
  constexpr int64_t KB = KV * Vec<T>::width;
  const int64_t nkb = (s.K + KB - 1) / KB, Kp = nkb * KB, R = s.KH * s.KW * s.C;
  const int64_t rows = s.N * s.OH, RK = R * Kp;
  const bool padded = Kp != s.K;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({conv_threads(s), rows, 64})));
  // Per kernel column kw: the output columns [lo, hi) whose input column is inside the row.
  std::vector<int64_t> range(2 * s.KW);  // KW pairs: negligible next to the kernel's work
  for (int64_t kw = 0; kw < s.KW; ++kw)
    valid_range(s.OW, s.W, s.stride_w, s.pad_left, kw * s.dil_w, &range[2 * kw], &range[2 * kw + 1]);
  T* parts[64];
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    T* part = workspace<T>(RK, WorkspaceSlot::Partials);
    std::fill(part, part + RK, T(0));
    parts[t] = part;
    T* dpad = padded ? workspace<T>(kRB * s.OW * Kp, WorkspaceSlot::Vectors) : nullptr;
    if (padded) std::fill(dpad, dpad + kRB * s.OW * Kp, T(0));
    // this thread's rows in groups of at most kRB rows of one image
    for (int64_t row = rows * t / nth, end = rows * (t + 1) / nth; row < end;) {
      const int64_t n = row / s.OH, oh0 = row % s.OH;
      const int64_t nr = std::min({kRB, end - row, s.OH - oh0});
      const T* d_group = dout + row * s.OW * s.K;
      int64_t ldd = s.K;
      if (padded) {  // the dout rows with K padded to Kp, so that every block loads whole vectors
        for (int64_t p = 0; p < nr * s.OW; ++p) std::copy(d_group + p * s.K, d_group + (p + 1) * s.K, dpad + p * Kp);
        d_group = dpad;
        ldd = Kp;
      }
      FilterRows<T> f;
      f.ldd = ldd;
      f.d_step = s.OW * ldd;
      f.in_step = s.stride_h * s.W * s.C;
      f.sw = s.stride_w;
      f.C = s.C;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        // the group's rows [r_lo, r_hi) whose input row ih0 + r * stride_h is inside the image
        const int64_t ih0 = oh0 * s.stride_h - s.pad_top + kh * s.dil_h;
        int64_t r_lo, r_hi;
        valid_range(nr, s.H, s.stride_h, 0, ih0, &r_lo, &r_hi);
        if (r_lo >= r_hi) continue;
        f.nr = r_hi - r_lo;
        const T* in_row = inp + (n * s.H + ih0 + r_lo * s.stride_h) * s.W * s.C;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t lo = range[2 * kw], hi = range[2 * kw + 1];
          if (lo >= hi) continue;
          f.n = hi - lo;
          const T* x = in_row + (lo * s.stride_w - s.pad_left + kw * s.dil_w) * s.C;
          const T* d = d_group + r_lo * f.d_step + lo * ldd;
          T* p_t = part + (kh * s.KW + kw) * s.C * Kp;
          for (int64_t c0 = 0; c0 < s.C; c0 += kCB) {
            const int64_t cb = std::min<int64_t>(kCB, s.C - c0);
            f.in0 = x + c0;
            for (int64_t k0 = 0; k0 < Kp; k0 += KB) {
              f.d0 = d + k0;
              filter_tail<T, kCB, KV>(cb, p_t + c0 * Kp + k0, Kp, f);
            }
          }
        }
      }
      row += nr;
    }
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t k = 0; k < s.K; ++k) {
        T acc = T(0);
        for (int u = 0; u < nth; ++u) acc += parts[u][r * Kp + k];
        dweight[r * s.K + k] = acc;
      }
  }
}

}  // namespace

// The filter gradient with 4 filter vectors per block where there are 32 vector registers
// (6 x 4 accumulators) and that pads no more filters than 2 vectors do; else 2.
template <typename T>
void conv2d_direct_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s) {
  constexpr int64_t KB = kMaxFKV * Vec<T>::width;
  if constexpr (kMaxFKV > 2) {
    if ((s.K + KB - 1) / KB * KB == (s.K + KB / 2 - 1) / (KB / 2) * (KB / 2))
      return direct_backward_filter_kv<T, kMaxFKV>(dweight, dout, inp, s);
  }
  direct_backward_filter_kv<T, 2>(dweight, dout, inp, s);
}

namespace {

// dinp pixels [iw0, iw0+PB) of input row (n, ih): gather over kernel taps, vectorized over K.
// acc[j][c] sums dout[p, :] * weight[t, c, :] over the taps t and output pixels p that read
// input pixel j; a tap that hits no output pixel reads `zeros` (K zeros).
template <class T, int PB, int CS>
inline void data_block(T* dinp_px, const T* dout_img, const T* weight, const T* zeros, const Conv2dShape& s,
                       int64_t ih, int64_t iw0) {
  using V = typename Vec<T>::type;
  constexpr int VW = Vec<T>::width;
  const int64_t K = s.K, Kv = K / VW * VW;
  V acc[PB][CS] = {};
  T tail[PB][CS] = {};
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    // th = oh * stride_h (the stride-1 tests skip integer divisions, which cost more than the FMAs)
    const int64_t th = ih + s.pad_top - kh * s.dil_h;
    const int64_t oh = s.stride_h == 1 ? th : th / s.stride_h;
    if (th < 0 || (s.stride_h != 1 && th % s.stride_h != 0) || oh >= s.OH) continue;
    const T* d_row = dout_img + oh * s.OW * K;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const T* d[PB];
      const int64_t tw0 = iw0 + s.pad_left - kw * s.dil_w;
      if (s.stride_w == 1 && tw0 >= 0 && tw0 + PB <= s.OW) {
        // every pixel of the block reads an output (stride 1: consecutive ones), no checks
        // per pixel (paired, C 1-4: 0.85-0.90 of the time at both levels)
        for (int j = 0; j < PB; ++j) d[j] = d_row + (tw0 + j) * K;
      } else {
        bool any = false;
        for (int j = 0; j < PB; ++j) {
          const int64_t tw = iw0 + j + s.pad_left - kw * s.dil_w;
          const int64_t ow = s.stride_w == 1 ? tw : tw / s.stride_w;
          const bool ok = tw >= 0 && (s.stride_w == 1 || tw % s.stride_w == 0) && ow < s.OW;
          d[j] = ok ? d_row + ow * K : zeros;
          any |= ok;
        }
        if (!any) continue;
      }
      const T* w = weight + (kh * s.KW + kw) * CS * K;
      for (int64_t k = 0; k < Kv; k += VW) {
        V dv[PB];
#pragma GCC unroll 8
        for (int j = 0; j < PB; ++j) dv[j] = load<V>(d[j] + k);
#pragma GCC unroll 8
        for (int c = 0; c < CS; ++c) {
          const V wv = load<V>(w + c * K + k);
#pragma GCC unroll 8
          for (int j = 0; j < PB; ++j) acc[j][c] += dv[j] * wv;
        }
      }
      for (int64_t k = Kv; k < K; ++k)
        for (int c = 0; c < CS; ++c)
          for (int j = 0; j < PB; ++j) tail[j][c] += d[j][k] * w[c * K + k];
    }
  }
  // The PB*CS sums over the lanes, VW accumulators at a time: transposed, then added, they give
  // VW sums in one vector, instead of a horizontal sum per accumulator (paired: 0.96-0.98 of
  // the time for C 1-3 at both levels, 0.91 for C 4 at AVX-512).
  constexpr int NA = PB * CS;
  for (int g0 = 0; g0 < NA; g0 += VW) {
    V r[VW];
#pragma GCC unroll 16
    for (int i = 0; i < VW; ++i) r[i] = g0 + i < NA ? acc[(g0 + i) / CS][(g0 + i) % CS] : V{};
    simd::transpose<T>(r);
#pragma GCC unroll 16
    for (int i = 1; i < VW; ++i) r[0] += r[i];
    T sums[VW];
    simd::store(sums, r[0]);
    for (int i = 0; i < VW && g0 + i < NA; ++i) dinp_px[g0 + i] = tail[(g0 + i) / CS][(g0 + i) % CS] + sums[i];
  }
}

template <class T, int CS>
void backward_data_small(T* dinp, const T* dout, const T* weight, const T* zeros, const Conv2dShape& s) {
  // pixels per block: PB*CS accumulators + PB dout vectors within the 16 AVX2 / 32 AVX-512
  // registers (the weights enter the FMAs as memory operands); at AVX-512 4 pixels from 4 to 5
  // channels too (C 4: 0.66-0.70 of 2 pixels' time), not more (6 or 8 pixels for C 1-3: 1.03-1.2)
  constexpr int PB = simd::kBytes == 64 ? (CS <= 5 ? 4 : 3) : (CS <= 3 ? 4 : 2);
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
  for (int64_t row = 0; row < s.N * s.H; ++row) {
    const int64_t n = row / s.H, ih = row % s.H;
    const T* dout_img = dout + n * s.OH * s.OW * s.K;
    T* drow = dinp + row * s.W * CS;
    int64_t iw = 0;
    for (; iw + PB <= s.W; iw += PB) data_block<T, PB, CS>(drow + iw * CS, dout_img, weight, zeros, s, ih, iw);
    for (; iw < s.W; ++iw) data_block<T, 1, CS>(drow + iw * CS, dout_img, weight, zeros, s, ih, iw);
  }
}

}  // namespace

// dout (N,OH,OW,K), weight (KH,KW,C,K) -> dinp (N,H,W,C) for C <= kDirectDataMaxC.
template <typename T>
void conv2d_direct_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s) {
  FALTUNG_CHECK(s.C <= kDirectDataMaxC && s.groups == 1,
                "conv2d_direct_backward_data: needs groups 1 and at most " + std::to_string(kDirectDataMaxC) +
                    " input channels, received C=" + std::to_string(s.C));
  T* zeros = workspace<T>(s.K, WorkspaceSlot::Vectors);
  std::fill(zeros, zeros + s.K, T(0));
  switch (s.C) {
    case 1: backward_data_small<T, 1>(dinp, dout, weight, zeros, s); break;
    case 2: backward_data_small<T, 2>(dinp, dout, weight, zeros, s); break;
    case 3: backward_data_small<T, 3>(dinp, dout, weight, zeros, s); break;
    case 4: backward_data_small<T, 4>(dinp, dout, weight, zeros, s); break;
    case 5: backward_data_small<T, 5>(dinp, dout, weight, zeros, s); break;
    case 6: backward_data_small<T, 6>(dinp, dout, weight, zeros, s); break;
    case 7: backward_data_small<T, 7>(dinp, dout, weight, zeros, s); break;
  }
}

#define FALTUNG_CONV_DIRECT(T)                                                                          \
  template void conv2d_direct_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&, bool);   \
  template void conv2d_direct_forward_view<T>(T*, int64_t, int64_t, int64_t, const T*, const T*, const T*, \
                                              const Conv2dShape&, bool, bool);                           \
  template void conv2d_direct_backward_filter<T>(T*, const T*, const T*, const Conv2dShape&);           \
  template void conv2d_direct_backward_data<T>(T*, const T*, const T*, const Conv2dShape&);
FALTUNG_CONV_DIRECT(float)
FALTUNG_CONV_DIRECT(double)
#undef FALTUNG_CONV_DIRECT

}  // namespace faltung
