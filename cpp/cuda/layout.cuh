// cpp/cuda/layout.cuh — copies that only move elements, as kernel bodies and launch sequences
// (see hd.cuh for the design): the 2D shift behind ZeroPadding2D and Cropping2D (each one's
// backward is the other), and the time reversal behind a recurrent layer's go_backwards.
// Oracles: numpy's np.pad / slicing (faltung.ops.resampling.zero_pad, crop) and x[:, ::-1].
// N batch, H/W input size, OH/OW output size, C channels; B batch, T steps, F features.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::layout {

// inp (N,H,W,C) -> out (N,OH,OW,C), out[n, oh, ow, c] = inp[n, oh - top, ow - left, c], zero
// where that falls outside inp. top, left >= 0 pad; < 0 crop. Thread per output element.
template <typename T>
struct Shift2d {
  T* out;
  const T* inp;
  int64_t N, H, W, C, OH, OW, top, left;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= N * OH * OW * C) return;
    const int64_t c = e % C, ow = e / C % OW, oh = e / (C * OW) % OH, n = e / (C * OW * OH);
    const int64_t h = oh - top, w = ow - left;
    out[e] = (h >= 0 && h < H && w >= 0 && w < W) ? inp[((n * H + h) * W + w) * C + c] : T(0);
  }
};

// inp (B,T,F) -> out (B,T,F), out[b, t] = inp[b, T - 1 - t]. Thread per output element.
template <typename T>
struct ReverseTime {
  T* out;
  const T* inp;
  int64_t B, T_, F;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= B * T_ * F) return;
    const int64_t f = e % F, t = e / F % T_, b = e / (F * T_);
    out[e] = inp[(b * T_ + (T_ - 1 - t)) * F + f];
  }
};

template <class Exec, typename T>
void shift2d(Exec& ex, T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH, int64_t OW,
             int64_t top, int64_t left, int64_t block) {
  ex.launch(cover(N * OH * OW * C, block), Shift2d<T>{out, inp, N, H, W, C, OH, OW, top, left});
}
template <class Exec, typename T>
void reverse_time(Exec& ex, T* out, const T* inp, int64_t B, int64_t T_, int64_t F, int64_t block) {
  ex.launch(cover(B * T_ * F, block), ReverseTime<T>{out, inp, B, T_, F});
}

}  // namespace faltung::cuda::layout
