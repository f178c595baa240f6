// faltung/resampling.hpp — image upsampling (nearest and bilinear) over NHWC and the
// adjoint kernels that are their backward passes. UpSampling1D is nearest with W = 1.
//
// N batch, H/W input size, C channels, OH/OW output size (OH = H*SH for nearest).
// Layouts: inp (N,H,W,C), out (N,OH,OW,C).
// Bilinear follows Keras 3's ops.image.resize (TF / jax / torch align_corners=False):
// half-pixel centres, source coordinate src = (o + 0.5) * H/OH - 0.5, the two neighbours
// floor(src), floor(src)+1 clamped to [0, H-1], weight src - floor(src); no antialiasing
// (none applies when upscaling).
#pragma once
#include <cstdint>

namespace faltung {

// inp (N,H,W,C) -> out (N,H*SH,W*SW,C): out[oh,ow] = inp[oh/SH, ow/SW]. Overwrites out.
template <typename T>
void upsample_nearest2d_forward(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C,
                                int64_t SH, int64_t SW);
// dout (N,H*SH,W*SW,C) -> dinp (N,H,W,C): sum of each SHxSW block. Overwrites dinp.
template <typename T>
void upsample_nearest2d_backward(T* dinp, const T* dout, int64_t N, int64_t H, int64_t W, int64_t C,
                                 int64_t SH, int64_t SW);

// inp (N,H,W,C) -> out (N,OH,OW,C), bilinear with half-pixel centres. Overwrites out.
template <typename T>
void resize_bilinear2d_forward(T* out, const T* inp, int64_t N, int64_t H, int64_t W, int64_t C,
                               int64_t OH, int64_t OW);
// The adjoint: dout (N,OH,OW,C) -> dinp (N,H,W,C). Overwrites dinp.
template <typename T>
void resize_bilinear2d_backward(T* dinp, const T* dout, int64_t N, int64_t H, int64_t W, int64_t C,
                                int64_t OH, int64_t OW);

}  // namespace faltung
