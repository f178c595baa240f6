// faltung/image_transform.hpp — one affine map per image of an NHWC batch, sampled with
// nearest or bilinear interpolation: scipy.ndimage.affine_transform (order 0 or 1) applied
// to every channel, which is what Keras's ImageDataGenerator calls, and, with the grid_*
// fill modes, what keras.ops.image.affine_transform computes for the preprocessing layers.
//
// N batch, H/W image size, C channels. Layouts: inp (N,H,W,C), out (N,H,W,C).
// matrices (N,2,3), float64: the output pixel (r, c) of image n samples the input at
//   row = m[0][2] + r*m[0][0] + c*m[0][1],  col = m[1][2] + r*m[1][0] + c*m[1][1]
// (scipy's matrix and offset, in that order of summation).
//
// Fill modes are scipy.ndimage's (points outside the image; n is the axis length):
//   Constant      a point whose row or column lies outside [0, n-1] is cval (no interpolation
//                 across the border).
//   GridConstant  every tap outside [0, n-1] reads cval (interpolation across the border).
//   Nearest       the coordinate is clamped to [0, n-1].
//   Reflect       half-sample symmetric extension (d c b a | a b c d | d c b a), per tap.
//   Mirror        whole-sample symmetric extension (d c b | a b c d | c b a), per tap.
//   Wrap          the coordinate is wrapped with period n-1 (scipy's 'wrap': first and last
//                 sample overlap).
//   GridWrap      periodic extension with period n (a b c d | a b c d), per tap.
// Nearest interpolation rounds half up (floor(x + 0.5)), as scipy's order 0.
#pragma once
#include <cstdint>

namespace faltung {

enum class FillMode : int { Constant = 0, GridConstant, Nearest, Reflect, Mirror, Wrap, GridWrap };
enum class Interpolation : int { Nearest = 0, Bilinear = 1 };

// inp (N,H,W,C), matrices (N,2,3) -> out (N,H,W,C). Overwrites out. OpenMP over (N, H). The oracle
// is tests/reference/image_transform.py (numpy) and scipy.ndimage.affine_transform.
template <typename T>
void affine_transform_forward(T* out, const T* inp, const double* matrices, int64_t N, int64_t H, int64_t W,
                              int64_t C, Interpolation interpolation, FillMode mode, double cval);


}  // namespace faltung
