// Upsampling over NHWC images: nearest (block repeat) and bilinear (half-pixel centres),
// forward and adjoint backward. N batch, H/W input size, C channels, OH/OW output size.
#include "faltung/resampling.hpp"

#include "faltung/common.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace faltung {

namespace {
// One bilinear tap pair along an axis: out index o of O reads in[i0]*(1-l) + in[i1]*l.
struct Tap {
  int64_t i0, i1;
  double l;
};
inline Tap tap(int64_t o, int64_t in, int64_t out) {
  const double src = (double(o) + 0.5) * double(in) / double(out) - 0.5;
  const double f = std::floor(src);
  const int64_t fi = int64_t(f);
  return {std::clamp<int64_t>(fi, 0, in - 1), std::clamp<int64_t>(fi + 1, 0, in - 1), src - f};
}
}  // namespace

// inp (N,H,W,C) -> out (N,H*SH,W*SW,C).
template <typename T>
void upsample_nearest2d_forward(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C,
                                int64_t SH, int64_t SW) {
  const char* op = "upsample_nearest2d";
  const int64_t OH = size_mul(H, SH, op, "output height H * SH"), OW = size_mul(W, SW, op, "output width W * SW");
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh) {
      const T* inp_row = inp + (n * H + oh / SH) * W * C;
      T* out_row = out + (n * OH + oh) * OW * C;
      for (int64_t ow = 0; ow < OW; ++ow) std::memcpy(out_row + ow * C, inp_row + (ow / SW) * C, sizeof(T) * C);
    }
}

// dout (N,H*SH,W*SW,C) -> dinp (N,H,W,C).
template <typename T>
void upsample_nearest2d_backward(T* dinp, const T* dout, int64_t N, int64_t H, int64_t W, int64_t C,
                                 int64_t SH, int64_t SW) {
  const char* op = "upsample_nearest2d_backward";
  const int64_t OH = size_mul(H, SH, op, "output height H * SH"), OW = size_mul(W, SW, op, "output width W * SW");
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) {
      T* dx_row = dinp + (n * H + h) * W * C;
      std::fill(dx_row, dx_row + W * C, T(0));
      for (int64_t i = 0; i < SH; ++i) {
        const T* dy_row = dout + (n * OH + h * SH + i) * OW * C;
        for (int64_t w = 0; w < W; ++w)
          for (int64_t j = 0; j < SW; ++j) {
            const T* dy = dy_row + (w * SW + j) * C;
            for (int64_t c = 0; c < C; ++c) dx_row[w * C + c] += dy[c];
          }
      }
    }
}

// inp (N,H,W,C) -> out (N,OH,OW,C).
template <typename T>
void resize_bilinear2d_forward(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C,
                               int64_t OH, int64_t OW) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Tap th = tap(oh, H, OH);
      const T lh = T(th.l);
      const T* r0 = inp + (n * H + th.i0) * W * C;
      const T* r1 = inp + (n * H + th.i1) * W * C;
      T* out_row = out + (n * OH + oh) * OW * C;
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Tap tw = tap(ow, W, OW);
        const T lw = T(tw.l);
        const T w00 = (1 - lh) * (1 - lw), w01 = (1 - lh) * lw, w10 = lh * (1 - lw), w11 = lh * lw;
        const T *a = r0 + tw.i0 * C, *b = r0 + tw.i1 * C, *c_ = r1 + tw.i0 * C, *d = r1 + tw.i1 * C;
        T* y = out_row + ow * C;
        for (int64_t c = 0; c < C; ++c) y[c] = w00 * a[c] + w01 * b[c] + w10 * c_[c] + w11 * d[c];
      }
    }
}

// dout (N,OH,OW,C) -> dinp (N,H,W,C): the forward's weights, scattered back. Images are
// independent, so OpenMP runs over n.
template <typename T>
void resize_bilinear2d_backward(T* dinp, const T* dout, int64_t N, int64_t H, int64_t W, int64_t C,
                                int64_t OH, int64_t OW) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* dx_n = dinp + n * H * W * C;
    std::fill(dx_n, dx_n + H * W * C, T(0));
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Tap th = tap(oh, H, OH);
      const T lh = T(th.l);
      T* r0 = dx_n + th.i0 * W * C;
      T* r1 = dx_n + th.i1 * W * C;
      const T* dy_row = dout + (n * OH + oh) * OW * C;
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Tap tw = tap(ow, W, OW);
        const T lw = T(tw.l);
        const T w00 = (1 - lh) * (1 - lw), w01 = (1 - lh) * lw, w10 = lh * (1 - lw), w11 = lh * lw;
        T *a = r0 + tw.i0 * C, *b = r0 + tw.i1 * C, *c_ = r1 + tw.i0 * C, *d = r1 + tw.i1 * C;
        const T* dy = dy_row + ow * C;
        for (int64_t c = 0; c < C; ++c) {
          a[c] += w00 * dy[c];
          b[c] += w01 * dy[c];
          c_[c] += w10 * dy[c];
          d[c] += w11 * dy[c];
        }
      }
    }
  }
}

#define FALTUNG_RESAMPLE_INSTANTIATE(T)                                                                  \
  template void upsample_nearest2d_forward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                              int64_t);                                                  \
  template void upsample_nearest2d_backward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t,         \
                                               int64_t, int64_t);                                        \
  template void resize_bilinear2d_forward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t,  \
                                             int64_t);                                                   \
  template void resize_bilinear2d_backward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                              int64_t);
FALTUNG_RESAMPLE_INSTANTIATE(float)
FALTUNG_RESAMPLE_INSTANTIATE(double)
#undef FALTUNG_RESAMPLE_INSTANTIATE

}  // namespace faltung
