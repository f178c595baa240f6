// faltung/conv_transpose.hpp — transposed convolution (Keras Conv1DTranspose/Conv2DTranspose).
//
// A transposed convolution is the data-gradient of a forward convolution. Its geometry is
// the Conv2dShape of that FORWARD conv (see conv_shape.hpp), read backwards:
//
//   N batch
//   OH/OW  spatial size of the transposed conv's INPUT  x (N,OH,OW,K)
//   K      channels of x (the transposed conv's in-channels)
//   H/W    spatial size of the transposed conv's OUTPUT y (N,H,W,C)
//   C      filters (the transposed conv's out-channels)
//   KH/KW  kernel size; weight (KH,KW,C,K) — Keras's Conv2DTranspose kernel layout
//          (kh, kw, filters, in_channels), which is also the forward conv's (kh, kw, in, out).
//
// Input pixel (oh, ow) adds x[oh,ow,:] @ weight[kh,kw,:,:]^T into output pixel
// (oh*stride_h - pad_top + kh*dil_h, ow*stride_w - pad_left + kw*dil_w); contributions that
// land outside [0,H) x [0,W) are dropped. groups must be 1.
// Conv1DTranspose is the 2D case with OH = H = KH = 1.
#pragma once
#include <cstdint>

#include "faltung/conv_shape.hpp"

namespace faltung {

// One spatial dimension of Keras 3's conv_transpose: output length and pad (the number
// of leading positions of the full output (in-1)*stride + (k-1)*dil + 1 that are cut).
// output_padding < 0 means None (Keras's default). same = padding "same" (else "valid").
struct ConvTransposeDim {
  int64_t out, pad;
};
ConvTransposeDim conv_transpose_dim(int64_t in, int64_t k, int64_t stride, int64_t dil, bool same,
                                    int64_t output_padding);

// Geometry of a 2D transposed conv with Keras semantics; throws std::invalid_argument on
// non-positive sizes, strides or dilations, negative output_padding (other than -1 = None)
// or an empty output. x (N,IH,IW,CI), weight (KH,KW,F,CI) -> y (N,H,W,F).
Conv2dShape conv_transpose2d_shape(int64_t N, int64_t IH, int64_t IW, int64_t CI, int64_t KH,
                                   int64_t KW, int64_t F, int64_t stride_h, int64_t stride_w,
                                   int64_t dil_h, int64_t dil_w, bool same, int64_t out_pad_h,
                                   int64_t out_pad_w);

// inp (N,OH,OW,K), weight (KH,KW,C,K), bias (C) or nullptr -> out (N,H,W,C). Overwrites out.
// Runs conv_transpose2d_forward_phased when C >= 8, else conv_transpose2d_forward_gemm (below).
template <typename T>
void conv_transpose2d_forward(T* out, const T* inp, const T* weight, const T* bias,
                              const Conv2dShape& s);

// The two fast algorithms behind conv_transpose2d_forward (which picks phased when C >= 8):
// gemm: cache-blocked: each thread owns whole output images (or, for a batch small against
// the thread count, bands of output rows) and goes over blocks of input rows: GEMM a ~256 KB
// column block (rows (oh,ow), columns (kh,kw,c)) then scatter-add it into the output.
// phased: stride_h*stride_w stride-1 direct convs of x with sub-kernels, written into the
// strided output (conv2d_direct_forward_view); when kernel = 2 * stride (dilation 1) and both
// channel counts are >= 8, all phases as one Winograd F(3x3, 2x2) conv instead
// (conv2d_winograd2x2_forward_views).
template <typename T>
void conv_transpose2d_forward_gemm(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s);
template <typename T>
void conv_transpose2d_forward_phased(T* out, const T* inp, const T* weight, const T* bias,
                                     const Conv2dShape& s);

// dout (N,H,W,C) -> dinp (N,OH,OW,K), dweight (KH,KW,C,K), dbias (C). Overwrites each
// gradient; a nullptr skips it. dinp is the forward conv of dout: per thread and block of
// input rows, gather an im2col block of dout (~256 KB), GEMM it into dinp rows and into a
// per-thread dweight partial; dbias is a per-thread channel sum; partials are summed last.
template <typename T>
void conv_transpose2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                               const T* weight, const Conv2dShape& s);

// Naive nested-loop versions of the two above: the oracle for tests and benchmarks.
template <typename T>
void conv_transpose2d_forward_ref(T* out, const T* inp, const T* weight, const T* bias,
                                  const Conv2dShape& s);
template <typename T>
void conv_transpose2d_backward_ref(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                                   const T* weight, const Conv2dShape& s);

}  // namespace faltung
