// Convolution: validation, algorithm choice and the im2col + GEMM paths.
//
// N batch, H/W input size, C in-channels, K filters, KH/KW kernel, OH/OW output size,
// G groups, Cg = C/G, Kg = K/G, P = N*OH*OW output pixels, D = KH*KW*Cg.
// inp (N,H,W,C), weight (KH,KW,Cg,K) = a (D,K) matrix, out (N,OH,OW,K) = a (P,K) matrix.
// For group g: out[:, g*Kg:(g+1)*Kg] = col_g (P,D) @ weight[:, g*Kg:(g+1)*Kg], where row p of
// col_g is the receptive field of output pixel p on channels [g*Cg, (g+1)*Cg), (kh,kw,c)
// order. The P rows are cut into tiles of R rows; a tile's col_g lives in the thread's
// workspace (WorkspaceSlot::Columns), so memory stays bounded whatever N is.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "faltung/conv.hpp"
#include "faltung/conv_phased.hpp"
#include "faltung/conv_transpose.hpp"
#include "faltung/conv_winograd.hpp"
#include "elementwise.hpp"
#include "rnn_gemm.hpp"

namespace faltung {

namespace {
std::string geom_str(const Conv2dShape& s) {
  return "input (N,H,W,C)=" + shape_str({s.N, s.H, s.W, s.C}) + ", weight (KH,KW,C/groups,K)=" +
         shape_str({s.KH, s.KW, s.groups > 0 ? s.C / s.groups : 0, s.K}) + ", output (OH,OW)=" +
         shape_str({s.OH, s.OW}) + ", strides=" + shape_str({s.stride_h, s.stride_w}) +
         ", dilation=" + shape_str({s.dil_h, s.dil_w}) + ", pad (top,left)=" +
         shape_str({s.pad_top, s.pad_left}) + ", groups=" + std::to_string(s.groups);
}
int64_t g_tile_rows = 0;      // 0: automatic
bool g_tile_parallel = true;  // tiles over threads (true) or parallel_gemm per tile (false)
}  // namespace

void check_conv2d_shape(const Conv2dShape& s) {
  const std::string where = "conv2d: ";
  FALTUNG_CHECK(s.N >= 0, where + "batch size must be >= 0; " + geom_str(s));
  FALTUNG_CHECK(s.H > 0 && s.W > 0 && s.C > 0, where + "input sizes must be positive; " + geom_str(s));
  FALTUNG_CHECK(s.KH > 0 && s.KW > 0 && s.K > 0, where + "kernel sizes and filters must be positive; " + geom_str(s));
  FALTUNG_CHECK(s.stride_h > 0 && s.stride_w > 0, where + "strides must be positive; " + geom_str(s));
  FALTUNG_CHECK(s.dil_h > 0 && s.dil_w > 0, where + "dilation rates must be positive; " + geom_str(s));
  FALTUNG_CHECK(s.groups > 0, where + "groups must be positive; " + geom_str(s));
  FALTUNG_CHECK(s.C % s.groups == 0, where + "input channels C=" + std::to_string(s.C) +
                                         " are not divisible by groups=" + std::to_string(s.groups));
  FALTUNG_CHECK(s.K % s.groups == 0, where + "filters K=" + std::to_string(s.K) +
                                         " are not divisible by groups=" + std::to_string(s.groups));
  FALTUNG_CHECK(s.OH > 0 && s.OW > 0, where + "output sizes must be positive (is the kernel larger than the "
                                              "padded, dilated input?); " + geom_str(s));
  const char* op = "conv2d";
  const int64_t ekh = size_mul(s.KH - 1, s.dil_h, op, "(kernel height - 1) * dilation_rate") + 1;
  const int64_t ekw = size_mul(s.KW - 1, s.dil_w, op, "(kernel width - 1) * dilation_rate") + 1;
  const int64_t span_h = size_mul(s.OH - 1, s.stride_h, op, "(output height - 1) * strides");
  const int64_t span_w = size_mul(s.OW - 1, s.stride_w, op, "(output width - 1) * strides");
  FALTUNG_CHECK(s.pad_top >= 0 && s.pad_top < ekh && s.pad_left >= 0 && s.pad_left < ekw,
                where + "padding must be in [0, dilated kernel size); " + geom_str(s));
  FALTUNG_CHECK(span_h - s.pad_top <= s.H - 1 && span_w - s.pad_left <= s.W - 1,
                where + "output too large: the last window starts past the input; " + geom_str(s));
}

bool conv_is_1x1(const Conv2dShape& s) {
  return s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 &&
         s.pad_left == 0 && s.OH == s.H && s.OW == s.W;
}

bool conv_algo_applicable(ConvAlgo algo, const Conv2dShape& s) {
  switch (algo) {
    case ConvAlgo::Reference:
    case ConvAlgo::Im2col:
    case ConvAlgo::Auto: return true;
    case ConvAlgo::Gemm1x1: return conv_is_1x1(s);
    case ConvAlgo::Depthwise: return s.groups == s.C;
    case ConvAlgo::Winograd: return winograd_applicable(s);
    case ConvAlgo::Phased: return conv_phased_applicable(s);
    case ConvAlgo::Direct: return s.groups == 1;
  }
  return false;
}

ConvAlgo choose_conv_algo(const Conv2dShape& s) {
  if (s.groups == s.C && s.C > 1) return ConvAlgo::Depthwise;
  if (conv_is_1x1(s)) return ConvAlgo::Gemm1x1;
  // Few input channels: Winograd's transforms cost more than they save (3 channels: 3.3 ms
  // vs 1 ms direct for the CIFAR first layer, batch 64).
  if (winograd_applicable(s) && s.C > kDirectDataMaxC) return ConvAlgo::Winograd;
  // Dilated 3x3: Winograd on the phase images beats im2col 1.2-1.9x forward and backward from
  // 8 input channels on (1 thread, 8-128 channels, 8x8-64x64 images, dilation 2-8); with
  // fewer channels the Winograd transforms cost more than they save (C=3, 4: 0.8-1.0x).
  if (conv_phased_applicable(s) && s.C >= 8) return ConvAlgo::Phased;
  // Direct computes filters in register blocks of 16 (float32): from 8 filters on, at least
  // half of a block does useful work. Below that (e.g. the edge-lover model's single filter)
  // im2col + GEMM wastes less.
  if (s.groups == 1 && s.K >= 8) return ConvAlgo::Direct;
  return ConvAlgo::Im2col;
}

const char* conv_algo_name(ConvAlgo algo) {
  switch (algo) {
    case ConvAlgo::Reference: return "reference";
    case ConvAlgo::Im2col: return "im2col";
    case ConvAlgo::Gemm1x1: return "gemm1x1";
    case ConvAlgo::Depthwise: return "depthwise";
    case ConvAlgo::Winograd: return "winograd";
    case ConvAlgo::Phased: return "phased";
    case ConvAlgo::Direct: return "direct";
    case ConvAlgo::Auto: return "auto";
  }
  return "?";
}

ConvAlgo conv_algo_from_name(const std::string& name) {
  for (ConvAlgo a : {ConvAlgo::Reference, ConvAlgo::Im2col, ConvAlgo::Gemm1x1, ConvAlgo::Depthwise,
                     ConvAlgo::Winograd, ConvAlgo::Phased, ConvAlgo::Direct, ConvAlgo::Auto})
    if (name == conv_algo_name(a)) return a;
  throw std::invalid_argument("conv2d: unknown algorithm '" + name +
                              "'; expected one of auto, reference, im2col, gemm1x1, depthwise, winograd, "
                              "phased, direct");
}

void conv_set_im2col_tuning(int64_t tile_rows, bool tile_parallel) {
  g_tile_rows = std::max<int64_t>(tile_rows, 0);
  g_tile_parallel = tile_parallel;
}

namespace {

// Rows per tile: the tile's im2col block (R, D) about 64K elements (256 KiB of floats), so it
// stays in L2 next to the weight panel while GEMM reads it (bench_conv TileRows sweep: 128-256
// rows best for D = 288 on this machine).
int64_t tile_rows(const Conv2dShape& s, int64_t D) {
  if (g_tile_rows > 0) return g_tile_rows;
  return std::clamp<int64_t>((int64_t(1) << 16) / std::max<int64_t>(D, 1), 32, 1024);
}

// inp (N,H,W,C) -> col (p1-p0, D): rows p0..p1 of col_g (receptive fields on group g's channels).
template <typename T>
void im2col_tile(T* col, const T* inp, const Conv2dShape& s, int64_t g, int64_t p0, int64_t p1) {
  const int64_t Cg = s.C / s.groups, D = s.KH * s.KW * Cg;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / (s.OH * s.OW), oh = (p / s.OW) % s.OH, ow = p % s.OW;
    T* row = col + (p - p0) * D;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
      T* row_kh = row + kh * s.KW * Cg;
      if (ih < 0 || ih >= s.H) {
        std::fill(row_kh, row_kh + s.KW * Cg, T(0));
        continue;
      }
      const T* in_row = inp + (n * s.H + ih) * s.W * s.C + g * Cg;
      const int64_t iw0 = ow * s.stride_w - s.pad_left;
      if (s.dil_w == 1 && Cg == s.C && iw0 >= 0 && iw0 + s.KW <= s.W) {  // one contiguous run
        std::memcpy(row_kh, in_row + iw0 * s.C, sizeof(T) * s.KW * Cg);
        continue;
      }
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
        T* dst = row_kh + kw * Cg;
        if (iw < 0 || iw >= s.W)
          std::fill(dst, dst + Cg, T(0));
        else
          std::memcpy(dst, in_row + iw * s.C, sizeof(T) * Cg);
      }
    }
  }
}

// dcol (p1-p0, D) scatter-added into dinp (N,H,W,C): the adjoint of im2col_tile.
template <typename T>
void col2im_tile_add(T* dinp, const T* dcol, const Conv2dShape& s, int64_t g, int64_t p0, int64_t p1) {
  const int64_t Cg = s.C / s.groups, D = s.KH * s.KW * Cg;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / (s.OH * s.OW), oh = (p / s.OW) % s.OH, ow = p % s.OW;
    const T* row = dcol + (p - p0) * D;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
      if (ih < 0 || ih >= s.H) continue;
      T* din_row = dinp + (n * s.H + ih) * s.W * s.C + g * Cg;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
        if (iw < 0 || iw >= s.W) continue;
        const T* src = row + (kh * s.KW + kw) * Cg;
        T* dst = din_row + iw * s.C;
        for (int64_t c = 0; c < Cg; ++c) dst[c] += src[c];
      }
    }
  }
}

// out rows (R, K) += bias, then relu; in place.
template <typename T>
void bias_relu_rows(T* out, int64_t R, int64_t K, const T* bias, bool relu) {
  if (!bias && !relu) return;
  for (int64_t r = 0; r < R; ++r) {
    T* row = out + r * K;
    if (bias)
      for (int64_t k = 0; k < K; ++k) row[k] += bias[k];
    if (relu)
      for (int64_t k = 0; k < K; ++k) row[k] = row[k] > T(0) ? row[k] : T(0);
  }
}

// The A operand for rows p0.. of group g: the input itself (direct, 1x1) or a fresh im2col tile.
template <typename T>
const T* col_operand(const T* inp, const Conv2dShape& s, int64_t g, int64_t p0, int64_t p1, bool direct,
                     int64_t* lda) {
  const int64_t Cg = s.C / s.groups, D = s.KH * s.KW * Cg;
  if (direct) {
    *lda = s.C;
    return inp + p0 * s.C + g * Cg;
  }
  T* col = workspace<T>((p1 - p0) * D, WorkspaceSlot::Columns);
  im2col_tile(col, inp, s, g, p0, p1);
  *lda = D;
  return col;
}

}  // namespace

// dout (N,OH,OW,K) -> dbias (K): per-thread partial sums over pixel rows, then a reduce. Each
// thread sums its rows in chunks that stay in L1 while up to four channel vectors at a time
// sum them in registers (elementwise::sum_rows). (It was compiled once, at the baseline level,
// in conv_reference.cpp: 12% of a depthwise conv's backward and 6% of a 1x1 conv's.)
template <typename T>
void conv2d_bias_backward(T* dbias, const T* dout, const Conv2dShape& s) {
  const int64_t P = s.N * s.OH * s.OW, K = s.K;
  std::fill(dbias, dbias + K, T(0));
  if (K == 0) return;
  const int nt = (P * K < (1 << 16)) ? 1 : get_num_threads();
  // the calling thread's scratch, one row per thread
  T* partial = workspace<T>(nt * K, WorkspaceSlot::Vectors);
  std::fill(partial, partial + nt * K, T(0));
  const int64_t chunk = std::max<int64_t>(1, (16 << 10) / (K * int64_t(sizeof(T))));
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    T* acc = partial + t * K;
    for (int64_t p0 = P * t / n, pe = P * (t + 1) / n; p0 < pe; p0 += chunk)
      elementwise::sum_rows(acc, dout + p0 * K, std::min(chunk, pe - p0), K);
  }
  for (int t = 0; t < nt; ++t)
    for (int64_t k = 0; k < K; ++k) dbias[k] += partial[t * K + k];
}

namespace {

// C (P,N) = A (P,D) @ B, B(d, n) = b[d * bd + n * bn] (the weight or its transpose), then bias
// and ReLU if given: the 1x1 convolutions (groups 1) and their input gradient. B is packed once
// into panels of NR columns (rnn_gemm.hpp, the recurrent steps' register tiles), and the tiles
// read A's rows in place. OpenBLAS packs both operands and zeroes C on every call; for a tall
// A with few columns that costs as much as the products (1x1 64->128 on (64, 32, 32), 2
// threads: 4.8 ms against PyTorch's 3.2). The rows go in chunks (the threads' unit of work),
// each tile of a chunk across all the panels; the bias starts the tiles' sums and ReLU clamps
// them before their store.
// (A pass over each chunk's output for the bias, 61 KB at K = 128, cost ~10% of the forward.)
// The packed B is followed by the bias padded to whole panels, when there is one.
template <typename T>
const T* pack_pointwise(const T* b, int64_t D, int64_t N, int64_t bd, int64_t bn, const T* bias = nullptr) {
  constexpr int64_t NR = rnn_detail::Panel<T>::NR;
  const int64_t nb = (N + NR - 1) / NR;
  T* packed = workspace<T>(nb * D * NR + nb * NR, WorkspaceSlot::Columns);
  rnn_detail::pack_panels<T>(b, D, N, bd, bn, 0, nb, packed);
  if (bias)
    for (int64_t n = 0; n < nb * NR; ++n) packed[nb * D * NR + n] = n < N ? bias[n] : T(0);
  return packed;
}
// Rows of A per chunk (a thread's unit of work): a block of MR-row tiles that fits L1 (32 KB).
template <typename T>
int64_t pointwise_chunk(int64_t D) {
  constexpr int64_t MR = rnn_detail::Panel<T>::MR;
  return std::max<int64_t>(1, (32 << 10) / (D * int64_t(sizeof(T))) / MR) * MR;
}
// C rows [0, M) = A rows [0, M) @ packed B (+ the packed bias, ReLU).
template <typename T>
void pointwise_rows(T* C, const T* A, int64_t M, int64_t D, int64_t N, const T* packed, bool bias,
                    bool relu, bool stream = false) {
  constexpr int64_t NR = rnn_detail::Panel<T>::NR, MR = rnn_detail::Panel<T>::MR;
  const int64_t nb = (N + NR - 1) / NR;
  // each tile of MR rows across all the panels, its rows of A in L1 (panel by panel over the
  // whole chunk instead: 1x1 64->128 on (64, 32, 32) forward 1.025 of the time, 32->64 1.03,
  // 256->512 on (32, 8, 8) 1.02, paired)
  for (int64_t i = 0; i < M; i += MR)
    rnn_detail::panel_gemm<T>(std::min(MR, M - i), D, A + i * D, D, packed, D * NR, 0, nb, N, C + i * N, N, false,
                              bias ? packed + nb * D * NR : nullptr, relu, stream);
}
template <typename T>
void pointwise_gemm(T* C, const T* A, int64_t P, int64_t D, int64_t N, const T* b, int64_t bd, int64_t bn,
                    const T* bias, bool relu, int threads) {
  const T* packed = pack_pointwise(b, D, N, bd, bn, bias);
  const int64_t chunk = pointwise_chunk<T>(D), nchunks = (P + chunk - 1) / chunk;
  // An output above 8 MB (twice the two cores' L2) is written with streaming stores: no
  // read-for-ownership of lines the kernel overwrites whole. Paired, forward: 1x1 64->128 on
  // (64, 32, 32), 32 MB out: 0.87 of the time; on (32, 32, 32), 16 MB: 0.87; 32->64 on
  // (64, 32, 32): 0.90; at 8 and 4 MB 0.98-1.03, so those keep plain stores. The DenseNet-BC
  // and Inception training steps, whose 1x1 outputs reach 16 MB, were level (1.00). The input
  // gradient alone (this function) and the one-pass backward's dinp stream the same way.
  const bool stream = simd::stream_rows(P, N * int64_t(sizeof(T)), C);
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < nchunks; ++i) {
      const int64_t p0 = i * chunk;
      pointwise_rows(C + p0 * N, A + p0 * D, std::min(P, p0 + chunk) - p0, D, N, packed, bias != nullptr, relu,
                     stream);
    }
    if (stream) simd::stream_fence();  // each thread orders its own streaming stores
  }
}
// The sizes pointwise_gemm takes: an inner size D up to 512 (a tile's rows of A stay in L1) and
// a packed B (D x N, N rounded up to whole panels) up to 2 MiB (it stays in L2, and is held in
// the calling thread's Columns workspace after the call); beyond, OpenBLAS's blocking wins.
template <typename T>
bool pointwise_fits(int64_t D, int64_t N) {
  constexpr int64_t NR = rnn_detail::Panel<T>::NR;
  return D <= 512 && (N + NR - 1) / NR * NR * D * int64_t(sizeof(T)) <= (int64_t(2) << 20);
}

// The 1x1 conv's backward (groups 1) when it needs the input and the filter gradients, with K a
// multiple of the vector width (the weight gradient's tiles are whole vectors of K): all
// gradients in one pass over dout's rows, chunk by chunk while the chunk is in cache:
// dinp = dout @ weight^T (pointwise_rows), dweight += inp^T dout (rnn_gemm.hpp's tn_gemm:
// panel_tile's TransA tiles, both operands read in place) and dbias += dout's column sums, into
// per-thread partials that are summed at the end. Apart, each of the three read dout (the
// largest operand) from memory, and OpenBLAS packed both operands of every row tile's
// weight-gradient GEMM. Only while dweight is at most 128 KB: larger (C 256 K 256, C 512 K 128,
// C 256 K 512: 1.09-1.41x the separate passes' time, paired) the tiles re-read inp's and dout's
// rows from L2 for every MR x 2-vector block of dweight, and OpenBLAS's packed blocks win.
template <typename T>
bool pointwise_backward_fits(const Conv2dShape& s) {
  return s.groups == 1 && s.K % simd::Vec<T>::width == 0 && pointwise_fits<T>(s.K, s.C) &&
         s.C * s.K * int64_t(sizeof(T)) <= (128 << 10);
}
template <typename T>
void pointwise_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const Conv2dShape& s) {
  const int64_t P = s.N * s.H * s.W, C = s.C, K = s.K, CK = C * K;
  std::fill(dweight, dweight + CK, T(0));
  if (dbias) std::fill(dbias, dbias + K, T(0));
  if (P == 0) return;
  const T* packed = pack_pointwise(weight, K, C, 1, K);  // weight^T (K, C): B(k, c) = weight[c K + k]
  // chunks of whole L1 blocks of dout's rows, at least ~96 rows (the weight-gradient tiles load
  // and store their accumulators once per chunk)
  const int64_t sub = pointwise_chunk<T>(K), chunk = sub * ((96 + sub - 1) / sub);
  const int64_t nchunks = (P + chunk - 1) / chunk;
  const int nt = static_cast<int>(std::min<int64_t>(conv_threads(s), nchunks));
  // dinp above 8 MB with streaming stores, as the forward's output (pointwise_gemm). Paired,
  // training step: 1x1 128->64 on (64, 32, 32) (33 MB dinp) 0.967, 64->128 (16 MB) 0.987, 8 MB
  // shapes 0.997-1.002. (The twelfth session measured this level when the row tiles went panel
  // by panel.)
  const bool stream = simd::stream_rows(P, C * int64_t(sizeof(T)), dinp);
  std::vector<T*> parts(nt, nullptr);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    T* dw = t == 0 ? dweight : workspace<T>(CK + K, WorkspaceSlot::Partials);
    T* db = t == 0 ? dbias : dbias ? dw + CK : nullptr;
    if (t) std::fill(dw, dw + CK + K, T(0));
    parts[t] = dw;
    for (int64_t i = nchunks * t / n; i < nchunks * (t + 1) / n; ++i) {
      const int64_t p0 = i * chunk, p1 = std::min(P, p0 + chunk);
      pointwise_rows(dinp + p0 * C, dout + p0 * K, p1 - p0, K, C, packed, false, false, stream);
      rnn_detail::tn_gemm<T>(C, K, p1 - p0, inp + p0 * C, C, dout + p0 * K, K, dw, K);
      if (db) elementwise::sum_rows(db, dout + p0 * K, p1 - p0, K);
    }
    if (stream) simd::stream_fence();
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t e = 0; e < CK + K; ++e) {
      T* dst = e < CK ? dweight + e : dbias ? dbias + (e - CK) : nullptr;
      if (dst)
        for (int u = 1; u < n; ++u) *dst += parts[u][e];
    }
  }
}

}  // namespace

// inp (N,H,W,C), weight (D,K), bias (K)|nullptr -> out (P,K) = col @ weight (+ bias, relu)
template <typename T>
void conv2d_gemm_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                         bool relu, bool direct) {
  const int64_t G = s.groups, Kg = s.K / G, D = s.KH * s.KW * (s.C / G), P = s.N * s.OH * s.OW;
  if (P == 0) return;
  if (direct && G == 1 && pointwise_fits<T>(D, s.K)) {
    pointwise_gemm(out, inp, P, D, s.K, weight, s.K, 1, bias, relu, conv_threads(s));
    return;
  }
  auto tile = [&](int64_t p0, int64_t p1, bool par) {
    T* out_t = out + p0 * s.K;
    for (int64_t g = 0; g < G; ++g) {
      int64_t lda;
      const T* A = col_operand(inp, s, g, p0, p1, direct, &lda);
      (par ? parallel_gemm<T> : gemm<T>)(false, false, p1 - p0, Kg, D, T(1), A, lda, weight + g * Kg,
                                         s.K, T(0), out_t + g * Kg, s.K);
    }
    bias_relu_rows(out_t, p1 - p0, s.K, bias, relu);
  };
  const int64_t R = tile_rows(s, D), ntiles = (P + R - 1) / R;
  if (g_tile_parallel) {
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
    for (int64_t i = 0; i < ntiles; ++i) tile(i * R, std::min(P, (i + 1) * R), false);
  } else {
    const int64_t R2 = R * get_num_threads();
    for (int64_t p0 = 0; p0 < P; p0 += R2) tile(p0, std::min(P, p0 + R2), true);
  }
}

// dout (P,K), weight (D,K) -> dinp (N,H,W,C) = col2im(dout @ weight^T). Direct (1x1):
// dinp (P,C) = dout @ weight^T, row tiles disjoint. Otherwise each thread owns whole images
// (col2im of neighbouring pixels overlaps) and zeroes them first.
template <typename T>
void conv2d_gemm_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s, bool direct) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, D = s.KH * s.KW * Cg;
  const int64_t OHW = s.OH * s.OW, P = s.N * OHW, R = tile_rows(s, D);
  if (P == 0) return;
  if (direct && G == 1 && pointwise_fits<T>(s.K, s.C)) {  // dinp (P,C) = dout (P,K) @ weight^T
    pointwise_gemm(dinp, dout, P, s.K, s.C, weight, 1, s.K, static_cast<const T*>(nullptr), false,
                   conv_threads(s));
    return;
  }
  if (direct) {
    const int64_t ntiles = (P + R - 1) / R;
#pragma omp parallel for schedule(static) num_threads(conv_threads(s))
    for (int64_t i = 0; i < ntiles; ++i) {
      const int64_t p0 = i * R, p1 = std::min(P, p0 + R);
      for (int64_t g = 0; g < G; ++g)
        gemm<T>(false, true, p1 - p0, Cg, Kg, T(1), dout + p0 * s.K + g * Kg, s.K, weight + g * Kg, s.K,
                T(0), dinp + p0 * s.C + g * Cg, s.C);
    }
    return;
  }
  // rows [q0, q1) of whole images, par: parallel_gemm
  auto images = [&](int64_t n0, int64_t n1, bool par) {
    std::fill(dinp + n0 * s.H * s.W * s.C, dinp + n1 * s.H * s.W * s.C, T(0));
    const int64_t Rb = par ? R * get_num_threads() : R;
    for (int64_t p0 = n0 * OHW; p0 < n1 * OHW; p0 += Rb) {
      const int64_t p1 = std::min(n1 * OHW, p0 + Rb);
      T* dcol = workspace<T>((p1 - p0) * D, WorkspaceSlot::Columns);
      for (int64_t g = 0; g < G; ++g) {
        (par ? parallel_gemm<T> : gemm<T>)(false, true, p1 - p0, D, Kg, T(1), dout + p0 * s.K + g * Kg, s.K,
                                           weight + g * Kg, s.K, T(0), dcol, D);
        col2im_tile_add(dinp, dcol, s, g, p0, p1);
      }
    }
  };
  const int nt = conv_threads(s);
  if (g_tile_parallel && s.N >= nt) {
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      images(s.N * t / n, s.N * (t + 1) / n, false);
    }
  } else {
    images(0, s.N, true);
  }
}

// col (P,D), dout (P,K) -> dweight (D,K) = col^T @ dout: each thread accumulates its row
// tiles into a private partial (WorkspaceSlot::Partials), then the partials are summed.
template <typename T>
void conv2d_gemm_backward_filter(T* dweight, const T* dout, const T* inp, const Conv2dShape& s, bool direct) {
  const int64_t G = s.groups, Kg = s.K / G, D = s.KH * s.KW * (s.C / G), P = s.N * s.OH * s.OW;
  const int64_t R = tile_rows(s, D), ntiles = (P + R - 1) / R, DK = D * s.K;
  auto accumulate = [&](T* acc, int64_t p0, int64_t p1, bool par) {
    for (int64_t g = 0; g < G; ++g) {
      int64_t lda;
      const T* A = col_operand(inp, s, g, p0, p1, direct, &lda);
      (par ? parallel_gemm<T> : gemm<T>)(true, false, D, Kg, p1 - p0, T(1), A, lda, dout + p0 * s.K + g * Kg,
                                         s.K, T(1), acc + g * Kg, s.K);
    }
  };
  std::fill(dweight, dweight + DK, T(0));
  const int nt = std::min<int64_t>(conv_threads(s), ntiles);
  if (!g_tile_parallel || nt <= 1) {
    const int64_t R2 = g_tile_parallel ? R : R * get_num_threads();
    for (int64_t p0 = 0; p0 < P; p0 += R2) accumulate(dweight, p0, std::min(P, p0 + R2), !g_tile_parallel);
    return;
  }
  std::vector<T*> parts(nt, nullptr);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    T* acc = t == 0 ? dweight : workspace<T>(DK, WorkspaceSlot::Partials);
    if (t) std::fill(acc, acc + DK, T(0));
    parts[t] = acc;
    for (int64_t i = ntiles * t / n; i < ntiles * (t + 1) / n; ++i)
      accumulate(acc, i * R, std::min(P, (i + 1) * R), false);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t e = 0; e < DK; ++e)
      for (int u = 1; u < n; ++u) dweight[e] += parts[u][e];
  }
}

template <typename T>
ConvAlgo conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
                        ConvAlgo algo, bool relu) {
  check_conv2d_shape(s);
  if (algo == ConvAlgo::Auto) algo = choose_conv_algo(s);
  FALTUNG_CHECK(conv_algo_applicable(algo, s), std::string("conv2d: algorithm '") + conv_algo_name(algo) +
                                                   "' cannot run this shape; " + geom_str(s));
  switch (algo) {
    case ConvAlgo::Reference: conv2d_reference_forward(out, inp, weight, bias, s, relu); break;
    case ConvAlgo::Im2col: conv2d_gemm_forward(out, inp, weight, bias, s, relu, false); break;
    case ConvAlgo::Gemm1x1: conv2d_gemm_forward(out, inp, weight, bias, s, relu, true); break;
    case ConvAlgo::Depthwise: conv2d_depthwise_forward(out, inp, weight, bias, s, relu); break;
    case ConvAlgo::Winograd: conv2d_winograd_forward(out, inp, weight, bias, s, relu); break;
    case ConvAlgo::Phased: conv2d_phased_forward(out, inp, weight, bias, s, relu); break;
    case ConvAlgo::Direct: conv2d_direct_forward(out, inp, weight, bias, s, relu); break;
    case ConvAlgo::Auto: break;
  }
  return algo;
}

template <typename T>
ConvAlgo conv2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                         const Conv2dShape& s, ConvAlgo algo) {
  check_conv2d_shape(s);
  if (algo == ConvAlgo::Auto) algo = choose_conv_algo(s);
  FALTUNG_CHECK(conv_algo_applicable(algo, s), std::string("conv2d_backward: algorithm '") + conv_algo_name(algo) +
                                                   "' cannot run this shape; " + geom_str(s));
  if (algo == ConvAlgo::Depthwise) {  // its own passes, the bias gradient fused into the filter's
    conv2d_depthwise_backward(dinp, dweight, dbias, dout, inp, weight, s);
    return algo;
  }
  if (algo == ConvAlgo::Gemm1x1 && dinp && dweight && pointwise_backward_fits<T>(s)) {
    pointwise_backward(dinp, dweight, dbias, dout, inp, weight, s);
    return algo;
  }
  if (dbias) conv2d_bias_backward(dbias, dout, s);
  switch (algo) {
    case ConvAlgo::Reference:
      if (dinp) conv2d_reference_backward_data(dinp, dout, weight, s);
      if (dweight) conv2d_reference_backward_filter(dweight, dout, inp, s);
      break;
    case ConvAlgo::Im2col:
    case ConvAlgo::Gemm1x1:
      if (dinp) conv2d_gemm_backward_data(dinp, dout, weight, s, algo == ConvAlgo::Gemm1x1);
      if (dweight) conv2d_gemm_backward_filter(dweight, dout, inp, s, algo == ConvAlgo::Gemm1x1);
      break;
    case ConvAlgo::Depthwise: break;  // above
    case ConvAlgo::Winograd:
      // Few input channels (reached only when Winograd is forced): the data-gradient
      // transforms cost more than they save (as in choose_conv_algo), so that gradient goes
      // through the direct gather.
      if (dinp && s.C <= kDirectDataMaxC) conv2d_direct_backward_data(dinp, dout, weight, s);
      else if (dinp) conv2d_winograd_backward_data(dinp, dout, weight, s);
      if (dweight) conv2d_winograd_backward_filter(dweight, dout, inp, s);
      break;
    case ConvAlgo::Phased: conv2d_phased_backward(dinp, dweight, dout, inp, weight, s); break;
    case ConvAlgo::Direct:
      // The data gradient is the transposed conv of dout with the same geometry; for C >= 8
      // that runs its phased forward (conv_transpose.cpp: one direct conv per stride phase,
      // or one Winograd conv for all phases when kernel = 2 * stride), faster than this
      // file's im2col + col2im (stride-2 3x3 64->64 @32, batch 64, 2 threads: 10.97-11.57
      // vs 12.28-12.75 ms, medians of two runs).
      if (dinp && s.C <= kDirectDataMaxC) conv2d_direct_backward_data(dinp, dout, weight, s);
      else if (dinp) conv_transpose2d_forward(dinp, dout, weight, static_cast<const T*>(nullptr), s);
      if (dweight) conv2d_direct_backward_filter(dweight, dout, inp, s);
      break;
    case ConvAlgo::Auto: break;
  }
  return algo;
}

#define FALTUNG_CONV(T)                                                                               \
  template void conv2d_gemm_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&, bool, bool); \
  template void conv2d_gemm_backward_data<T>(T*, const T*, const T*, const Conv2dShape&, bool);        \
  template void conv2d_gemm_backward_filter<T>(T*, const T*, const T*, const Conv2dShape&, bool);      \
  template ConvAlgo conv2d_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&, ConvAlgo,  \
                                      bool);                                                          \
  template ConvAlgo conv2d_backward<T>(T*, T*, T*, const T*, const T*, const T*, const Conv2dShape&,   \
                                       ConvAlgo);                                                     \
  template void conv2d_bias_backward<T>(T*, const T*, const Conv2dShape&);
FALTUNG_CONV(float)
FALTUNG_CONV(double)
#undef FALTUNG_CONV

}  // namespace faltung
