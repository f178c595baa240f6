// Winograd F(m x m, 3x3) convolution, NHWC: forward, backward-data, backward-filter; and the
// forward of F(3x3, 2x2) for 2x2 kernels (the transposed conv's stride phases).
//
// N batch, H/W input size, C in-channels, K filters, OH/OW output size, M output tile size,
// A = M + R - 1 input tile size (R kernel size), P = A*A transform positions, TB tiles per
// block, nt threads.
// Tiles cover the output grid: TH = ceil(OH/M) by TW = ceil(OW/M) per image, N*TH*TW in all,
// numbered image-major. Per block of TB tiles a thread transforms the input tiles into
// V (P, TB, C), runs P products V[p] (TB,C) @ U[p] (C,K) -> Mb[p] (TB,K), and transforms Mb
// back into the output. U = G g G^T is computed once per call into the calling thread's
// workspace. Where U[p] is large, each position's (C,K) matrix is packed in panels there
// (rnn_gemm.hpp) and the products are faltung's panel tiles reading V in place: OpenBLAS, called
// per block and position, packs all of U[p] again on every call (at 256->256 channels its
// packing took a third of its time at the SkylakeX level); smaller ones stay with
// single-threaded OpenBLAS (ULayout). Threads own disjoint tile blocks. backward_filter's
// products V[p]^T Z[p] are single-threaded OpenBLAS calls.
// Workspaces (common.hpp): WinogradScratch (filter partials / rotated weights), WinogradWeights
// (U or dU), WinogradTiles, WinogradProducts.
#include "faltung/conv_winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <string>

#include "conv_winograd_tiles.hpp"
#include "faltung/common.hpp"
#include "rnn_gemm.hpp"

namespace faltung {

namespace {

int g_tile = 0;  // 0: choose per call (tile_for)
int g_filter_algo = 0;

using wino::Tf;
using wino::VecOf;

// Tiles per block: the block's V and Mb together take about 768 KB (L2-sized), but at least
// 64 tiles so that each product has rows enough to amortize streaming U[p] (measured with
// OpenBLAS products on 256->256 channels: 16 tiles 71 ms, 64 tiles 57 ms, 128 tiles 54 ms;
// noisy machine).
int64_t block_tiles(int64_t P, int64_t C, int64_t K, int64_t elem, int64_t tiles, int nt) {
  const int64_t budget = 768 * 1024;
  int64_t tb = budget / (P * (C + K) * elem);
  tb = std::max<int64_t>(64, std::min<int64_t>(tb, 512));
  // Enough blocks for every thread to get a few.
  const int64_t fair = (tiles + 2 * nt - 1) / (2 * nt);
  tb = std::min(tb, std::max<int64_t>(fair, 8));
  return std::max<int64_t>(1, std::min(tb, tiles));
}

// Calls f(c0) for a vector of channels at each c0 (vector path), then fs(c) per remainder.
template <class T, class FV, class FS>
inline void for_channels(int64_t C, FV fv, FS fs) {
  constexpr int VW = VecOf<T>::width;
  int64_t c = 0;
  for (; c + VW <= C; c += VW) fv(c);
  for (; c < C; ++c) fs(c);
}

// The transformed weights U, per position p a (C,K) matrix at U + p * stride. Where U[p] takes
// 64 KB or more and K wastes at most an eighth of its panels: K's columns in panels of NR, C
// rows each (rnn_detail::pack_panels' layout, zeros past K), the operand of panel_product, packed
// once per call. Else the plain (C,K) matrix for OpenBLAS, which packs U[p] again for every
// block but pads less. Paired, forward (+backward) time panels / OpenBLAS at AVX-512, float32:
// U[p] of 64-128 KB 0.75-0.93 (0.85-0.90) (C 64 K 256, C 128 K 128-256); at 16-50 KB level
// (0.98-1.08) or worse where K leaves a partial panel (K 40-112: 1.07-1.18); K below one panel
// (32 columns) 1.2-2.3 (1.1-1.5).
template <class T>
struct ULayout {
  static constexpr int64_t NR = rnn_detail::Panel<T>::NR;
  bool panels;
  int64_t stride;
  ULayout(int64_t C, int64_t K)
      : panels(C * K * int64_t(sizeof(T)) >= (64 << 10) && rnn_detail::Panel<T>::blocks(K) * NR * 8 <= 9 * K),
        stride(panels ? rnn_detail::Panel<T>::blocks(K) * C * NR : C * K) {}
};

// weight g (R,R,C,K) -> U = G g G^T per (c, k), laid out as ULayout<T>(C, K) says.
template <class T, int M>
void transform_weight(T* U, const T* g, int64_t C, int64_t K) {
  constexpr int A = Tf<M>::A, R = Tf<M>::R;
  constexpr int64_t NR = ULayout<T>::NR;  // a multiple of the vector width
  using V = typename VecOf<T>::type;
  const ULayout<T> L(C, K);
  const int64_t CK = C * K, last = (K - 1) / NR;
  auto one = [&](auto tag, int64_t c, int64_t k) {
    using W = decltype(tag);
    W x[R * R], t[A * R], u[A * A];
    for (int i = 0; i < R * R; ++i) x[i] = wino::load<W>(g + i * CK + c * K + k);
    for (int b = 0; b < R; ++b) Tf<M>::template wt<W, T>(x + b, R, t + b, R);          // t (A x R)
    for (int i = 0; i < A; ++i) Tf<M>::template wt<W, T>(t + i * R, 1, u + i * A, 1);  // u (A x A)
    T* dst = L.panels ? U + (k / NR) * C * NR + c * NR + k % NR : U + c * K + k;
    for (int p = 0; p < A * A; ++p) wino::store(dst + p * L.stride, u[p]);
  };
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    for_channels<T>(K, [&](int64_t k) { one(V{}, c, k); }, [&](int64_t k) { one(T{}, c, k); });
    if (L.panels)
      for (int p = 0; p < A * A; ++p) {
        T* row = U + p * L.stride + last * C * NR + c * NR;
        std::fill(row + (K - last * NR), row + NR, T(0));
      }
  }
}

// dU (P,C,K) -> dweight (3,3,C,K) = G^T dU G per (c, k).
template <class T, int M>
void transform_weight_grad(T* dg, const T* dU, int64_t C, int64_t K) {
  constexpr int A = Tf<M>::A;
  using V = typename VecOf<T>::type;
  const int64_t CK = C * K;
  auto one = [&](auto tag, int64_t c, int64_t k) {
    using W = decltype(tag);
    W u[A * A], t[3 * A], x[9];
    for (int p = 0; p < A * A; ++p) u[p] = wino::load<W>(dU + p * CK + c * K + k);
    for (int b = 0; b < A; ++b) Tf<M>::template wt_t<W, T>(u + b, A, t + b, A);        // t (3 x A)
    for (int i = 0; i < 3; ++i) Tf<M>::template wt_t<W, T>(t + i * A, 1, x + i * 3, 1);  // x (3 x 3)
    for (int i = 0; i < 9; ++i) wino::store(dg + i * CK + c * K + k, x[i]);
  };
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c)
    for_channels<T>(K, [&](int64_t k) { one(V{}, c, k); }, [&](int64_t k) { one(T{}, c, k); });
}

// Input tiles [t0, t0+nt) of inp (N,H,W,C) -> Vb (P,TB,C).
template <class T, int M>
void input_block(T* Vb, int64_t TB, const T* inp, const wino::TileGrid& grid, int64_t t0,
                 int64_t ntl, int64_t H, int64_t W, int64_t C, int64_t pt, int64_t pl) {
  using V = typename VecOf<T>::type;
  for (int64_t i = 0; i < ntl; ++i) {
    int64_t n, oh0, ow0;
    grid.locate(t0 + i, n, oh0, ow0);
    const T* src = inp + n * H * W * C;
    T* v = Vb + i * C;
    for_channels<T>(
        C, [&](int64_t c) { wino::input_tile<M, V>(src, H, W, C, oh0 - pt, ow0 - pl, c, v, TB * C); },
        [&](int64_t c) { wino::input_tile<M, T>(src, H, W, C, oh0 - pt, ow0 - pl, c, v, TB * C); });
  }
}

// The whole output of a conv (N,OH,OW,K), contiguous, with bias (K) or nullptr.
template <class T>
WinogradView<T> contiguous_view(T* out, const T* bias, int64_t K, int64_t OH, int64_t OW) {
  return WinogradView<T>{out, bias, 0, K, OH, OW, 0, 0, OH * OW * K, OW * K, K};
}

// The convolution proper with pre-transformed weights U (transform_weight's layout): inp
// (N,H,W,C) -> the transform-domain products of the OH x OW output grid (pads may be any
// integers), transformed back into each view (its channels, bias, shift and strides), then
// max(., 0) if relu.
template <class T, int M>
void winograd_conv(const T* inp, const T* U, bool relu, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                   int64_t OH, int64_t OW, int64_t pt, int64_t pl, const WinogradView<T>* views, int nviews) {
  constexpr int64_t P = Tf<M>::A * Tf<M>::A;
  using V = typename VecOf<T>::type;
  const wino::TileGrid grid{(OH + M - 1) / M, (OW + M - 1) / M, M};
  const int64_t tiles = N * grid.TH * grid.TW;
  const int nt = get_num_threads();
  const int64_t TB = block_tiles(P, C, K, sizeof(T), tiles, nt);
  const int64_t nblocks = (tiles + TB - 1) / TB;
  const ULayout<T> L(C, K);
#pragma omp parallel num_threads(nt)
  {
    T* Vb = workspace<T>(P * TB * C, WorkspaceSlot::WinogradTiles);
    T* Mb = workspace<T>(P * TB * K, WorkspaceSlot::WinogradProducts);
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t t0 = blk * TB, ntl = std::min(TB, tiles - t0);
      input_block<T, M>(Vb, TB, inp, grid, t0, ntl, H, W, C, pt, pl);
      for (int64_t p = 0; p < P; ++p)
        if (L.panels)
          rnn_detail::panel_product<T>(ntl, C, Vb + p * TB * C, C, U + p * L.stride, K, Mb + p * TB * K, K);
        else
          gemm<T>(false, false, ntl, K, C, T(1), Vb + p * TB * C, C, U + p * L.stride, K, T(0), Mb + p * TB * K, K);
      for (int64_t i = 0; i < ntl; ++i) {
        int64_t n, oh0, ow0;
        grid.locate(t0 + i, n, oh0, ow0);
        for (int g = 0; g < nviews; ++g) {
          const WinogradView<T>& v = views[g];
          T* dst = v.out + n * v.img;
          const T* m = Mb + i * K + v.k0;
          const int64_t h0 = oh0 - v.dh, w0 = ow0 - v.dw;
          for_channels<T>(
              v.K,
              [&](int64_t k) { wino::output_tile<M, V>(m, TB * K, v.bias, relu, k, dst, v.OH, v.OW, v.row, v.px, h0, w0); },
              [&](int64_t k) { wino::output_tile<M, T>(m, TB * K, v.bias, relu, k, dst, v.OH, v.OW, v.row, v.px, h0, w0); });
        }
      }
    }
  }
}

template <class T, int M>
void forward_m(T* out, const T* inp, const T* weight, const T* bias, const Conv2dShape& s,
               bool relu) {
  constexpr int64_t P = Tf<M>::A * Tf<M>::A;
  T* U = workspace<T>(P * ULayout<T>(s.C, s.K).stride, WorkspaceSlot::WinogradWeights);
  transform_weight<T, M>(U, weight, s.C, s.K);
  const WinogradView<T> view = contiguous_view(out, bias, s.K, s.OH, s.OW);
  winograd_conv<T, M>(inp, U, relu, s.N, s.H, s.W, s.C, s.K, s.OH, s.OW, s.pad_top, s.pad_left, &view, 1);
}

// dinp = correlation of dout with the kernel rotated by 180 degrees, channels swapped,
// padding 2 - pad: wr (3,3,K,C)[kh][kw][k][c] = weight[2-kh][2-kw][c][k].
template <class T, int M>
void backward_data_m(T* dinp, const T* dout, const T* weight, const Conv2dShape& s) {
  constexpr int64_t P = Tf<M>::A * Tf<M>::A;
  const int64_t C = s.C, K = s.K;
  T* wr = workspace<T>(9 * C * K, WorkspaceSlot::WinogradScratch);
#pragma omp parallel for schedule(static)
  for (int64_t rk = 0; rk < 9 * K; ++rk) {
    const int64_t r = rk / K, k = rk % K;
    const T* w = weight + (8 - r) * C * K + k;
    T* o = wr + (r * K + k) * C;
    for (int64_t c = 0; c < C; ++c) o[c] = w[c * K];
  }
  T* U = workspace<T>(P * ULayout<T>(K, C).stride, WorkspaceSlot::WinogradWeights);
  transform_weight<T, M>(U, wr, K, C);
  const WinogradView<T> view = contiguous_view<T>(dinp, nullptr, C, s.H, s.W);
  winograd_conv<T, M>(dout, U, false, s.N, s.OH, s.OW, K, C, s.H, s.W, 2 - s.pad_top, 2 - s.pad_left, &view, 1);
}

// dweight (3,3,C,K) = G^T [ sum over tiles of V[p]^T (C,TB) @ Z[p] (TB,K) ] G with
// V the transformed input tiles and Z = A dY A^T the transformed output-gradient tiles.
template <class T, int M>
void backward_filter_m(T* dweight, const T* dout, const T* inp, const Conv2dShape& s) {
  constexpr int64_t P = Tf<M>::A * Tf<M>::A;
  using V = typename VecOf<T>::type;
  const int64_t N = s.N, H = s.H, W = s.W, C = s.C, K = s.K, OH = s.OH, OW = s.OW;
  const wino::TileGrid grid{(OH + M - 1) / M, (OW + M - 1) / M, M};
  const int64_t tiles = N * grid.TH * grid.TW;
  const int nt = std::min(get_num_threads(), 64);
  const int64_t TB = block_tiles(P, C, K, sizeof(T), tiles, nt);
  const int64_t nblocks = (tiles + TB - 1) / TB;
  const int64_t PCK = P * C * K;
  T* dU = workspace<T>(PCK, WorkspaceSlot::WinogradWeights);
  T* parts[64];
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    T* Vb = workspace<T>(P * TB * C, WorkspaceSlot::WinogradTiles);
    T* Zb = workspace<T>(P * TB * K, WorkspaceSlot::WinogradProducts);
    T* part = tid == 0 ? dU : workspace<T>(PCK, WorkspaceSlot::WinogradScratch);
    parts[tid] = part;
    std::fill(part, part + PCK, T(0));
    // static: each thread sums a fixed range of blocks, so dweight is the same on every run
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t t0 = blk * TB, ntl = std::min(TB, tiles - t0);
      input_block<T, M>(Vb, TB, inp, grid, t0, ntl, H, W, C, s.pad_top, s.pad_left);
      for (int64_t i = 0; i < ntl; ++i) {
        int64_t n, oh0, ow0;
        grid.locate(t0 + i, n, oh0, ow0);
        const T* src = dout + n * OH * OW * K;
        T* z = Zb + i * K;
        for_channels<T>(
            K, [&](int64_t k) { wino::dout_tile<M, V>(src, OH, OW, K, oh0, ow0, k, z, TB * K); },
            [&](int64_t k) { wino::dout_tile<M, T>(src, OH, OW, K, oh0, ow0, k, z, TB * K); });
      }
      for (int64_t p = 0; p < P; ++p)
        gemm<T>(true, false, C, K, ntl, T(1), Vb + p * TB * C, C, Zb + p * TB * K, K, T(1),
                part + p * C * K, K);
    }
    // implicit barrier: every partial is complete; reduce into parts[0] == dU.
    const int nth = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int64_t e = 0; e < PCK; ++e) {
      T acc = parts[0][e];
      for (int j = 1; j < nth; ++j) acc += parts[j][e];
      parts[0][e] = acc;
    }
  }
  transform_weight_grad<T, M>(dweight, dU, C, K);
}

// Output tile size for an OH x OW output grid: the one with fewer transform-domain
// multiplies, P * tiles (F4 on ties: fewer tiles to transform). Small grids get F2.
int tile_for(int64_t OH, int64_t OW) {
  if (g_tile != 0) return g_tile;
  const int64_t cost4 = 36 * ((OH + 3) / 4) * ((OW + 3) / 4);
  const int64_t cost2 = 16 * ((OH + 1) / 2) * ((OW + 1) / 2);
  return cost4 <= cost2 ? 4 : 2;
}

void check_shape(const Conv2dShape& s, const char* op) {
  FALTUNG_CHECK(winograd_applicable(s), std::string(op) +
                                            ": needs a 3x3 kernel, strides 1, dilations 1 and groups 1");
  FALTUNG_CHECK(s.N >= 0 && s.H >= 0 && s.W >= 0 && s.C >= 1 && s.K >= 1 && s.OH >= 0 && s.OW >= 0,
                std::string(op) + ": sizes must be non-negative (C, K positive)");
}

}  // namespace

// Declared in conv_winograd_filter.cpp.
template <class T>
void winograd_filter_im2col(T* dweight, const T* dout, const T* inp, const Conv2dShape& s);

bool winograd_applicable(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 &&
         s.dil_w == 1 && s.groups == 1;
}

void winograd_set_tile(int m) {
  FALTUNG_CHECK(m == 0 || m == 2 || m == 4,
                "winograd_set_tile: expected m of 0 (auto), 2 or 4, received " + std::to_string(m));
  g_tile = m;
}
int winograd_get_tile() { return g_tile; }

void winograd_set_filter_algo(int algo) {
  FALTUNG_CHECK(algo == 0 || algo == 1,
                "winograd_set_filter_algo: expected 0 or 1, received " + std::to_string(algo));
  g_filter_algo = algo;
}
int winograd_get_filter_algo() { return g_filter_algo; }

template <class T>
void conv2d_winograd_forward(T* out, const T* inp, const T* weight, const T* bias,
                             const Conv2dShape& s, bool relu) {
  check_shape(s, "conv2d_winograd_forward");
  if (s.N * s.OH * s.OW == 0) return;
  if (tile_for(s.OH, s.OW) == 2)
    forward_m<T, 2>(out, inp, weight, bias, s, relu);
  else
    forward_m<T, 4>(out, inp, weight, bias, s, relu);
}

template <class T>
void conv2d_winograd_backward_data(T* dinp, const T* dout, const T* weight, const Conv2dShape& s) {
  check_shape(s, "conv2d_winograd_backward_data");
  if (s.N * s.H * s.W == 0) return;
  if (s.OH * s.OW == 0) {
    std::fill(dinp, dinp + s.N * s.H * s.W * s.C, T(0));
    return;
  }
  if (tile_for(s.H, s.W) == 2)
    backward_data_m<T, 2>(dinp, dout, weight, s);
  else
    backward_data_m<T, 4>(dinp, dout, weight, s);
}

template <class T>
void conv2d_winograd_backward_filter(T* dweight, const T* dout, const T* inp,
                                     const Conv2dShape& s) {
  check_shape(s, "conv2d_winograd_backward_filter");
  if (s.N * s.OH * s.OW == 0) {
    std::fill(dweight, dweight + 9 * s.C * s.K, T(0));
    return;
  }
  if (g_filter_algo == 1)
    winograd_filter_im2col<T>(dweight, dout, inp, s);
  else if (tile_for(s.OH, s.OW) == 2)
    backward_filter_m<T, 2>(dweight, dout, inp, s);
  else
    backward_filter_m<T, 4>(dweight, dout, inp, s);
}

// Naive direct 3x3 forward: inp (N,H,W,C), weight (3,3,C,K), bias (K) or nullptr -> out (N,OH,OW,K).
template <class T>
void conv2d_3x3_reference_forward(T* out, const T* inp, const T* weight, const T* bias,
                                  const Conv2dShape& s) {
  check_shape(s, "conv2d_3x3_reference_forward");
  const int64_t H = s.H, W = s.W, C = s.C, K = s.K, OH = s.OH, OW = s.OW;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < s.N * OH; ++r) {
    const int64_t n = r / OH, oh = r % OH;
    for (int64_t ow = 0; ow < OW; ++ow) {
      T* o = out + ((n * OH + oh) * OW + ow) * K;
      for (int64_t k = 0; k < K; ++k) o[k] = bias ? bias[k] : T(0);
      for (int64_t kh = 0; kh < 3; ++kh)
        for (int64_t kw = 0; kw < 3; ++kw) {
          const int64_t ih = oh - s.pad_top + kh, iw = ow - s.pad_left + kw;
          if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
          const T* x = inp + ((n * H + ih) * W + iw) * C;
          const T* w = weight + (kh * 3 + kw) * C * K;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t k = 0; k < K; ++k) o[k] += x[c] * w[c * K + k];
        }
    }
  }
}

// F(3x3, 2x2): U (16 positions, transform_weight's layout) in WinogradWeights, then the same
// tile loop as the 3x3 kernels.
template <class T>
void conv2d_winograd2x2_forward_views(const T* inp, const T* weight, const Conv2dShape& s,
                                      const WinogradView<T>* views, int nviews) {
  FALTUNG_CHECK(s.KH == 2 && s.KW == 2 && s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 && s.dil_w == 1 &&
                    s.groups == 1,
                "conv2d_winograd2x2_forward_views: needs a 2x2 kernel, strides 1, dilations 1 and groups 1");
  for (int g = 0; g < nviews; ++g)
    FALTUNG_CHECK(views[g].k0 >= 0 && views[g].K >= 0 && views[g].k0 + views[g].K <= s.K,
                  "conv2d_winograd2x2_forward_views: view channels outside the conv's K=" + std::to_string(s.K));
  if (s.N * s.OH * s.OW == 0) return;
  T* U = workspace<T>(16 * ULayout<T>(s.C, s.K).stride, WorkspaceSlot::WinogradWeights);
  transform_weight<T, 3>(U, weight, s.C, s.K);
  winograd_conv<T, 3>(inp, U, false, s.N, s.H, s.W, s.C, s.K, s.OH, s.OW, s.pad_top, s.pad_left, views, nviews);
}

#define FALTUNG_WINOGRAD_INSTANTIATE(T)                                                            \
  template void conv2d_winograd_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&,  \
                                           bool);                                                \
  template void conv2d_winograd2x2_forward_views<T>(const T*, const T*, const Conv2dShape&,        \
                                                    const WinogradView<T>*, int);                 \
  template void conv2d_winograd_backward_data<T>(T*, const T*, const T*, const Conv2dShape&);      \
  template void conv2d_winograd_backward_filter<T>(T*, const T*, const T*, const Conv2dShape&);    \
  template void conv2d_3x3_reference_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&);
FALTUNG_WINOGRAD_INSTANTIATE(float)
FALTUNG_WINOGRAD_INSTANTIATE(double)
#undef FALTUNG_WINOGRAD_INSTANTIATE

}  // namespace faltung
