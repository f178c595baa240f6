// Transposed convolution, NHWC, float and double.
//
// N batch; x (N,OH,OW,K) is the transposed conv's input, y (N,H,W,C) its output,
// weight (KH,KW,C,K); stride/dil/pad as in faltung/conv_transpose.hpp (the geometry is the
// forward conv whose data-gradient this is). COLS = KH*KW*C, one column-buffer row per
// input pixel (n,oh,ow), columns ordered (kh,kw,c).
//
// Fast path, per chunk of images whose column buffer fits the workspace:
//   forward:  col (rows, COLS) = x (rows, K) @ weight(COLS, K)^T; y = col2im(col) + bias
//   backward: col = im2col(dy); dx = col @ weight; dweight += col^T @ x; dbias = sum dy
#include "faltung/conv_transpose.hpp"

#include <algorithm>
#include <string>

#include "faltung/common.hpp"

namespace faltung {

ConvTransposeDim conv_transpose_dim(int64_t in, int64_t k, int64_t stride, int64_t dil, bool same,
                                    int64_t output_padding) {
  const int64_t ke = (k - 1) * dil + 1;  // dilated kernel extent
  const bool none = output_padding < 0;
  if (!same) {
    // Full output plus output_padding zeros on the right; default pads up to the stride.
    const int64_t op = none ? std::max(ke, stride) - ke : output_padding;
    return {(in - 1) * stride + ke + op, 0};
  }
  // "same": Keras pads the stride-dilated input by pad_len in total, left side first
  // (rounded up) but at most ke - 1; whatever the left side does not get is cut here.
  const int64_t pad_len = none ? stride + ke - 2 : ke + ke % 2 - 2 + output_padding;
  const int64_t left = std::min(pad_len / 2 + pad_len % 2, ke - 1);
  const int64_t out = none ? in * stride : (in - 1) * stride + ke % 2 + output_padding;
  return {out, ke - 1 - left};
}

Conv2dShape conv_transpose2d_shape(int64_t N, int64_t IH, int64_t IW, int64_t CI, int64_t KH,
                                   int64_t KW, int64_t F, int64_t stride_h, int64_t stride_w,
                                   int64_t dil_h, int64_t dil_w, bool same, int64_t out_pad_h,
                                   int64_t out_pad_w) {
  const std::string op = "conv_transpose: ";
  check(N >= 0 && IH > 0 && IW > 0 && CI > 0,
        op + "expected positive input sizes, received input shape " + shape_str({N, IH, IW, CI}));
  check(KH > 0 && KW > 0 && F > 0,
        op + "expected positive kernel sizes, received kernel shape " + shape_str({KH, KW, F, CI}));
  check(stride_h > 0 && stride_w > 0,
        op + "expected positive strides, received strides=" + shape_str({stride_h, stride_w}));
  check(dil_h > 0 && dil_w > 0,
        op + "expected positive dilation_rate, received dilation_rate=" + shape_str({dil_h, dil_w}));
  check(out_pad_h >= -1 && out_pad_w >= -1,
        op + "expected output_padding >= 0, received output_padding=" + shape_str({out_pad_h, out_pad_w}));
  const ConvTransposeDim dh = conv_transpose_dim(IH, KH, stride_h, dil_h, same, out_pad_h);
  const ConvTransposeDim dw = conv_transpose_dim(IW, KW, stride_w, dil_w, same, out_pad_w);
  check(dh.out > 0 && dw.out > 0,
        op + "the output would be empty: output spatial shape " + shape_str({dh.out, dw.out}));
  Conv2dShape s{};  // value-initialized: fields added later stay zero
  s.N = N; s.H = dh.out; s.W = dw.out; s.C = F; s.K = CI; s.KH = KH; s.KW = KW; s.OH = IH; s.OW = IW;
  s.stride_h = stride_h; s.stride_w = stride_w; s.dil_h = dil_h; s.dil_w = dil_w;
  s.pad_top = dh.pad; s.pad_left = dw.pad; s.groups = 1;
  return s;
}

namespace {

void check_geometry(const Conv2dShape& s) {
  check(s.groups == 1, "conv_transpose: groups must be 1, received " + std::to_string(s.groups));
  check(s.N >= 0 && s.H > 0 && s.W > 0 && s.C > 0 && s.K > 0 && s.KH > 0 && s.KW > 0 && s.OH > 0 &&
            s.OW > 0 && s.stride_h > 0 && s.stride_w > 0 && s.dil_h > 0 && s.dil_w > 0,
        "conv_transpose: invalid geometry");
}

// Images per chunk, so that the column buffer stays near 2M elements.
int64_t chunk_images(const Conv2dShape& s) {
  const int64_t per_image = s.OH * s.OW * s.KH * s.KW * s.C;
  return std::max<int64_t>(1, std::min<int64_t>(s.N, (int64_t(1) << 21) / per_image));
}

// col (nc,OH,OW,KH,KW,C) -> out (nc,H,W,C) = bias + sum of the column entries landing on
// each pixel. One output row (n,h) per iteration: disjoint writes.
template <typename T>
void col2im(T* out, const T* col, const T* bias, int64_t nc, const Conv2dShape& s) {
  const int64_t cols = s.KH * s.KW * s.C;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < nc; ++n) {
    for (int64_t h = 0; h < s.H; ++h) {
      T* out_row = out + (n * s.H + h) * s.W * s.C;
      for (int64_t i = 0; i < s.W * s.C; ++i) out_row[i] = bias ? bias[i % s.C] : T(0);
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t t = h + s.pad_top - kh * s.dil_h;  // = oh * stride_h
        if (t < 0 || t % s.stride_h != 0 || t / s.stride_h >= s.OH) continue;
        const int64_t oh = t / s.stride_h;
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const T* col_px = col + ((n * s.OH + oh) * s.OW + ow) * cols + kh * s.KW * s.C;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t w = ow * s.stride_w - s.pad_left + kw * s.dil_w;
            if (w < 0 || w >= s.W) continue;
            const T* src = col_px + kw * s.C;
            T* dst = out_row + w * s.C;
            for (int64_t c = 0; c < s.C; ++c) dst[c] += src[c];
          }
        }
      }
    }
  }
}

// dout (nc,H,W,C) -> col (nc,OH,OW,KH,KW,C), zeros where the window leaves the image.
template <typename T>
void im2col(T* col, const T* dout, int64_t nc, const Conv2dShape& s) {
  const int64_t cols = s.KH * s.KW * s.C;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < nc; ++n) {
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        T* col_px = col + ((n * s.OH + oh) * s.OW + ow) * cols;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t h = oh * s.stride_h - s.pad_top + kh * s.dil_h;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t w = ow * s.stride_w - s.pad_left + kw * s.dil_w;
            T* dst = col_px + (kh * s.KW + kw) * s.C;
            if (h < 0 || h >= s.H || w < 0 || w >= s.W) {
              std::fill(dst, dst + s.C, T(0));
            } else {
              const T* src = dout + ((n * s.H + h) * s.W + w) * s.C;
              std::copy(src, src + s.C, dst);
            }
          }
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void conv_transpose2d_forward(T* out, const T* inp, const T* weight, const T* bias,
                              const Conv2dShape& s) {
  check_geometry(s);
  const int64_t rows = s.OH * s.OW, cols = s.KH * s.KW * s.C;
  const int64_t nb = chunk_images(s);
  T* col = workspace<T>(nb * rows * cols, 0);
  for (int64_t n0 = 0; n0 < s.N; n0 += nb) {
    const int64_t nc = std::min(nb, s.N - n0);
    // col (nc*OH*OW, COLS) = inp (nc*OH*OW, K) @ weight (COLS, K)^T
    parallel_gemm<T>(false, true, nc * rows, cols, s.K, T(1), inp + n0 * rows * s.K, s.K, weight,
                     s.K, T(0), col, cols);
    col2im<T>(out + n0 * s.H * s.W * s.C, col, bias, nc, s);
  }
}

template <typename T>
void conv_transpose2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                               const T* weight, const Conv2dShape& s) {
  check_geometry(s);
  const int64_t rows = s.OH * s.OW, cols = s.KH * s.KW * s.C;
  if (dinp || dweight) {
    const int64_t nb = chunk_images(s);
    T* col = workspace<T>(nb * rows * cols, 0);
    if (dweight && s.N == 0) std::fill(dweight, dweight + cols * s.K, T(0));
    for (int64_t n0 = 0; n0 < s.N; n0 += nb) {
      const int64_t nc = std::min(nb, s.N - n0);
      im2col<T>(col, dout + n0 * s.H * s.W * s.C, nc, s);
      // dinp (nc*OH*OW, K) = col (nc*OH*OW, COLS) @ weight (COLS, K)
      if (dinp)
        parallel_gemm<T>(false, false, nc * rows, s.K, cols, T(1), col, cols, weight, s.K, T(0),
                         dinp + n0 * rows * s.K, s.K);
      // dweight (COLS, K) (+)= col^T (COLS, nc*OH*OW) @ inp (nc*OH*OW, K)
      if (dweight)
        parallel_gemm<T>(true, false, cols, s.K, nc * rows, T(1), col, cols, inp + n0 * rows * s.K,
                         s.K, n0 == 0 ? T(0) : T(1), dweight, s.K);
    }
  }
  if (dbias) {
    std::fill(dbias, dbias + s.C, T(0));
    const int64_t pixels = s.N * s.H * s.W;
    for (int64_t p = 0; p < pixels; ++p) {
      const T* dout_p = dout + p * s.C;
      for (int64_t c = 0; c < s.C; ++c) dbias[c] += dout_p[c];
    }
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
