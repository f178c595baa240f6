// faltung/conv.hpp — regular (cross-correlation) 2D convolution, NHWC, any stride,
// dilation, padding and groups. Conv1D is Conv2D with H = KH = 1.
//
// N batch, H/W input size, C in-channels, K filters, KH/KW kernel, OH/OW output size,
// G groups, Cg = C/G and Kg = K/G channels per group, P = N*OH*OW output pixels,
// D = KH*KW*Cg the length of one im2col row (one receptive field of one group).
// Layouts: inp (N,H,W,C), weight (KH,KW,Cg,K) as Keras, bias (K), out (N,OH,OW,K).
// Output channel k belongs to group k / Kg and reads input channels [g*Cg, (g+1)*Cg).
// Depthwise (G == C, K = C*m): weight (KH,KW,1,C*m) is Keras's depthwise kernel
// (KH,KW,C,m) reshaped, output channel c*m + j reads input channel c.
//
// Algorithms (all give the same result up to rounding; conv2d_reference is the oracle):
//   Reference  plain nested loops, any shape.
//   Im2col     im2col of row tiles + GEMM (OpenBLAS), any shape.
//   Gemm1x1    1x1, stride 1, unpadded: the input already is the (P, C) im2col matrix.
//   Depthwise  groups == C: direct NHWC loops vectorized over channels.
//   Winograd   3x3 stride 1, dilation 1 (conv_winograd.hpp).
//   Direct     groups 1, any geometry: register-blocked NHWC loops (conv_direct.cpp); the
//              path for few input channels (first layers), strides > 1 and other kernels.
//   Phased     dilated 3x3 stride 1 groups 1: Winograd on the dilation phases (conv_phased.hpp).
// Every entry point validates with check_conv2d_shape first (std::invalid_argument).
// Backward functions OVERWRITE their outputs; a nullptr skips that gradient.
#pragma once
#include <cstdint>
#include <string>

#include "faltung/common.hpp"
#include "faltung/conv_shape.hpp"

namespace faltung {

enum class ConvAlgo { Reference, Im2col, Gemm1x1, Depthwise, Winograd, Phased, Direct, Auto };

// Throws std::invalid_argument unless s describes a valid convolution: positive sizes,
// C and K divisible by G, 0 <= pad_top < (KH-1)*dil_h + 1 (same for width), and every
// output window overlapping the input ((OH-1)*stride_h - pad_top <= H-1).
void check_conv2d_shape(const Conv2dShape& s);

// The fastest applicable algorithm for s (never Auto).
ConvAlgo choose_conv_algo(const Conv2dShape& s);
// Whether algo can run s (Reference and Im2col: always; Auto: always).
bool conv_algo_applicable(ConvAlgo algo, const Conv2dShape& s);
// "reference", "im2col", "gemm1x1", "depthwise", "winograd", "phased", "direct", "auto".
const char* conv_algo_name(ConvAlgo algo);
// Inverse of conv_algo_name; throws std::invalid_argument for an unknown name.
ConvAlgo conv_algo_from_name(const std::string& name);

// Dispatching entry points. algo Auto picks choose_conv_algo(s); a forced algorithm that
// cannot run s throws std::invalid_argument (no silent fallback). Returns the algorithm
// that ran. relu fuses max(0, .) into the output pass (after the bias).
// inp (N,H,W,C), weight (KH,KW,Cg,K), bias (K) or nullptr -> out (N,OH,OW,K).
template <typename T>
ConvAlgo conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                        ConvAlgo algo = ConvAlgo::Auto, bool relu = false);
// dout (N,OH,OW,K), inp, weight -> dinp (N,H,W,C), dweight (KH,KW,Cg,K), dbias (K).
template <typename T>
ConvAlgo conv2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                         const Conv2dShape& s, ConvAlgo algo = ConvAlgo::Auto);

// ---- the algorithms (no validation: call check_conv2d_shape first) ----------------

// Threads for one conv pass: 1 below ~1 MFLOP (waking the pool costs more), else all.
inline int conv_threads(const Conv2dShape& s) {
  const double flops = 2.0 * s.N * s.OH * s.OW * s.K * s.KH * s.KW * (s.C / s.groups);
  return flops < 1e6 ? 1 : get_num_threads();
}

// dout (N,OH,OW,K) -> dbias (K) = sum over N, OH, OW. Shared by every algorithm.
template <typename T> void conv2d_bias_backward(T* dbias, const T* dout, const Conv2dShape& s);

// Reference: inp (N,H,W,C), weight (KH,KW,Cg,K), bias (K)|nullptr -> out (N,OH,OW,K)
template <typename T>
void conv2d_reference_forward(T* out, const T* inp, const T* weight, const T* bias,
                              const Conv2dShape& s, bool relu = false);
// dout (N,OH,OW,K), weight (KH,KW,Cg,K) -> dinp (N,H,W,C)
template <typename T>
void conv2d_reference_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s);
// dout (N,OH,OW,K), inp (N,H,W,C) -> dweight (KH,KW,Cg,K)
template <typename T>
void conv2d_reference_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s);

// im2col + GEMM (Im2col), or GEMM straight on the input rows when conv_is_1x1(s) and
// direct is true (Gemm1x1). Same shapes as the reference.
bool conv_is_1x1(const Conv2dShape& s);
template <typename T>
void conv2d_gemm_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                         bool relu, bool direct);
template <typename T>
void conv2d_gemm_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s,
                               bool direct);
template <typename T>
void conv2d_gemm_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s,
                                 bool direct);

// Tuning of the im2col path (for benchmarks): rows of the im2col matrix per tile
// (0 = automatic) and whether tiles are spread over threads each calling single-threaded
// GEMM (true, default) or processed one by one with parallel_gemm (false).
void conv_set_im2col_tuning(int64_t tile_rows, bool tile_parallel);

// Depthwise (G == C, K = C*m): same shapes as the reference with Cg = 1.
template <typename T>
void conv2d_depthwise_forward(T* out, const T* inp, const T* weight, const T* bias,
                              const Conv2dShape& s, bool relu = false);
template <typename T>
void conv2d_depthwise_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s);
// dbias (K), if given, gets the bias gradient too (the sum of dout over its pixels), in the
// same pass over dout.
template <typename T>
void conv2d_depthwise_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s,
                                      T* dbias = nullptr);
// All three gradients (each optional: nullptr). With one filter per channel and both dinp and
// dweight, one pass over the rows serves all three, reading dout from memory once; otherwise
// the input gradient takes its own pass.
template <typename T>
void conv2d_depthwise_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                               const Conv2dShape& s);

// Direct (groups 1): same shapes as the reference. The data gradient in direct form
// (gather, vectorized over K) is for few input channels only: C <= kDirectDataMaxC
// (it throws otherwise); conv2d_backward sends larger C through conv_transpose2d_forward.
constexpr int64_t kDirectDataMaxC = 7;
template <typename T>
void conv2d_direct_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                           bool relu = false);
// The same into a strided output view: pixel (n, oh, ow) at out + n*img_stride +
// oh*row_stride + ow*px_stride, its K channels contiguous (e.g. one phase of a strided
// output, as the transposed conv writes it). Any pads, also negative or past the kernel.
// stream: the caller's choice for an output the caches would not keep: float32 pixels whose K
// channels are whole 64-byte lines (aligned, as the view's strides) go out with streaming
// stores, block of filters by block of filters (a partial last block, and double, keep plain
// stores).
template <typename T>
void conv2d_direct_forward_view(T* out, int64_t img_stride, int64_t row_stride, int64_t px_stride, const T* inp,
                                const T* weight, const T* bias, const Conv2dShape& s, bool relu = false,
                                bool stream = false);
template <typename T>
void conv2d_direct_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s);
template <typename T>
void conv2d_direct_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s);

}  // namespace faltung
