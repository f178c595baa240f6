// cpp/cuda/resample.cuh — nearest and bilinear upsampling of NHWC images, forward and backward,
// as kernel bodies and launch sequences (see hd.cuh for the design). Oracle:
// cpp/src/resampling.cpp; conventions are faltung/resampling.hpp's (nearest: out[oh,ow] =
// inp[oh/SH, ow/SW]; bilinear: half-pixel centres, taps clamped to the image, the tap and its
// weight computed in double and the four corner weights in T, as the CPU does).
// N batch, H/W input size, C channels, OH/OW output size.
//
// Forward: thread per output element. Backward: thread per input element, gathering the
// outputs that read it (for bilinear: scanning a slightly widened range of candidates and
// keeping those whose taps hit it), in the order the CPU scatter adds them, so no atomics.
#pragma once
#include <cmath>
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::resample {

// inp (N,H,W,C) -> out (N,H*SH,W*SW,C). Thread per output element.
template <typename T>
struct NearestForward {
  T* out;
  const T* inp;
  int64_t N, H, W, C, SH, SW;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t OH = H * SH, OW = W * SW, e = th.global();
    if (e >= N * OH * OW * C) return;
    const int64_t c = e % C, ow = e / C % OW, oh = e / (C * OW) % OH, n = e / (C * OW * OH);
    out[e] = inp[((n * H + oh / SH) * W + ow / SW) * C + c];
  }
};

// dout (N,H*SH,W*SW,C) -> dinp (N,H,W,C): the sum of each SH x SW block. Thread per input element.
template <typename T>
struct NearestBackward {
  T* dinp;
  const T* dout;
  int64_t N, H, W, C, SH, SW;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t OH = H * SH, OW = W * SW, e = th.global();
    if (e >= N * H * W * C) return;
    const int64_t c = e % C, w = e / C % W, h = e / (C * W) % H, n = e / (C * W * H);
    T acc = 0;
    for (int64_t i = 0; i < SH; ++i)
      for (int64_t j = 0; j < SW; ++j) acc += dout[((n * OH + h * SH + i) * OW + w * SW + j) * C + c];
    dinp[e] = acc;
  }
};

// One bilinear tap pair along an axis: output index o of `out` reads in[i0]*(1-l) + in[i1]*l.
struct Tap {
  int64_t i0, i1;
  double l;
  FALTUNG_HD Tap(int64_t o, int64_t in, int64_t out) {
    const double src = (double(o) + 0.5) * double(in) / double(out) - 0.5;
    const double f = floor(src);
    const int64_t fi = int64_t(f);
    i0 = fi < 0 ? 0 : (fi > in - 1 ? in - 1 : fi);
    i1 = fi + 1 < 0 ? 0 : (fi + 1 > in - 1 ? in - 1 : fi + 1);
    l = src - f;
  }
};

// The outputs o in [lo, hi) that may read input index i along an axis: those with
// floor(src(o)) in {i-1, i}, i.e. src in [i-1, i+1), widened by one on each side against
// rounding; the caller keeps only those whose Tap really holds i.
struct Candidates {
  int64_t lo, hi;
  FALTUNG_HD Candidates(int64_t i, int64_t in, int64_t out) {
    const double r = double(out) / double(in);
    lo = int64_t(floor((double(i) - 0.5) * r - 0.5)) - 1;
    hi = int64_t(ceil((double(i) + 1.5) * r - 0.5)) + 2;
    if (lo < 0) lo = 0;
    if (hi > out) hi = out;
  }
};

// inp (N,H,W,C) -> out (N,OH,OW,C). Thread per output element.
template <typename T>
struct BilinearForward {
  T* out;
  const T* inp;
  int64_t N, H, W, C, OH, OW;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= N * OH * OW * C) return;
    const int64_t c = e % C, ow = e / C % OW, oh = e / (C * OW) % OH, n = e / (C * OW * OH);
    const Tap th_(oh, H, OH), tw(ow, W, OW);
    const T lh = T(th_.l), lw = T(tw.l);
    const T w00 = (1 - lh) * (1 - lw), w01 = (1 - lh) * lw, w10 = lh * (1 - lw), w11 = lh * lw;
    const T* img = inp + n * H * W * C + c;
    out[e] = w00 * img[(th_.i0 * W + tw.i0) * C] + w01 * img[(th_.i0 * W + tw.i1) * C] +
             w10 * img[(th_.i1 * W + tw.i0) * C] + w11 * img[(th_.i1 * W + tw.i1) * C];
  }
};

// dout (N,OH,OW,C) -> dinp (N,H,W,C), the adjoint of BilinearForward. Thread per input element;
// the corners are added in the CPU's order (oh, ow ascending; 00, 01, 10, 11).
template <typename T>
struct BilinearBackward {
  T* dinp;
  const T* dout;
  int64_t N, H, W, C, OH, OW;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= N * H * W * C) return;
    const int64_t c = e % C, w = e / C % W, h = e / (C * W) % H, n = e / (C * W * H);
    const Candidates ch(h, H, OH), cw(w, W, OW);
    T acc = 0;
    for (int64_t oh = ch.lo; oh < ch.hi; ++oh) {
      const Tap th_(oh, H, OH);
      if (th_.i0 != h && th_.i1 != h) continue;
      const T lh = T(th_.l);
      for (int64_t ow = cw.lo; ow < cw.hi; ++ow) {
        const Tap tw(ow, W, OW);
        if (tw.i0 != w && tw.i1 != w) continue;
        const T lw = T(tw.l);
        const T w00 = (1 - lh) * (1 - lw), w01 = (1 - lh) * lw, w10 = lh * (1 - lw), w11 = lh * lw;
        const T g = dout[((n * OH + oh) * OW + ow) * C + c];
        if (th_.i0 == h && tw.i0 == w) acc += w00 * g;
        if (th_.i0 == h && tw.i1 == w) acc += w01 * g;
        if (th_.i1 == h && tw.i0 == w) acc += w10 * g;
        if (th_.i1 == h && tw.i1 == w) acc += w11 * g;
      }
    }
    dinp[e] = acc;
  }
};

template <class Exec, typename T>
void nearest_forward(Exec& ex, T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t SH,
                     int64_t SW, int64_t block) {
  ex.launch(cover(N * H * SH * W * SW * C, block), NearestForward<T>{out, inp, N, H, W, C, SH, SW});
}
template <class Exec, typename T>
void nearest_backward(Exec& ex, T* dinp, const T* dout, int64_t N, int64_t H, int64_t W, int64_t C, int64_t SH,
                      int64_t SW, int64_t block) {
  ex.launch(cover(N * H * W * C, block), NearestBackward<T>{dinp, dout, N, H, W, C, SH, SW});
}
template <class Exec, typename T>
void bilinear_forward(Exec& ex, T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH,
                      int64_t OW, int64_t block) {
  ex.launch(cover(N * OH * OW * C, block), BilinearForward<T>{out, inp, N, H, W, C, OH, OW});
}
template <class Exec, typename T>
void bilinear_backward(Exec& ex, T* dinp, const T* dout, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH,
                       int64_t OW, int64_t block) {
  ex.launch(cover(N * H * W * C, block), BilinearBackward<T>{dinp, dout, N, H, W, C, OH, OW});
}

}  // namespace faltung::cuda::resample
