// Depthwise convolution (groups == C): NHWC, vectorized over the channels.
//
// N batch, H/W input size, C in-channels, m channel multiplier, K = C*m filters,
// KH/KW kernel, OH/OW output size. inp (N,H,W,C), weight (KH,KW,1,K) (Keras's depthwise
// kernel (KH,KW,C,m) reshaped), out (N,OH,OW,K). Output channel k = c*m + j reads input
// channel c = k / m:  out[n,oh,ow,k] = sum_{kh,kw} inp[n,ih,iw,k/m] * weight[kh,kw,k].
//
// m == 1 (K == C, MobileNet's and Xception's depthwise layers): the forward and the input
// gradient are both row passes (RowPass below): a destination row of pixels, each the sum over
// a list of taps (a source row, a pixel offset, a weight vector) of source pixel * weight, with
// the channels in the vector lanes. A register tile holds P pixels of two channel vectors (a
// window tile: of kWinVectors) across all taps, so each destination value is stored once (the first
// version kept the accumulator in the output row and re-read and re-wrote it for every tap:
// 2.7x PyTorch's time at 64 channels).
//   forward:        out row (n, oh); taps: rows ih = oh*sh - pt + kh*dh inside [0, H), every kw;
//                   source pixel ow*sw - pl + kw*dw.
//   input gradient: dinp row (n, ih), one pass per column phase q < sw (pixels iw = q + j*sw);
//                   taps: kh with ih + pt - kh*dh = oh*sh, 0 <= oh < OH, and kw with
//                   q + pl - kw*dw = o*sw: source pixel j + o of dout row oh. Each input pixel
//                   is written by exactly one pass (no scatter, no atomics).
// The filter gradient of each output row and kernel row: at stride 1 and dilation 1 with width
// 3 or 5 a window of input pixels slides along the row in registers (dot_window; a 3x3 kernel's
// three rows at once where they all lie inside the image, dot_window3x3), else each tap sums its
// pixels in four partial sums (dot_pixels); the bias gradient is summed in the same pass, into
// per-thread partials summed at the end. With both gradients asked for, one
// pass over the rows serves the input and the filter gradient (conv2d_depthwise_backward).
// Other multipliers (m > 1) keep the plain loops (madd_expand).
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "faltung/conv.hpp"
#include "elementwise.hpp"
#include "simd.hpp"

namespace faltung {

namespace {

// floor(a / b) and ceil(a / b) for b > 0 and any sign of a.
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

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

// Destination pixel j of a row pass reads pixel j*step + off of the source row src (pixel 0,
// channel 0) if that lies in [0, width) (else nothing: zero padding), times w (channel 0).
template <typename T>
struct Tap {
  const T* src;
  const T* w;
  int64_t off;
};

// A register tile: kPixels pixels x kVectors channel vectors (16 accumulators with 32
// registers, AVX-512; 8 with 16), so that each tap's bookkeeping (its row, offset and weight
// pointers) serves 16 / 8 FMAs.
constexpr int kPixels = simd::kBytes == 64 ? 8 : 4;
constexpr int kVectors = 2;
// Channel vectors per window tile: 2 with 32 registers (8 pixels x 2 accumulators + 5 x 2
// weights + 2 loaded at 5x5: 28), else 1. Measured against the window tile of one vector with
// its whole window in registers (paired builds, 2 threads, AVX-512, forward / training step):
// 3x3 (64,32,32,64) 0.93 / 0.94, 5x5 (32,16,16,128) 0.93 / 0.95, 3x3 (128,16,16,128) 0.99 /
// 0.97; at the avx2 level, with one vector either way, the same times.
constexpr int kWinVectors = simd::kBytes == 64 ? 2 : 1;

template <typename T>
struct RowPass {
  const Tap<T>* taps;
  int64_t ntaps, step, width, C;  // C: channels per pixel, in dst and in the sources
  T* dst;                         // pixel 0, channel 0
  int64_t dpx;                    // dst pixel stride (elements)
  const T* bias;                  // or nullptr: 0
  bool relu;
  // win > 0: step 1 and the taps in groups of win with offsets off, off + 1, ... (a kernel row
  // of width win, dilation 1): tiles then load each source pixel once per group and use it for
  // each of the group's win taps (win_tile), a third of the loads at 3x3.
  int win = 0;
  // Whole-vector stores bypass the caches (simd::stream; conv2d_depthwise_forward decides).
  bool stream = false;
  // Window tiles from pixel 0 on whatever the number of end pixels (run; the forward's rows).
  bool from_0 = false;

  template <typename V>
  V init(int64_t c) const {
    return bias ? simd::load<V>(bias + c) : V{};
  }
  // v (ReLU'd if r) to o. The tiles pass dst, dpx and relu as locals: read through `this`
  // after a store, GCC reloads them for every pixel (the store might have changed them).
  template <typename V>
  static void put(T* o, V v, bool r, bool st) {
    if (r) v = v > V{} ? v : V{};
    if constexpr (std::is_same_v<V, typename simd::Vec<T>::type>) {
      if (st) return simd::stream(o, v);
    }
    simd::store(o, v);
  }
  // Pixel j, channels [c, c + CV vectors), every tap checked.
  template <typename V, int CV>
  void pixel(int64_t j, int64_t c) const {
    constexpr int64_t VW = sizeof(V) / sizeof(T);
    V acc[CV];
    for (int v = 0; v < CV; ++v) acc[v] = init<V>(c + v * VW);
    for (int64_t t = 0; t < ntaps; ++t) {
      const int64_t p = j * step + taps[t].off;
      if (p < 0 || p >= width) continue;
      for (int v = 0; v < CV; ++v)
        acc[v] += simd::load<V>(taps[t].src + p * C + c + v * VW) * simd::load<V>(taps[t].w + c + v * VW);
    }
    for (int v = 0; v < CV; ++v) put(dst + j * dpx + c + v * VW, acc[v], relu, stream);
  }
  // Pixels [j, j + P), channels [c, c + CV vectors), no checks.
  template <typename V, int P, int CV>
  void tile(int64_t j, int64_t c) const {
    constexpr int64_t VW = sizeof(V) / sizeof(T);
    V acc[P][CV];
#pragma GCC unroll 8
    for (int v = 0; v < CV; ++v) {
      const V b = init<V>(c + v * VW);
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[p][v] = b;
    }
    const int64_t ps = step * C;
    for (int64_t t = 0; t < ntaps; ++t) {
      const T* s = taps[t].src + (j * step + taps[t].off) * C + c;
      const T* w = taps[t].w + c;
#pragma GCC unroll 8
      for (int v = 0; v < CV; ++v) {
        const V wv = simd::load<V>(w + v * VW);
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) acc[p][v] += simd::load<V>(s + p * ps + v * VW) * wv;
      }
    }
    T* const o = dst + j * dpx + c;
    const int64_t d = dpx;
    const bool r = relu, st = stream;
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
      for (int v = 0; v < CV; ++v) put(o + p * d + v * VW, acc[p][v], r, st);
  }
  // Pixels [j, j + P), channels [c, c + CV vectors), taps in groups of KW (win == KW).
  // Checked: source pixels outside [0, width) count as zeros (the blocks at a row's ends), else
  // no checks. Per group the KW weights of the CV vectors stay in registers and the window's
  // source pixels are loaded one at a time, each feeding the (up to KW) pixels it touches: P CV
  // accumulators + KW CV weights + CV loaded values, and one address step per source pixel for
  // all CV vectors.
  template <typename V, int P, int KW, int CV, bool Checked>
  void win_tile(int64_t j, int64_t c) const {
    constexpr int64_t VW = sizeof(V) / sizeof(T);
    V acc[P][CV];
#pragma GCC unroll 4
    for (int v = 0; v < CV; ++v) {
      const V b = init<V>(c + v * VW);
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[p][v] = b;
    }
    for (int64_t g = 0; g < ntaps; g += KW) {
      V w[KW][CV];
#pragma GCC unroll 8
      for (int k = 0; k < KW; ++k)
#pragma GCC unroll 4
        for (int v = 0; v < CV; ++v) w[k][v] = simd::load<V>(taps[g + k].w + c + v * VW);
      const T* row = taps[g].src + c;
      const int64_t i0 = j + taps[g].off;  // the source pixel of the window's first value
#pragma GCC unroll 16
      for (int i = 0; i < P + KW - 1; ++i) {
        // (only the first and last KW - 1 source pixels of a window may lie outside the row:
        // run's win_from_0)
        const bool inside = !(Checked && (i < KW - 1 || i >= P)) || (i0 + i >= 0 && i0 + i < width);
        V x[CV];
#pragma GCC unroll 4
        for (int v = 0; v < CV; ++v) x[v] = inside ? simd::load<V>(row + (i0 + i) * C + v * VW) : V{};
#pragma GCC unroll 8
        for (int k = 0; k < KW; ++k) {
          const int p = i - k;  // the destination pixel that source pixel i meets with tap k
          if (p < 0 || p >= P) continue;
#pragma GCC unroll 4
          for (int v = 0; v < CV; ++v) acc[p][v] += x[v] * w[k][v];
        }
      }
    }
    T* const o = dst + j * dpx + c;
    const int64_t d = dpx;
    const bool r = relu, st = stream;
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 4
      for (int v = 0; v < CV; ++v) put(o + p * d + v * VW, acc[p][v], r, st);
  }
  // Every channel of pixels [j, j + P): kWinVectors vectors at a time, then one, then single
  // channels.
  template <int P, int KW, bool Checked>
  void win_tiles(int64_t j) const {
    using V = typename simd::Vec<T>::type;
    constexpr int VW = simd::Vec<T>::width;
    int64_t c = 0;
    if constexpr (kWinVectors > 1)
      for (; c + kWinVectors * VW <= C; c += kWinVectors * VW) win_tile<V, P, KW, kWinVectors, Checked>(j, c);
    for (; c + VW <= C; c += VW) win_tile<V, P, KW, 1, Checked>(j, c);
    for (; c < C; ++c) win_tile<T, P, KW, 1, Checked>(j, c);
  }
  template <int KW>
  int64_t win_run(int64_t j, int64_t hi) const {
    for (; j + kPixels <= hi; j += kPixels) win_tiles<kPixels, KW, false>(j);
    if (kPixels > 4 && j + 4 <= hi) win_tiles<4, KW, false>(j), j += 4;
    if (j + 2 <= hi) win_tiles<2, KW, false>(j), j += 2;
    if (j < hi) win_tiles<1, KW, false>(j), ++j;
    return j;
  }
  // Destination pixels [0, n) in window tiles from pixel 0 on (at AVX-512 a 16-pixel row in two
  // tiles of 8), those with a pixel outside [lo, hi) checked.
  template <int KW>
  void win_row(int64_t n, int64_t lo, int64_t hi) const {
    int64_t j = 0;
    auto block = [&](auto size) {
      constexpr int P = decltype(size)::value;
      if (j >= lo && j + P <= hi)
        win_tiles<P, KW, false>(j);
      else
        win_tiles<P, KW, true>(j);
      j += P;
    };
    while (j + kPixels <= n) block(std::integral_constant<int, kPixels>{});
    if (kPixels > 4 && j + 4 <= n) block(std::integral_constant<int, 4>{});
    if (j + 2 <= n) block(std::integral_constant<int, 2>{});
    if (j < n) block(std::integral_constant<int, 1>{});
  }
  // f(V{}, std::integral_constant<int, CV>{}, c) for each channel block [c, c + CV vectors) of a
  // pixel: pairs of vectors, a vector, then single channels.
  template <typename F>
  void channels(F&& f) const {
    using V = typename simd::Vec<T>::type;
    constexpr int VW = simd::Vec<T>::width;
    int64_t c = 0;
    for (; c + kVectors * VW <= C; c += kVectors * VW) f(V{}, std::integral_constant<int, kVectors>{}, c);
    for (; c + VW <= C; c += VW) f(V{}, std::integral_constant<int, 1>{}, c);
    for (; c < C; ++c) f(T{}, std::integral_constant<int, 1>{}, c);
  }
  template <int P>
  void tiles(int64_t j) const {
    channels([&](auto v, auto cv, int64_t c) {
      this->template tile<decltype(v), P, decltype(cv)::value>(j, c);
    });
  }
  // Destination pixels [0, n), each pixel's channels together (the rows are read and written
  // as sequential streams).
  void run(int64_t n) const {
    // [lo, hi): the pixels whose every tap lies inside the source row
    int64_t lo = 0, hi = n;
    for (int64_t t = 0; t < ntaps; ++t) {
      const int64_t off = taps[t].off;  // (step 1, the common case, without the divisions)
      lo = std::max(lo, step == 1 ? -off : ceil_div(-off, step));
      hi = std::min(hi, step == 1 ? width - off : floor_div(width - 1 - off, step) + 1);
    }
    lo = std::min(lo, n);  // (past n when the padding is wider than the row: no interior)
    hi = std::max(hi, lo);
    auto checked = [&](int64_t j) {
      channels([&](auto v, auto cv, int64_t c) {
        this->template pixel<decltype(v), decltype(cv)::value>(j, c);
      });
    };
    // The forward's rows (from_0), and other rows whose end pixels are many (their taps at
    // least half a row's pixels: 5x5 on rows of up to 40 pixels, 3x3 on rows of up to 12), go
    // in window tiles from pixel 0 on, the end pixels' tiles checked (win_row); else the end
    // pixels are checked tap by tap (`pixel`) and the interior from lo on goes in window tiles,
    // the last ones narrower. Paired, with both ways for every row (window tiles of one vector),
    // forward / training step: 5x5 (32,16,16,128) 0.84 / 0.91, 5x5 (32,32,32,64) 0.93 / 0.97,
    // 3x3 (64,8,8,256) 0.97 / 0.95; 3x3 (64,16,16,128) level; 3x3 (64,32,32,64) 0.96 / 1.05.
    // With the two-vector window tiles the forward won on the rest too, 3x3 (64,32,32,64) 0.96
    // and (128,16,16,128) 0.95, but the input gradient's rows lost (training step 1.065 at
    // (128,16,16,128)), so those keep the rule.
    // win_row checks only the first and last KW - 1 source pixels of a tile's window: those
    // between lie inside the row when every group's first offset off has off + KW - 1 >= 0
    // and n + off <= width (padding of at most KW - 1 on each side).
    bool win_from_0 = win > 0 && (from_0 || (lo + n - hi) * win * 2 >= n);
    for (int64_t g = 0; win_from_0 && g < ntaps; g += win)
      win_from_0 = taps[g].off + win - 1 >= 0 && n + taps[g].off <= width;
    if (win_from_0 && win == 3) return win_row<3>(n, lo, hi);
    if (win_from_0 && win == 5) return win_row<5>(n, lo, hi);
    int64_t j = 0;
    for (; j < lo; ++j) checked(j);
    if (win == 3) j = win_run<3>(j, hi);
    if (win == 5) j = win_run<5>(j, hi);
    for (; j + kPixels <= hi; j += kPixels) tiles<kPixels>(j);
    if (kPixels > 4 && j + 4 <= hi) tiles<4>(j), j += 4;
    if (j + 2 <= hi) tiles<2>(j), j += 2;
    if (j < hi) tiles<1>(j), ++j;
    for (; j < n; ++j) checked(j);
  }
};

// taps.push_back({src, w, off}), field by field: the aggregate built on the stack with two
// 8-byte stores and copied with one 16-byte load stalled on store forwarding (perf: 8% of the
// 3x3 forward on (64, 32, 32, 64), 9 taps per 32-pixel row).
template <typename T>
inline void add_tap(std::vector<Tap<T>>& taps, const T* src, const T* w, int64_t off) {
  Tap<T>& t = taps.emplace_back();
  t.src = src;
  t.w = w;
  t.off = off;
}

// The kernel widths with a window tile (RowPass::win).
inline int window(int64_t KW) { return KW == 3 || KW == 5 ? int(KW) : 0; }

// Forward of one output row (n, oh), m == 1.
template <typename T>
void forward_row(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s, int64_t n,
                 int64_t oh, bool relu, bool stream, std::vector<Tap<T>>& taps) {
  taps.clear();
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
    if (ih < 0 || ih >= s.H) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw)
      add_tap(taps, inp + (n * s.H + ih) * s.W * s.C, weight + (kh * s.KW + kw) * s.K, kw * s.dil_w - s.pad_left);
  }
  RowPass<T> pass{taps.data(), int64_t(taps.size()), s.stride_w, s.W, s.C,
                  out + (n * s.OH + oh) * s.OW * s.K, s.K, bias, relu};
  if (s.stride_w == 1 && s.dil_w == 1) pass.win = window(s.KW);
  pass.stream = stream;
  pass.from_0 = true;
  pass.run(s.OW);
}

// Input gradient of one input row (n, ih), m == 1: one pass per column phase; stream: whole
// vectors with streaming stores (the caller fences).
template <typename T>
void backward_data_row(T* dinp, const T* dout, const T* weight, const Conv2dShape& s, int64_t n, int64_t ih,
                       std::vector<Tap<T>>& taps, bool stream = false) {
  for (int64_t q = 0; q < std::min(s.stride_w, s.W); ++q) {
    taps.clear();
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t th = ih + s.pad_top - kh * s.dil_h;  // = oh * stride_h
      if (th < 0 || th % s.stride_h) continue;
      const int64_t oh = th / s.stride_h;
      if (oh >= s.OH) continue;
      for (int64_t i = 0; i < s.KW; ++i) {  // kw descending: the offsets ascend
        const int64_t kw = s.KW - 1 - i;
        const int64_t tw = q + s.pad_left - kw * s.dil_w;  // = (ow - j) * stride_w
        if (floor_div(tw, s.stride_w) * s.stride_w != tw) continue;
        add_tap(taps, dout + (n * s.OH + oh) * s.OW * s.K, weight + (kh * s.KW + kw) * s.K,
                floor_div(tw, s.stride_w));
      }
    }
    RowPass<T> pass{taps.data(), int64_t(taps.size()), 1, s.OW, s.C,
                    dinp + ((n * s.H + ih) * s.W + q) * s.C, s.stride_w * s.C, nullptr, false};
    if (s.stride_w == 1 && s.dil_w == 1) pass.win = window(s.KW);
    pass.stream = stream;
    pass.run((s.W - q + s.stride_w - 1) / s.stride_w);
  }
}

// acc[c] += sum over ow in [lo, hi) of x[(ow*sw + off)*C + c] * g[ow*C + c], channels [0, C):
// four partial sums per channel vector.
template <typename T>
void dot_pixels(T* acc, const T* x, const T* g, int64_t lo, int64_t hi, int64_t sw, int64_t off, int64_t C) {
  using V = typename simd::Vec<T>::type;
  constexpr int VW = simd::Vec<T>::width;
  const int64_t xs = sw * C;
  int64_t c = 0;
  auto sum = [&](auto zero) {
    using W = decltype(zero);
    W a0 = zero, a1 = zero, a2 = zero, a3 = zero;
    const T* xp = x + (lo * sw + off) * C + c;
    const T* gp = g + lo * C + c;
    int64_t ow = lo;
    for (; ow + 4 <= hi; ow += 4, xp += 4 * xs, gp += 4 * C) {
      a0 += simd::load<W>(xp) * simd::load<W>(gp);
      a1 += simd::load<W>(xp + xs) * simd::load<W>(gp + C);
      a2 += simd::load<W>(xp + 2 * xs) * simd::load<W>(gp + 2 * C);
      a3 += simd::load<W>(xp + 3 * xs) * simd::load<W>(gp + 3 * C);
    }
    for (; ow < hi; ++ow, xp += xs, gp += C) a0 += simd::load<W>(xp) * simd::load<W>(gp);
    simd::store(acc + c, simd::load<W>(acc + c) + ((a0 + a1) + (a2 + a3)));
  };
  for (; c + VW <= C; c += VW) sum(V{});
  for (; c < C; ++c) sum(T(0));
}

// The filter gradient of one kernel row at stride 1 and dilation 1, KW in {3, 5}: acc (KW, C)
// += sum over ow < n of x[ow + off + kw] * g[ow], where input pixels outside [0, W) are zeros.
// A window of KW input pixels slides along the row in registers: per output pixel one x and one
// g load per channel vector feed KW FMAs; two accumulator sets (even and odd pixels) halve the
// FMA chains; CV channel vectors side by side make the row a sequential stream. The pixels at
// the row's ends, whose window leaves the row, check each tap.
template <typename T, int KW, int CV, typename W_>
void dot_window_block(T* acc, const T* x, const T* g, int64_t n, int64_t W, int64_t off, int64_t C,
                      int64_t lo, int64_t hi, int64_t c) {
  constexpr int64_t VW = sizeof(W_) / sizeof(T);
  W_ a0[KW][CV], a1[KW][CV], xw[KW][CV];
#pragma GCC unroll 8
  for (int k = 0; k < KW; ++k)
#pragma GCC unroll 4
    for (int v = 0; v < CV; ++v) a0[k][v] = a1[k][v] = W_{};
  auto edge = [&](int64_t ow) {
#pragma GCC unroll 4
    for (int v = 0; v < CV; ++v) {
      const W_ gv = simd::load<W_>(g + ow * C + c + v * VW);
#pragma GCC unroll 8
      for (int k = 0; k < KW; ++k) {
        const int64_t iw = ow + off + k;
        if (iw >= 0 && iw < W) a0[k][v] += simd::load<W_>(x + iw * C + c + v * VW) * gv;
      }
    }
  };
  for (int64_t ow = 0; ow < lo; ++ow) edge(ow);
  if (hi > lo) {
    const T* xp = x + (lo + off) * C + c;  // input pixel lo + off: the window's first
    const T* gp = g + lo * C + c;
#pragma GCC unroll 8
    for (int k = 0; k < KW - 1; ++k)
#pragma GCC unroll 4
      for (int v = 0; v < CV; ++v) xw[k][v] = simd::load<W_>(xp + k * C + v * VW);
    int64_t ow = lo;
    for (; ow + 2 <= hi; ow += 2, xp += 2 * C, gp += 2 * C) {
#pragma GCC unroll 4
      for (int v = 0; v < CV; ++v) {
        xw[KW - 1][v] = simd::load<W_>(xp + (KW - 1) * C + v * VW);
        const W_ xn = simd::load<W_>(xp + KW * C + v * VW);
        const W_ g0 = simd::load<W_>(gp + v * VW), g1 = simd::load<W_>(gp + C + v * VW);
#pragma GCC unroll 8
        for (int k = 0; k < KW; ++k) a0[k][v] += xw[k][v] * g0;
#pragma GCC unroll 8
        for (int k = 0; k < KW - 1; ++k) a1[k][v] += xw[k + 1][v] * g1;
        a1[KW - 1][v] += xn * g1;
#pragma GCC unroll 8
        for (int k = 0; k < KW - 2; ++k) xw[k][v] = xw[k + 2][v];
        xw[KW - 2][v] = xn;
      }
    }
    if (ow < hi) {
#pragma GCC unroll 4
      for (int v = 0; v < CV; ++v) {
        xw[KW - 1][v] = simd::load<W_>(xp + (KW - 1) * C + v * VW);
        const W_ g0 = simd::load<W_>(gp + v * VW);
#pragma GCC unroll 8
        for (int k = 0; k < KW; ++k) a0[k][v] += xw[k][v] * g0;
      }
    }
  }
  for (int64_t ow = hi; ow < n; ++ow) edge(ow);
#pragma GCC unroll 8
  for (int k = 0; k < KW; ++k)
#pragma GCC unroll 4
    for (int v = 0; v < CV; ++v) {
      T* a = acc + k * C + c + v * VW;
      simd::store(a, simd::load<W_>(a) + (a0[k][v] + a1[k][v]));
    }
}
template <typename T, int KW>
void dot_window(T* acc, const T* x, const T* g, int64_t n, int64_t W, int64_t off, int64_t C) {
  const int64_t lo = std::min(n, std::max<int64_t>(0, -off));
  const int64_t hi = std::max(lo, std::min(n, W - off - KW + 1));
  using V = typename simd::Vec<T>::type;
  constexpr int VW = simd::Vec<T>::width;
  constexpr int CV = simd::kBytes == 64 && KW <= 3 ? 2 : 1;  // 3 x 3 x CV registers of 32 / 16
  int64_t c = 0;
  for (; c + CV * VW <= C; c += CV * VW) dot_window_block<T, KW, CV, V>(acc, x, g, n, W, off, C, lo, hi, c);
  for (; c + VW <= C; c += VW) dot_window_block<T, KW, 1, V>(acc, x, g, n, W, off, C, lo, hi, c);
  for (; c < C; ++c) dot_window_block<T, KW, 1, T>(acc, x, g, n, W, off, C, lo, hi, c);
}

}  // namespace

// inp (N,H,W,C), weight (KH,KW,1,K), bias (K)|nullptr -> out (N,OH,OW,K). Parallel over (n, oh).
template <typename T>
void conv2d_depthwise_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                              bool relu) {
  const int64_t C = s.C, K = s.K, m = K / C;
  if (m == 1) {
    // Streamed above 8 MB (simd::stream_rows), as conv.cpp's 1x1 forward. Paired, 3x3 on (64,
    // 32, 32, 64), 16 MB out: 0.79-0.92 of the time in three runs, 5x5 on (128, 16, 16, 128):
    // 0.96; the unchanged 4-8 MB shapes in the same runs 0.97-1.04.
    const bool stream = simd::stream_rows(s.N * s.OH * s.OW, K * int64_t(sizeof(T)), out);
#pragma omp parallel num_threads(conv_threads(s))
    {
      std::vector<Tap<T>> taps;
#pragma omp for schedule(static) nowait
      for (int64_t r = 0; r < s.N * s.OH; ++r)
        forward_row(out, inp, weight, bias, s, r / s.OH, r % s.OH, relu, stream, taps);
      if (stream) simd::stream_fence();  // each thread orders its own streaming stores
    }
    return;
  }
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
  if (m == 1) {
    const bool stream = simd::stream_rows(s.N * s.H * s.W, C * int64_t(sizeof(T)), dinp);  // (as below)
#pragma omp parallel num_threads(conv_threads(s))
    {
      std::vector<Tap<T>> taps;
#pragma omp for schedule(static) nowait
      for (int64_t r = 0; r < s.N * s.H; ++r)
        backward_data_row(dinp, dout, weight, s, r / s.H, r % s.H, taps, stream);
      if (stream) simd::stream_fence();  // each thread orders its own streaming stores
    }
    return;
  }
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
          for (int64_t c = 0; c < C; ++c)
            for (int64_t j = 0; j < m; ++j) acc[c] += g[c * m + j] * w[c * m + j];
        }
      }
    }
  }
}

namespace {

// The filter gradient of a 3x3 kernel's three rows at once, for an output row whose three input
// rows x[0..2] all lie inside the image (stride 1, dilation 1 along the row): acc (3, 3, C) +=
// sum over ow < n of x[kh][ow + off + kw] * g[ow], input pixels outside [0, W) zeros, and, if
// bacc, bacc (C) += sum over ow of g[ow]. dot_window's sliding windows for all three rows: per
// output pixel one g and three x loads per channel vector feed 9 FMAs (dot_window row by row:
// one g and one x load per 3 FMAs, and g loaded three times). Paired, training step: 3x3
// (64,32,32,64) 0.92, (64,8,8,256) 0.95, (128,16,16,128) 0.995. One channel vector per block:
// two would need 40 registers.
template <typename T, typename W_>
void dot_window3x3_block(T* acc, T* bacc, const T* const (&x)[3], const T* g, int64_t n, int64_t W,
                         int64_t off, int64_t C, int64_t lo, int64_t hi, int64_t c) {
  W_ a[3][3], xw[3][3], b{};
#pragma GCC unroll 3
  for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
    for (int k = 0; k < 3; ++k) a[r][k] = W_{};
  auto edge = [&](int64_t ow) {
    const W_ gv = simd::load<W_>(g + ow * C + c);
    b += gv;
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
      for (int k = 0; k < 3; ++k) {
        const int64_t iw = ow + off + k;
        if (iw >= 0 && iw < W) a[r][k] += simd::load<W_>(x[r] + iw * C + c) * gv;
      }
  };
  for (int64_t ow = 0; ow < lo; ++ow) edge(ow);
  int64_t ow = lo;
  if (hi > lo) {
    // window slot s of row r holds input pixel ow + off + j with j = s mod 3
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r)
#pragma GCC unroll 2
      for (int k = 0; k < 2; ++k) xw[r][k] = simd::load<W_>(x[r] + (lo + off + k) * C + c);
    auto step = [&](auto phase) {
      constexpr int P = decltype(phase)::value;
      const int64_t o = ow + P;
      const W_ gv = simd::load<W_>(g + o * C + c);
      b += gv;
#pragma GCC unroll 3
      for (int r = 0; r < 3; ++r) {
        xw[r][(P + 2) % 3] = simd::load<W_>(x[r] + (o + off + 2) * C + c);
#pragma GCC unroll 3
        for (int k = 0; k < 3; ++k) a[r][k] += xw[r][(P + k) % 3] * gv;
      }
    };
    for (; ow + 3 <= hi; ow += 3) {
      step(std::integral_constant<int, 0>{});
      step(std::integral_constant<int, 1>{});
      step(std::integral_constant<int, 2>{});
    }
    if (ow < hi) step(std::integral_constant<int, 0>{});
    if (ow + 1 < hi) step(std::integral_constant<int, 1>{});
    ow = hi;
  }
  for (; ow < n; ++ow) edge(ow);
#pragma GCC unroll 3
  for (int r = 0; r < 3; ++r)
#pragma GCC unroll 3
    for (int k = 0; k < 3; ++k) {
      T* p = acc + (r * 3 + k) * C + c;
      simd::store(p, simd::load<W_>(p) + a[r][k]);
    }
  if (bacc) simd::store(bacc + c, simd::load<W_>(bacc + c) + b);
}
template <typename T>
void dot_window3x3(T* acc, T* bacc, const T* const (&x)[3], const T* g, int64_t n, int64_t W, int64_t off,
                   int64_t C) {
  const int64_t lo = std::min(n, std::max<int64_t>(0, -off));
  const int64_t hi = std::max(lo, std::min(n, W - off - 2));
  using V = typename simd::Vec<T>::type;
  constexpr int VW = simd::Vec<T>::width;
  int64_t c = 0;
  for (; c + VW <= C; c += VW) dot_window3x3_block<T, V>(acc, bacc, x, g, n, W, off, C, lo, hi, c);
  for (; c < C; ++c) dot_window3x3_block<T, T>(acc, bacc, x, g, n, W, off, C, lo, hi, c);
}

// Output row r = (n, oh)'s share of the filter gradient into acc (KH,KW,1,K) and, if bias, of
// the bias gradient into acc + KH*KW*K. win: the kernel width of a window (dot_window) or 0.
template <typename T>
void filter_row(T* acc, const T* dout, const T* inp, const Conv2dShape& s, int64_t r, int win, bool bias) {
  const int64_t C = s.C, K = s.K, m = K / C;
  const int64_t n = r / s.OH, oh = r % s.OH;
  const T* g = dout + r * s.OW * K;
  if (win == 3 && s.KH == 3) {  // (win: m == 1, stride_w 1, dilation_w 1)
    const int64_t ih0 = oh * s.stride_h - s.pad_top;
    if (ih0 >= 0 && ih0 + 2 * s.dil_h < s.H) {
      const T* const x[3] = {inp + (n * s.H + ih0) * s.W * C, inp + (n * s.H + ih0 + s.dil_h) * s.W * C,
                             inp + (n * s.H + ih0 + 2 * s.dil_h) * s.W * C};
      dot_window3x3(acc, bias ? acc + s.KH * s.KW * K : nullptr, x, g, s.OW, s.W, -s.pad_left, C);
      return;
    }
  }
  if (bias) elementwise::sum_rows(acc + s.KH * s.KW * K, g, s.OW, K);
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
    if (ih < 0 || ih >= s.H) continue;
    const T* x = inp + (n * s.H + ih) * s.W * C;
    T* acc_kh = acc + kh * s.KW * K;
    if (m > 1) {
      for (int64_t ow = 0; ow < s.OW; ++ow)
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
          if (iw < 0 || iw >= s.W) continue;
          madd_expand(acc_kh + kw * K, x + iw * C, g + ow * K, C, m);
        }
      continue;
    }
    if (win == 3) {
      dot_window<T, 3>(acc_kh, x, g, s.OW, s.W, -s.pad_left, C);
      continue;
    }
    if (win == 5) {
      dot_window<T, 5>(acc_kh, x, g, s.OW, s.W, -s.pad_left, C);
      continue;
    }
    for (int64_t kw = 0; kw < s.KW; ++kw) {  // output pixels [lo, hi): input pixel inside the row
      const int64_t off = kw * s.dil_w - s.pad_left;
      const int64_t lo = std::max<int64_t>(0, ceil_div(-off, s.stride_w));
      const int64_t hi = std::min<int64_t>(s.OW, floor_div(s.W - 1 - off, s.stride_w) + 1);
      if (hi > lo) dot_pixels(acc_kh + kw * K, x, g, lo, hi, s.stride_w, off, C);
    }
  }
}

}  // namespace

// The gradients of a depthwise conv in one pass over the rows: dinp (N,H,W,C) if given (m == 1,
// backward_data_row; else the gather loops of conv2d_depthwise_backward_data), dweight (KH,KW,1,K)
// and dbias (K) if given. Row index i of image n serves input row i (dinp) and output row i
// (dweight, dbias), so that at stride 1 the dout rows both read are in cache once: dout is read
// from memory once instead of twice. The filter and bias gradients are per-thread partials
// (WorkspaceSlot::Partials), summed at the end.
template <typename T>
void conv2d_depthwise_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                               const Conv2dShape& s) {
  const int64_t K = s.K, m = K / s.C, WK = s.KH * s.KW * K;
  if (dinp && (m > 1 || !dweight)) {  // (m > 1: the data gradient's own loops, then the rest)
    conv2d_depthwise_backward_data(dinp, dout, weight, s);
    dinp = nullptr;
  }
  if (!dweight) {
    if (dbias) conv2d_bias_backward(dbias, dout, s);
    return;
  }
  const int64_t R = dinp ? std::max(s.H, s.OH) : s.OH, rows = s.N * R;
  const int64_t part = WK + (dbias ? K : 0);  // a thread's partial: dweight, then dbias
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(conv_threads(s), rows)));
  const int win = m == 1 && s.stride_w == 1 && s.dil_w == 1 ? window(s.KW) : 0;
  std::vector<T*> parts(nt, nullptr);
  // dinp streamed above 8 MB (simd::stream_rows). Paired, training step (forward + this): 3x3
  // on (64, 32, 32, 64), 16 MB: 0.72; (128, 16, 16, 128): 0.76; 12 MB (48, 32, 32, 64) and (96, 16,
  // 16, 128): 0.74 / 0.80; 5x5 on (64, 32, 32, 64): 0.95; 3x3 stride 2 (its column phases
  // write every other pixel, each of whole lines) (64, 32, 32, 64) 0.90, (128, 32, 32, 64) 0.77.
  const bool stream = dinp && simd::stream_rows(s.N * s.H * s.W, s.C * int64_t(sizeof(T)), dinp);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    T* acc = workspace<T>(part, WorkspaceSlot::Partials);
    std::fill(acc, acc + part, T(0));
    parts[t] = acc;
    std::vector<Tap<T>> taps;
    for (int64_t r = rows * t / nth; r < rows * (t + 1) / nth; ++r) {
      const int64_t n = r / R, i = r % R;
      if (dinp && i < s.H) backward_data_row(dinp, dout, weight, s, n, i, taps, stream);
      if (i < s.OH) filter_row(acc, dout, inp, s, n * s.OH + i, win, dbias != nullptr);
    }
    if (stream) simd::stream_fence();  // each thread orders its own streaming stores
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t e = 0; e < part; ++e) {
      T v = parts[0][e];
      for (int u = 1; u < nth; ++u) v += parts[u][e];
      if (e < WK) dweight[e] = v;
      else dbias[e - WK] = v;
    }
  }
}

// dout (N,OH,OW,K), inp (N,H,W,C) -> dweight (KH,KW,1,K): dweight[kh,kw,k] = sum over
// (n,oh,ow) of inp[n,ih,iw,k/m] * dout[n,oh,ow,k]; dbias[k] (if given) = sum of dout[..., k].
template <typename T>
void conv2d_depthwise_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s,
                                      T* dbias) {
  conv2d_depthwise_backward<T>(nullptr, dweight, dbias, dout, inp, nullptr, s);
}

#define FALTUNG_CONV_DW(T)                                                                             \
  template void conv2d_depthwise_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&, bool); \
  template void conv2d_depthwise_backward_data<T>(T*, const T*, const T*, const Conv2dShape&);          \
  template void conv2d_depthwise_backward_filter<T>(T*, const T*, const T*, const Conv2dShape&, T*);     \
  template void conv2d_depthwise_backward<T>(T*, T*, T*, const T*, const T*, const T*, const Conv2dShape&);
FALTUNG_CONV_DW(float)
FALTUNG_CONV_DW(double)
#undef FALTUNG_CONV_DW

}  // namespace faltung
