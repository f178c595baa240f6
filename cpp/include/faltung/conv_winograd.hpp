// faltung/conv_winograd.hpp — Winograd fast path for 3x3, stride-1, dilation-1, groups-1
// 2D convolutions, channels-last (NHWC). Forward, backward-data and backward-filter; and the
// forward of F(3x3, 2x2) for 2x2 kernels (conv2d_winograd2x2_forward_views, below).
//
// N batch, H/W input size, C in-channels, K filters, OH/OW output size (any padding: reads
// outside the input are zeros, see conv_shape.hpp). Weight (3,3,C,K) as Keras.
// Algorithm F(m x m, 3x3), m = 4 by default (2 on tiny grids) (36 transform positions, 4x fewer multiplies than
// direct) or m = 2 (16 positions, numerically safer): input tiles of (m+2)x(m+2) are
// transformed (B^T d B), multiplied per transform position by the transformed weights
// (G g G^T) with one OpenBLAS GEMM per position and tile block, then transformed back
// (A^T M A) with the bias added. Threads split tile blocks.
// Scratch: the Winograd* workspaces only (faltung/common.hpp: WorkspaceSlot), so callers may
// hold the other slots across these calls.
#pragma once
#include <cstdint>

#include "faltung/conv_shape.hpp"

namespace faltung {

// True when the Winograd kernels handle s: KH == KW == 3, strides 1, dilations 1, groups 1.
bool winograd_applicable(const Conv2dShape& s);

// inp (N,H,W,C), weight (3,3,C,K), bias (K) or nullptr -> out (N,OH,OW,K). Overwrites out.
// relu: out = max(out, 0) fused into the output transform.
template <class T>
void conv2d_winograd_forward(T* out, const T* inp, const T* weight, const T* bias,
                             const Conv2dShape& s, bool relu = false);

// dout (N,OH,OW,K), weight (3,3,C,K) -> dinp (N,H,W,C). Overwrites dinp.
template <class T>
void conv2d_winograd_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s);

// dout (N,OH,OW,K), inp (N,H,W,C) -> dweight (3,3,C,K). Overwrites dweight.
template <class T>
void conv2d_winograd_backward_filter(T* dweight, const T* dout, const T* inp,
                                     const Conv2dShape& s);

// Output tile size m of F(m x m, 3x3) used by the three kernels above: 2, 4, or 0 (default:
// per call, F4 unless the output grid is so small that F2 needs fewer multiplies, e.g. 1x1
// or 2x2). For tests and benchmarks; not thread-safe against concurrent kernel calls.
void winograd_set_tile(int m);
int winograd_get_tile();

// Backward-filter algorithm: 0 = Winograd-domain GEMMs (default), 1 = im2col^T @ dout.
void winograd_set_filter_algo(int algo);
int winograd_get_filter_algo();

// Where a Winograd conv writes channels [k0, k0 + K) of its result: grid pixel (n, oh, ow) goes
// to out + n*img + (oh - dh)*row + (ow - dw)*px (K values, plus bias if given) when
// 0 <= oh - dh < OH and 0 <= ow - dw < OW; other grid pixels of these channels are dropped.
template <class T>
struct WinogradView {
  T* out;
  const T* bias;
  int64_t k0, K, OH, OW, dh, dw, img, row, px;
};

// F(3x3, 2x2): a 2x2, stride-1, dilation-1 conv (any padding) of inp (N,H,W,C) with weight
// (2,2,C,K) over the output grid s.OH x s.OW, its K channels written through the views. 16
// transform positions for 9 outputs: 2.25x fewer multiplies than direct. Forward only: the
// transposed conv with kernel = 2 * stride runs all its stride phases as one such conv (one
// input transform, one GEMM per position), one view per phase (conv_transpose.cpp).
template <class T>
void conv2d_winograd2x2_forward_views(const T* inp, const T* weight, const Conv2dShape& s,
                                      const WinogradView<T>* views, int nviews);

// Naive direct kernels (oracle and benchmark baseline), same contracts as above.
template <class T>
void conv2d_3x3_reference_forward(T* out, const T* inp, const T* weight, const T* bias,
                                  const Conv2dShape& s);

}  // namespace faltung
