// faltung/pooling.hpp — max and average pooling over NHWC images, their backward passes,
// and max/average unpooling (which are the same scatter/gather kernels read the other way).
// 1D pooling is 2D pooling with H = KH = 1; global pooling is a window of the whole image.
//
// N batch, H/W input size, C channels, KH/KW pool size, SH/SW strides, OH/OW output size.
// Layouts: input (N,H,W,C), output (N,OH,OW,C), argmax (N,OH,OW,C) int32 holding the flat
// spatial index h*W + w of the winning input pixel of each output element.
// Output pixel (oh, ow) reads input rows oh*SH - pad_top + [0, KH) (same for w); rows
// outside [0,H) are padding: ignored by max (as -inf), not counted by average (Keras/TF
// "same" rule: divide by the number of in-bounds elements).
// Max ties: the FIRST maximum in row-major window order (kh outer, kw inner) wins.
#pragma once
#include <cstdint>
#include <string>

namespace faltung {

struct Pool2dShape {
  int64_t N, H, W, C, KH, KW, SH, SW, OH, OW;
  int64_t pad_top, pad_left;
};

// Geometry of a pooling with padding "valid" or "same" (TF rule: total pad
// max((ceil(in/s)-1)*s + k - in, 0), the extra pixel at the end). Throws
// std::invalid_argument (naming `op`) for non-positive sizes or an empty output.
Pool2dShape pool2d_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t KH, int64_t KW,
                         int64_t SH, int64_t SW, const std::string& padding, const std::string& op);

// inp (N,H,W,C) -> out (N,OH,OW,C); argmax (N,OH,OW,C) or nullptr. Overwrites out, argmax.
template <typename T>
void max_pool2d_forward(T* out, int32_t* argmax, const T* inp, const Pool2dShape& s);
// Naive oracle of max_pool2d_forward (same contract, same tie rule).
template <typename T>
void max_pool2d_forward_ref(T* out, int32_t* argmax, const T* inp, const Pool2dShape& s);

// Routes each dout element to its argmax: dinp (N,H,W,C) = scatter-add of dout (N,OH,OW,C).
// Overwrites dinp. This is the backward of max pooling and the forward of max unpooling.
template <typename T>
void max_pool2d_scatter(T* dinp, const T* dout, const int32_t* argmax, const Pool2dShape& s);

// The adjoint of max_pool2d_scatter: out (N,OH,OW,C)[i] = full (N,H,W,C)[argmax[i]].
// This is the backward of max unpooling. Overwrites out.
template <typename T>
void max_pool2d_gather(T* out, const T* full, const int32_t* argmax, const Pool2dShape& s);

// inp (N,H,W,C) -> out (N,OH,OW,C), mean over the in-bounds part of each window.
template <typename T>
void avg_pool2d_forward(T* out, const T* inp, const Pool2dShape& s);
template <typename T>
void avg_pool2d_forward_ref(T* out, const T* inp, const Pool2dShape& s);

// dout (N,OH,OW,C) -> dinp (N,H,W,C): each dout element spread evenly over the in-bounds
// part of its window. Overwrites dinp. Backward of average pooling, forward of average
// unpooling.
template <typename T>
void avg_pool2d_backward(T* dinp, const T* dout, const Pool2dShape& s);

}  // namespace faltung
