// cpp/cuda/pooling.cuh — max and average pooling over NHWC images, forward and backward, as
// kernel bodies and launch sequences (see hd.cuh for the design). Oracle: cpp/src/pooling.cpp;
// geometry and conventions are faltung/pooling.hpp's (Pool2dShape from pool2d_shape, the first
// maximum in row-major window order wins, padding ignored by max and not counted by average).
// N batch, H/W input size, C channels, KH/KW pool, SH/SW strides, OH/OW output size.
//
// Forward: thread per output element (n, oh, ow, c) scans its window. Backward: thread per
// input element (n, h, w, c) sums over the outputs whose window covers it (oh, ow ascending,
// the order the CPU scatter adds them in), so no atomics and a deterministic result.
#pragma once
#include <cstdint>

#include "faltung/pooling.hpp"
#include "hd.cuh"

namespace faltung::cuda::pool {

// Element e of an (N, A, B, C) array -> its four indices.
struct Idx4 {
  int64_t n, a, b, c;
  FALTUNG_HD Idx4(int64_t e, int64_t A, int64_t B, int64_t C)
      : n(e / (A * B * C)), a(e / (B * C) % A), b(e / C % B), c(e % C) {}
};

// The outputs o in [lo, hi) whose window (o * S - pad + [0, K)) holds input index i.
struct Cover {
  int64_t lo, hi;
  FALTUNG_HD Cover(int64_t i, int64_t pad, int64_t K, int64_t S, int64_t O) {
    const int64_t p = i + pad;  // window start o*S <= p < o*S + K
    lo = p - K + 1 <= 0 ? 0 : (p - K + 1 + S - 1) / S;
    hi = p / S + 1;
    if (hi > O) hi = O;
  }
};

// The in-bounds window of output (oh, ow): rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
  FALTUNG_HD Window(const Pool2dShape& s, int64_t oh, int64_t ow) {
    const int64_t hs = oh * s.SH - s.pad_top, ws = ow * s.SW - s.pad_left;
    h0 = hs < 0 ? 0 : hs, h1 = hs + s.KH < s.H ? hs + s.KH : s.H;
    w0 = ws < 0 ? 0 : ws, w1 = ws + s.KW < s.W ? ws + s.KW : s.W;
  }
  FALTUNG_HD int64_t count() const { return (h1 - h0) * (w1 - w0); }
};

// inp (N,H,W,C) -> out, argmax (N,OH,OW,C). Thread per output element.
template <typename T>
struct MaxForward {
  T* out;
  int32_t* argmax;
  const T* inp;
  Pool2dShape s;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= s.N * s.OH * s.OW * s.C) return;
    const Idx4 o(e, s.OH, s.OW, s.C);
    const Window win(s, o.a, o.b);
    const T* img = inp + o.n * s.H * s.W * s.C + o.c;
    T best = img[(win.h0 * s.W + win.w0) * s.C];
    int64_t arg = win.h0 * s.W + win.w0;
    for (int64_t h = win.h0; h < win.h1; ++h)
      for (int64_t w = win.w0; w < win.w1; ++w) {
        const T v = img[(h * s.W + w) * s.C];
        if (v > best) best = v, arg = h * s.W + w;
      }
    out[e] = best;
    argmax[e] = int32_t(arg);
  }
};

// dout, argmax (N,OH,OW,C) -> dinp (N,H,W,C). Thread per input element.
template <typename T>
struct MaxBackward {
  T* dinp;
  const T* dout;
  const int32_t* argmax;
  Pool2dShape s;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= s.N * s.H * s.W * s.C) return;
    const Idx4 i(e, s.H, s.W, s.C);
    const Cover ch(i.a, s.pad_top, s.KH, s.SH, s.OH), cw(i.b, s.pad_left, s.KW, s.SW, s.OW);
    const int32_t me = int32_t(i.a * s.W + i.b);
    T g = 0;
    for (int64_t oh = ch.lo; oh < ch.hi; ++oh)
      for (int64_t ow = cw.lo; ow < cw.hi; ++ow) {
        const int64_t o = ((i.n * s.OH + oh) * s.OW + ow) * s.C + i.c;
        if (argmax[o] == me) g += dout[o];
      }
    dinp[e] = g;
  }
};

// full (N,H,W,C), argmax (N,OH,OW,C) -> out (N,OH,OW,C) = full at each window's argmax: the
// gradient of max unpooling (whose forward is MaxBackward). Thread per output element.
template <typename T>
struct MaxGather {
  T* out;
  const T* full;
  const int32_t* argmax;
  Pool2dShape s;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= s.N * s.OH * s.OW * s.C) return;
    const Idx4 o(e, s.OH, s.OW, s.C);
    out[e] = full[(o.n * s.H * s.W + argmax[e]) * s.C + o.c];
  }
};

// inp (N,H,W,C) -> out (N,OH,OW,C). Thread per output element.
template <typename T>
struct AvgForward {
  T* out;
  const T* inp;
  Pool2dShape s;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= s.N * s.OH * s.OW * s.C) return;
    const Idx4 o(e, s.OH, s.OW, s.C);
    const Window win(s, o.a, o.b);
    const T* img = inp + o.n * s.H * s.W * s.C + o.c;
    T sum = 0;
    for (int64_t h = win.h0; h < win.h1; ++h)
      for (int64_t w = win.w0; w < win.w1; ++w) sum += img[(h * s.W + w) * s.C];
    out[e] = sum / T(win.count());
  }
};

// dout (N,OH,OW,C) -> dinp (N,H,W,C). Thread per input element.
template <typename T>
struct AvgBackward {
  T* dinp;
  const T* dout;
  Pool2dShape s;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= s.N * s.H * s.W * s.C) return;
    const Idx4 i(e, s.H, s.W, s.C);
    const Cover ch(i.a, s.pad_top, s.KH, s.SH, s.OH), cw(i.b, s.pad_left, s.KW, s.SW, s.OW);
    T g = 0;
    for (int64_t oh = ch.lo; oh < ch.hi; ++oh)
      for (int64_t ow = cw.lo; ow < cw.hi; ++ow)
        g += dout[((i.n * s.OH + oh) * s.OW + ow) * s.C + i.c] / T(Window(s, oh, ow).count());
    dinp[e] = g;
  }
};

template <class Exec, typename T>
void max_forward(Exec& ex, T* out, int32_t* argmax, const T* inp, const Pool2dShape& s, int64_t block) {
  ex.launch(cover(s.N * s.OH * s.OW * s.C, block), MaxForward<T>{out, argmax, inp, s});
}
template <class Exec, typename T>
void max_backward(Exec& ex, T* dinp, const T* dout, const int32_t* argmax, const Pool2dShape& s, int64_t block) {
  ex.launch(cover(s.N * s.H * s.W * s.C, block), MaxBackward<T>{dinp, dout, argmax, s});
}
template <class Exec, typename T>
void max_gather(Exec& ex, T* out, const T* full, const int32_t* argmax, const Pool2dShape& s, int64_t block) {
  ex.launch(cover(s.N * s.OH * s.OW * s.C, block), MaxGather<T>{out, full, argmax, s});
}
template <class Exec, typename T>
void avg_forward(Exec& ex, T* out, const T* inp, const Pool2dShape& s, int64_t block) {
  ex.launch(cover(s.N * s.OH * s.OW * s.C, block), AvgForward<T>{out, inp, s});
}
template <class Exec, typename T>
void avg_backward(Exec& ex, T* dinp, const T* dout, const Pool2dShape& s, int64_t block) {
  ex.launch(cover(s.N * s.H * s.W * s.C, block), AvgBackward<T>{dinp, dout, s});
}

}  // namespace faltung::cuda::pool
