// faltung/conv_shape.hpp — the geometry of one 2D convolution, shared by every conv
// algorithm (reference, im2col+GEMM, Winograd, direct). Conv1D is Conv2D with H = KH = 1.
//
// N batch, H/W input size, C in-channels, K filters (out-channels), KH/KW kernel size,
// OH/OW output size, G groups (C and K divisible by G; groups == C is depthwise).
// Layouts: input (N,H,W,C), weight (KH,KW,C/G,K) as Keras, output (N,OH,OW,K).
// Output pixel (oh, ow) reads input rows oh*stride_h - pad_top + kh*dil_h (same for w);
// reads outside [0,H) x [0,W) are zeros. pad_bottom/pad_right follow from OH/OW.
#pragma once
#include <cstdint>

namespace faltung {

struct Conv2dShape {
  int64_t N, H, W, C, K, KH, KW, OH, OW;
  int64_t stride_h, stride_w, dil_h, dil_w;
  int64_t pad_top, pad_left;
  int64_t groups;
};

}  // namespace faltung
