// faltung/conv_phased.hpp — dilated 3x3, stride-1, groups-1 2D convolutions through phase
// decomposition into dilation-1 convolutions, each run by the Winograd kernels
// (conv_winograd.hpp). Forward, backward-data and backward-filter, NHWC.
//
// N batch, H/W input size, C in-channels, K filters, OH/OW output size, dh/dw dilations,
// pad_top/pad_left as in conv_shape.hpp, KH = KW = 3.
// OHs = ceil(OH/dh), OWs = ceil(OW/dw) phase output size, Hs <= OHs + 2, Ws <= OWs + 2 phase
// input size (rows that are zero for every phase are not stored, see below), Np = N*dh*dw
// phase images, numbered b = (n*dh + rh)*dw + rw.
// Layouts: inp (N,H,W,C), weight (3,3,C,K) as Keras, bias (K), out (N,OH,OW,K); phase input
// (Np,Hs,Ws,C), phase output (Np,OHs,OWs,K).
//
// The math (per spatial dim; the two dims are independent): with stride 1 and dilation d,
// output row oh reads input rows oh - pad_top + kh*d, all in one residue class mod d. For
// output phase r in [0,d), rows oh = r + d*q (q in [0,OHs)) read only the phase image
//   S_r[j] = inp[r - pad_top + d*j]   (zero outside [0,H)),  j in [0, OHs + 2),
// and out[r + d*q] = sum_kh S_r[q + kh] * w[kh]: a plain "valid" dilation-1 conv. Rows j below
// j0 = floor(pad_top/d) or above floor((H-1+pad_top)/d) are zero for every r; they are not
// stored but left to the inner conv as its padding (pad_top j0), so a "same" dilated conv
// becomes a "same" dilation-1 conv on the (OHs, OWs) phase images. So:
//   forward          gather inp -> phase input (zero-filled), one Winograd forward on the
//                    whole phase batch (bias, relu fused), scatter the phase outputs back,
//                    dropping rows/cols r + d*q >= OH/OW.
//   backward data    gather dout -> phase layout (zeros past OH/OW), Winograd backward-data
//                    gives d(phase input); the gather is injective (distinct (r, j) read
//                    distinct input rows), so its adjoint is a plain scatter: dinp[i] is the
//                    one phase entry that read i, or 0 if none did.
//   backward filter  Winograd backward-filter on (phase dout, phase input) is dweight itself:
//                    every tap pairs the same (input, dout) products as the dilated conv.
// The phase batch pays (OHs+2)(OWs+2)/(OHs*OWs) extra input reads plus the padding rows the
// phases round up to, against 4x fewer multiplies than direct for F(4x4,3x3).
// Only KH == KW == 3 is handled: other kernel sizes would need the im2col path inside, which
// gains nothing over running im2col on the dilated conv directly.
// Scratch: the calling thread's Phase* workspaces (faltung/common.hpp: WorkspaceSlot).
// No validation beyond conv_phased_applicable: call check_conv2d_shape first.
#pragma once

#include "faltung/conv_shape.hpp"

namespace faltung {

// True when the phased kernels handle s: KH == KW == 3, strides 1, groups 1, and some
// dilation > 1 (dilation 1 is plain Winograd).
bool conv_phased_applicable(const Conv2dShape& s);

// inp (N,H,W,C), weight (3,3,C,K), bias (K) or nullptr -> out (N,OH,OW,K). Overwrites out.
template <class T>
void conv2d_phased_forward(T* out, const T* inp, const T* weight, const T* bias,
                           const Conv2dShape& s, bool relu = false);

// dout (N,OH,OW,K) -> dinp (N,H,W,C) and dweight (3,3,C,K), both overwritten, sharing one
// gather of dout; a nullptr dinp or dweight skips that gradient. inp is read only for dweight
// and weight only for dinp (either may be nullptr otherwise).
template <class T>
void conv2d_phased_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                            const Conv2dShape& s);

}  // namespace faltung
