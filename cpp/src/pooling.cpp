// Max / average pooling over NHWC images and the scatter/gather kernels of their backward
// passes and of unpooling.
// N batch, H/W input size, C channels, KH/KW pool size, SH/SW strides, OH/OW output size.
// Fast kernels: OpenMP over (n, oh), the inner loop runs over the C contiguous channels.
#include "faltung/pooling.hpp"

#include <algorithm>
#include <type_traits>
#include <cstring>
#include <limits>

#include "faltung/common.hpp"
#include "simd.hpp"

namespace faltung {

namespace {
// Padding before the first element for a "same" pooling (TF rule, extra pad at the end).
int64_t same_pad_before(int64_t in, int64_t k, int64_t s) {
  const int64_t out = in / s + (in % s != 0);
  // (out - 1) * s + k - in, ordered so that a huge k or s cannot overflow
  const int64_t total = std::max<int64_t>(k - (in - (out - 1) * s), 0);
  return total / 2;
}
}  // namespace

Pool2dShape pool2d_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t KH, int64_t KW,
                         int64_t SH, int64_t SW, const std::string& padding, const std::string& op) {
  FALTUNG_CHECK(N >= 0 && H >= 1 && W >= 1 && C >= 1,
                op + ": expected an input with positive spatial and channel sizes, received shape " +
                    shape_str({N, H, W, C}));
  FALTUNG_CHECK(KH >= 1 && KW >= 1, op + ": expected a positive pool size, received " + shape_str({KH, KW}));
  FALTUNG_CHECK(SH >= 1 && SW >= 1, op + ": expected positive strides, received " + shape_str({SH, SW}));
  FALTUNG_CHECK(size_mul(H, W, op.c_str(), "H * W") < (int64_t(1) << 31),
                op + ": H*W must fit in int32 for the argmax indices");
  Pool2dShape s{N, H, W, C, KH, KW, SH, SW, 0, 0, 0, 0};
  if (padding == "valid") {
    s.OH = H >= KH ? (H - KH) / SH + 1 : 0;
    s.OW = W >= KW ? (W - KW) / SW + 1 : 0;
    FALTUNG_CHECK(s.OH >= 1 && s.OW >= 1,
                  op + ": pool size " + shape_str({KH, KW}) + " is larger than the input's spatial size " +
                      shape_str({H, W}) + " under padding=\"valid\": the output would be empty");
  } else if (padding == "same") {
    s.OH = H / SH + (H % SH != 0);  // ceil(H / SH) without the overflow of H + SH - 1
    s.OW = W / SW + (W % SW != 0);
    s.pad_top = same_pad_before(H, KH, SH);
    s.pad_left = same_pad_before(W, KW, SW);
  } else {
    FALTUNG_CHECK(false, op + ": expected padding \"valid\" or \"same\", received \"" + padding + "\"");
  }
  return s;
}

// ---- max pooling ---------------------------------------------------------------------

using FV = simd::Vec<float>::type;
using IV = simd::Vec<int32_t>::type;
constexpr int kFW = simd::Vec<float>::width;

// inp (N,H,W,C) -> out (N,OH,OW,C), argmax (N,OH,OW,C) or nullptr.
template <typename T>
void max_pool2d_forward(T* out, int32_t* argmax, const T* inp, const Pool2dShape& s) {
  const int64_t C = s.C;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const T* inp_n = inp + n * s.H * s.W * C;
      const int64_t h0 = oh * s.SH - s.pad_top;
      const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + s.KH, s.H);
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t w0 = ow * s.SW - s.pad_left;
        const int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + s.KW, s.W);
        const int64_t o = ((n * s.OH + oh) * s.OW + ow) * C;
        T* out_p = out + o;
        // The first in-bounds element starts the running maximum ...
        const T* first = inp_n + (hs * s.W + ws) * C;
        // (omp simd: the channel loops are independent; without it GCC must assume out_p
        // may alias x and keeps them scalar, 4x slower)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) out_p[c] = first[c];
        int64_t c0 = 0;  // channels [0, c0) already done in registers
        if constexpr (std::is_same_v<T, float>) {
          if (argmax) {
            // One vector of channels at a time in registers: running max and its index, one store each
            // (the memory loop below carries every compare through a store and a reload).
            int32_t* arg_p = argmax + o;
            for (; c0 + kFW <= C; c0 += kFW) {
              FV m = simd::load<FV>(first + c0);
              IV a = IV{} + int32_t(hs * s.W + ws);
              for (int64_t h = hs; h < he; ++h)
                for (int64_t w = (h == hs ? ws + 1 : ws); w < we; ++w) {
                  const FV v = simd::load<FV>(inp_n + (h * s.W + w) * C + c0);
                  // all ones where strictly larger (a later max never wins ties) or where
                  // v is the window's first NaN (NaN propagates, as in numpy and PyTorch)
                  const IV gt = (v > m) | ((v != v) & (m == m));
                  m = gt ? v : m;
                  a = gt ? (IV{} + int32_t(h * s.W + w)) : a;
                }
              simd::store(out_p + c0, m);
              simd::store(arg_p + c0, a);
            }
          }
        }
        if (argmax) {  // the remaining channels (all of them for double)
          int32_t* arg_p = argmax + o;
#pragma omp simd
          for (int64_t c = c0; c < C; ++c) arg_p[c] = int32_t(hs * s.W + ws);
          // ... and a later element replaces it only if strictly larger (first max wins)
          // or if it is the first NaN (NaN propagates).
          for (int64_t h = hs; h < he; ++h)
            for (int64_t w = (h == hs ? ws + 1 : ws); w < we; ++w) {
              const T* x = inp_n + (h * s.W + w) * C;
              const int32_t idx = int32_t(h * s.W + w);
#pragma omp simd
              for (int64_t c = c0; c < C; ++c) {
                const bool gt = x[c] > out_p[c] || (x[c] != x[c] && out_p[c] == out_p[c]);
                out_p[c] = gt ? x[c] : out_p[c];
                arg_p[c] = gt ? idx : arg_p[c];
              }
            }
        } else {
          for (int64_t h = hs; h < he; ++h)
            for (int64_t w = (h == hs ? ws + 1 : ws); w < we; ++w) {
              const T* x = inp_n + (h * s.W + w) * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c)
                out_p[c] = (x[c] > out_p[c] || x[c] != x[c]) ? x[c] : out_p[c];  // NaN propagates
            }
        }
      }
    }
  }
}

// Naive oracle: one output element at a time, window scanned in row-major order.
template <typename T>
void max_pool2d_forward_ref(T* out, int32_t* argmax, const T* inp, const Pool2dShape& s) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow)
        for (int64_t c = 0; c < s.C; ++c) {
          T best = -std::numeric_limits<T>::infinity();
          int32_t best_i = -1;
          for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t h = oh * s.SH - s.pad_top + kh, w = ow * s.SW - s.pad_left + kw;
              if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
              const T v = inp[((n * s.H + h) * s.W + w) * s.C + c];
              if (best_i < 0 || v > best || (v != v && best == best)) {  // first NaN wins
                best = v;
                best_i = int32_t(h * s.W + w);
              }
            }
          const int64_t o = ((n * s.OH + oh) * s.OW + ow) * s.C + c;
          out[o] = best;
          if (argmax) argmax[o] = best_i;
        }
}

// dout (N,OH,OW,C), argmax (N,OH,OW,C) -> dinp (N,H,W,C) (scatter-add, overwrites dinp).
template <typename T>
void max_pool2d_scatter(T* dinp, const T* dout, const int32_t* argmax, const Pool2dShape& s) {
  const int64_t C = s.C, HWC = s.H * s.W * C, OHWC = s.OH * s.OW * C;
  if (s.SH == s.KH && s.SW == s.KW && s.pad_top == 0 && s.pad_left == 0 && s.OH * s.SH <= s.H &&
      s.OW * s.SW <= s.W) {
    // Windows tile the input (the usual 2x2 / stride 2): each input element belongs to one
    // window, so it is written once, as dout where it was the argmax and 0 elsewhere: one
    // vectorizable pass instead of a memset plus a scalar scatter (2x faster, 64x32x32x32).
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < s.N * s.H; ++r) {
      const int64_t n = r / s.H, h = r % s.H, oh = h / s.SH;
      T* drow = dinp + r * s.W * C;
      if (oh >= s.OH) {  // rows below the last window
        std::memset(drow, 0, sizeof(T) * s.W * C);
        continue;
      }
      const int32_t* arow = argmax + (n * s.OH + oh) * s.OW * C;
      const T* orow = dout + (n * s.OH + oh) * s.OW * C;
      for (int64_t ow = 0; ow < s.OW; ++ow)
        for (int64_t j = 0; j < s.SW; ++j) {
          const int32_t id = static_cast<int32_t>(h * s.W + ow * s.SW + j);
          const int32_t* a = arow + ow * C;
          const T* g = orow + ow * C;
          T* d = drow + (ow * s.SW + j) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) d[c] = a[c] == id ? g[c] : T(0);
        }
      std::memset(drow + s.OW * s.SW * C, 0, sizeof(T) * (s.W - s.OW * s.SW) * C);  // right of the last
    }
    return;
  }
  // Windows of different output rows touch disjoint input rows when SH >= KH, so (n, oh)
  // may run in parallel; otherwise only images are independent.
  if (s.SH >= s.KH) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < s.N; ++n) std::memset(dinp + n * HWC, 0, sizeof(T) * HWC);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        T* dinp_n = dinp + n * HWC;
        const int64_t o = (n * s.OH + oh) * s.OW * C;
        for (int64_t ow = 0; ow < s.OW; ++ow)
          for (int64_t c = 0; c < C; ++c)
            dinp_n[int64_t(argmax[o + ow * C + c]) * C + c] += dout[o + ow * C + c];
      }
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < s.N; ++n) {
      T* dinp_n = dinp + n * HWC;
      std::memset(dinp_n, 0, sizeof(T) * HWC);
      const int64_t o = n * OHWC;
      for (int64_t p = 0; p < s.OH * s.OW; ++p)
        for (int64_t c = 0; c < C; ++c)
          dinp_n[int64_t(argmax[o + p * C + c]) * C + c] += dout[o + p * C + c];
    }
  }
}

// full (N,H,W,C), argmax (N,OH,OW,C) -> out (N,OH,OW,C) (gather, overwrites out).
template <typename T>
void max_pool2d_gather(T* out, const T* full, const int32_t* argmax, const Pool2dShape& s) {
  const int64_t C = s.C, HWC = s.H * s.W * C, P = s.OH * s.OW;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t p = 0; p < P; ++p) {
      const int64_t o = (n * P + p) * C;
      const T* full_n = full + n * HWC;
      for (int64_t c = 0; c < C; ++c) out[o + c] = full_n[int64_t(argmax[o + c]) * C + c];
    }
}

// ---- average pooling -----------------------------------------------------------------

// inp (N,H,W,C) -> out (N,OH,OW,C).
template <typename T>
void avg_pool2d_forward(T* out, const T* inp, const Pool2dShape& s) {
  const int64_t C = s.C;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const T* inp_n = inp + n * s.H * s.W * C;
      const int64_t h0 = oh * s.SH - s.pad_top;
      const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + s.KH, s.H);
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t w0 = ow * s.SW - s.pad_left;
        const int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + s.KW, s.W);
        T* out_p = out + ((n * s.OH + oh) * s.OW + ow) * C;
        const T inv = T(1) / T((he - hs) * (we - ws));
        // Each vector of channels sums its window in a register (summing into out_p through
        // memory reloads and stores it per window pixel, since out_p may alias the input).
        auto window_sum = [&](auto tag, int64_t c) {
          using V = decltype(tag);
          V acc{};
          for (int64_t h = hs; h < he; ++h)
            for (int64_t w = ws; w < we; ++w) acc += simd::load<V>(inp_n + (h * s.W + w) * C + c);
          simd::store(out_p + c, acc * inv);
        };
        constexpr int VW = simd::Vec<T>::width;
        int64_t c = 0;
        for (; c + VW <= C; c += VW) window_sum(typename simd::Vec<T>::type{}, c);
        for (; c < C; ++c) window_sum(T{}, c);
      }
    }
}

template <typename T>
void avg_pool2d_forward_ref(T* out, const T* inp, const Pool2dShape& s) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow)
        for (int64_t c = 0; c < s.C; ++c) {
          T sum = 0;
          int64_t count = 0;
          for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t h = oh * s.SH - s.pad_top + kh, w = ow * s.SW - s.pad_left + kw;
              if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
              sum += inp[((n * s.H + h) * s.W + w) * s.C + c];
              ++count;
            }
          out[((n * s.OH + oh) * s.OW + ow) * s.C + c] = sum / T(count);
        }
}

// dout (N,OH,OW,C) -> dinp (N,H,W,C). Written as a gather over the outputs whose window
// contains input pixel (h, w), so every (n, h) writes its own row: no races.
// Forward line differentiated: out[oh,ow] = sum_{window} x[h,w] / count(oh,ow).
template <typename T>
void avg_pool2d_backward(T* dinp, const T* dout, const Pool2dShape& s) {
  const int64_t C = s.C;
  // Output o covers input rows [o*S - pad, o*S - pad + K): o in [lo(i), hi(i)] for input i.
  auto lo = [](int64_t i, int64_t pad, int64_t K, int64_t S) {
    const int64_t a = i + pad - K + 1;  // o*S >= a
    return a <= 0 ? int64_t(0) : (a + S - 1) / S;
  };
  auto count = [](int64_t o, int64_t pad, int64_t K, int64_t S, int64_t L) {
    const int64_t b = o * S - pad;
    return std::min(b + K, L) - std::max<int64_t>(b, 0);
  };
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t oh0 = lo(h, s.pad_top, s.KH, s.SH);
      const int64_t oh1 = std::min((h + s.pad_top) / s.SH, s.OH - 1);
      for (int64_t w = 0; w < s.W; ++w) {
        T* dx = dinp + ((n * s.H + h) * s.W + w) * C;
        for (int64_t c = 0; c < C; ++c) dx[c] = T(0);
        const int64_t ow0 = lo(w, s.pad_left, s.KW, s.SW);
        const int64_t ow1 = std::min((w + s.pad_left) / s.SW, s.OW - 1);
        for (int64_t oh = oh0; oh <= oh1; ++oh) {
          const int64_t ch = count(oh, s.pad_top, s.KH, s.SH, s.H);
          for (int64_t ow = ow0; ow <= ow1; ++ow) {
            const T inv = T(1) / T(ch * count(ow, s.pad_left, s.KW, s.SW, s.W));
            const T* dy = dout + ((n * s.OH + oh) * s.OW + ow) * C;
            for (int64_t c = 0; c < C; ++c) dx[c] += dy[c] * inv;
          }
        }
      }
    }
}

#define FALTUNG_POOL_INSTANTIATE(T)                                                           \
  template void max_pool2d_forward<T>(T*, int32_t*, const T*, const Pool2dShape&);          \
  template void max_pool2d_forward_ref<T>(T*, int32_t*, const T*, const Pool2dShape&);      \
  template void max_pool2d_scatter<T>(T*, const T*, const int32_t*, const Pool2dShape&);    \
  template void max_pool2d_gather<T>(T*, const T*, const int32_t*, const Pool2dShape&);     \
  template void avg_pool2d_forward<T>(T*, const T*, const Pool2dShape&);                    \
  template void avg_pool2d_forward_ref<T>(T*, const T*, const Pool2dShape&);                \
  template void avg_pool2d_backward<T>(T*, const T*, const Pool2dShape&);
FALTUNG_POOL_INSTANTIATE(float)
FALTUNG_POOL_INSTANTIATE(double)
#undef FALTUNG_POOL_INSTANTIATE

}  // namespace faltung
