// Internal to rnn.cpp, rnn_backward.cpp, rnn_lanes.cpp, conv.cpp and conv_winograd.cpp
// (compiled per CPU level: the panel width follows the level's vector width): the per-step
// recurrent products against a recurrent kernel R (U,GU) packed once per call, instead of an
// OpenBLAS call per step that re-packs R every step (1 MB at U = 256) and gives each thread of
// the team all of it; the same tiles run conv.cpp's 1x1 convolutions and the Winograd products
// with large transformed weights.
//
// Panels: a packed matrix is a sequence of panels of K rows x NR columns, each row NR
// contiguous values (columns past the matrix are zeros). The units are cut into nb = ceil(U /
// NR) blocks of NR; block j holds units [j NR, j NR + NR).
//   forward  Rf: for block j and gate g, panel j*G + g = R[:, g U + j NR + (0..NR)]  (K = U;
//            folded: [W; R] in place of R, K = F + U)
//   backward Rb: for block j, panel j = R[j NR + (0..NR), :]^T                      (K = GU)
// A thread that owns a range of unit blocks reads only their panels, which stay in its cache
// from step to step. The product of a block is a register tile of MR rows x NR columns
// (MR*NV accumulators; per k NV panel loads and MR broadcasts of A feed MR*NV FMAs).
#pragma once
#include <algorithm>
#include <cstdint>

#include "simd.hpp"

namespace faltung::rnn_detail {

template <typename Real>
struct Panel {
  using V = typename simd::Vec<Real>::type;
  static constexpr int VW = simd::Vec<Real>::width;
  static constexpr int NV = 2;                            // vectors per panel row
  static constexpr int NR = NV * VW;                      // panel columns
  static constexpr int MR = simd::kBytes == 64 ? 12 : 6;  // tile rows: 24 of 32 / 12 of 16 registers
  static int64_t blocks(int64_t U) { return (U + NR - 1) / NR; }
  static int64_t size(int64_t U, int64_t G, int64_t K) { return blocks(U) * G * K * NR; }  // Rf, Rb
};

// Rf's blocks [j0, j1) from R (U,GU), with K = U rows per panel; or, when W (F,GU) is given,
// from W stacked above R (K = F + U: the folded forward, rnn.cpp).
template <typename Real>
void pack_forward(const Real* R, int64_t U, int64_t G, int64_t j0, int64_t j1, Real* Rf,
                  const Real* W = nullptr, int64_t F = 0) {
  constexpr int NR = Panel<Real>::NR;
  const int64_t GU = G * U, K = F + U;
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t g = 0; g < G; ++g) {
      Real* P = Rf + (j * G + g) * K * NR;
      const int64_t n = std::min<int64_t>(NR, U - j * NR);
      for (int64_t k = 0; k < K; ++k) {
        const Real* src = k < F ? W + k * GU : R + (k - F) * GU;
        std::copy_n(src + g * U + j * NR, n, P + k * NR);
        std::fill(P + k * NR + n, P + (k + 1) * NR, Real(0));
      }
    }
}

// Blocks [j0, j1) of the (K, N) matrix B, B(k, n) = b[k ldk + n ldn], packed as panels: block j
// holds columns [j NR, j NR + NR) (zeros past N) in K rows of NR (the rnn input projection's W,
// conv.cpp's 1x1 weights).
template <typename Real>
void pack_panels(const Real* b, int64_t K, int64_t N, int64_t ldk, int64_t ldn, int64_t j0, int64_t j1, Real* P) {
  constexpr int NR = Panel<Real>::NR;
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t c = 0; c < NR; ++c) {
        const int64_t n = j * NR + c;
        P[(j * K + k) * NR + c] = n < N ? b[k * ldk + n * ldn] : Real(0);
      }
}

// Rb's blocks [j0, j1) from R (U,GU); also W^T's from the input kernel W (F,GU), with F for U
// (rnn_backward.cpp's folded input gradient).
template <typename Real>
void pack_backward(const Real* R, int64_t U, int64_t GU, int64_t j0, int64_t j1, Real* Rb) {
  constexpr int NR = Panel<Real>::NR;
  for (int64_t j = j0; j < j1; ++j) {
    Real* P = Rb + j * GU * NR;
    const int64_t n = std::min<int64_t>(NR, U - j * NR);
    for (int64_t k = 0; k < GU; ++k) {
      for (int64_t c = 0; c < n; ++c) P[k * NR + c] = R[(j * NR + c) * GU + k];
      std::fill(P + k * NR + n, P + (k + 1) * NR, Real(0));
    }
  }
}

// S[i, 0..nc) = (bias ? bias[0..nc) : 0) + sum over k < K of a(i, k) P[k, 0..nc), rows i < M,
// then max(S, 0) if relu (NaN to 0, as conv.cpp's bias_relu_rows); C = S, or C += S with add.
// bias, when given, holds NV vectors. stream (without add): whole rows of NV vectors are
// written with streaming stores (simd::stream; the caller fences). (No caller passes add with
// bias or relu.) a(i, k) = A[i lda + k], and P's rows are NR apart (a packed panel); with
// TransA, a(i, k) = A[k lda + i] and P's rows are ldp apart: A^T B with both operands read in
// place (the 1x1 conv's weight gradient, conv.cpp), its broadcasts contiguous. Per k, NV loads
// of P's row and M broadcasts of A, M*NV FMAs.
template <typename Real, int M, int NV = Panel<Real>::NV, bool TransA = false>
void panel_tile(int64_t K, const Real* A, int64_t lda, const Real* P, Real* C, int64_t ldc,
                int64_t nc, bool add, const Real* bias = nullptr, bool relu = false, int64_t ldp = 0,
                bool stream = false) {
  using V = typename Panel<Real>::V;
  constexpr int VW = Panel<Real>::VW, NR = NV * VW;
  const int64_t pstride = TransA ? ldp : NR;
  V acc[M][NV];
  V init[NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) init[v] = bias ? simd::load<V>(bias + v * VW) : V{};
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = init[v];
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = simd::load<V>(P + k * pstride + v * VW);
#pragma GCC unroll 12
    for (int i = 0; i < M; ++i) {
      const V a = simd::bcast(TransA ? A + k * lda + i : A + i * lda + k);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
    }
  }
  if (relu)
#pragma GCC unroll 12
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = acc[i][v] > Real(0) ? acc[i][v] : V{};
#pragma GCC unroll 12
  for (int i = 0; i < M; ++i) {
    Real* c = C + i * ldc;
    if (nc == NR && stream && !add) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) simd::stream(c + v * VW, acc[i][v]);
    } else if (nc == NR) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v)
        simd::store(c + v * VW, add ? acc[i][v] + simd::load<V>(c + v * VW) : acc[i][v]);
    } else {
      Real t[NR];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) simd::store(t + v * VW, acc[i][v]);
      for (int64_t j = 0; j < nc; ++j) c[j] = add ? c[j] + t[j] : t[j];
    }
  }
}

// panel_tile for m rows, 1 <= m <= M.
template <typename Real, int M = Panel<Real>::MR, int NV = Panel<Real>::NV, bool TransA = false>
void panel_rows(int64_t m, int64_t K, const Real* A, int64_t lda, const Real* P, Real* C,
                int64_t ldc, int64_t nc, bool add, const Real* bias = nullptr, bool relu = false,
                int64_t ldp = 0, bool stream = false) {
  if constexpr (M > 1) {
    if (m < M)
      return panel_rows<Real, M - 1, NV, TransA>(m, K, A, lda, P, C, ldc, nc, add, bias, relu, ldp, stream);
  }
  panel_tile<Real, M, NV, TransA>(K, A, lda, P, C, ldc, nc, add, bias, relu, ldp, stream);
}

// C[i, u] = (add ? C[i, u] : 0) + sum over k < K of A[i, k] P_j[k, u - j NR] for rows i < M
// and the units u < U of blocks [j0, j1), where P_j = P + j * stride is block j's panel
// and C points at unit 0. bias (blocks x NR values, zero past U), relu and stream: panel_tile's.
template <typename Real>
void panel_gemm(int64_t M, int64_t K, const Real* A, int64_t lda, const Real* P, int64_t stride,
                int64_t j0, int64_t j1, int64_t U, Real* C, int64_t ldc, bool add,
                const Real* bias = nullptr, bool relu = false, bool stream = false) {
  constexpr int MR = Panel<Real>::MR, NR = Panel<Real>::NR;
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t nc = std::min<int64_t>(NR, U - j * NR);
    for (int64_t i = 0; i < M; i += MR)
      panel_rows<Real>(std::min<int64_t>(MR, M - i), K, A + i * lda, lda, P + j * stride,
                       C + i * ldc + j * NR, ldc, nc, add, bias ? bias + j * NR : nullptr, relu, 0, stream);
  }
}

// C rows [0, M) = A rows [0, M) @ B, B (K, N) packed in panels (pack_panels): in chunks of rows
// whose block of A stays in L1 (32 KB, at least one tile of MR rows) across all of B's panels,
// which stay in L2. stream: panel_tile's (the caller fences). (conv.cpp's 1x1 rows run each
// tile across all panels instead, which its small panels keep in L1; for the LSTM 256 input
// projection, 512 KB of panels, that order was 0.99-1.00 of this one's speed.)
template <typename Real>
void panel_product(int64_t M, int64_t K, const Real* A, int64_t lda, const Real* P, int64_t N, Real* C,
                   int64_t ldc, bool stream = false) {
  constexpr int64_t MR = Panel<Real>::MR, NR = Panel<Real>::NR;
  const int64_t chunk = std::max<int64_t>(1, (32 << 10) / (std::max<int64_t>(K, 1) * int64_t(sizeof(Real))) / MR) * MR;
  for (int64_t r = 0; r < M; r += chunk)
    panel_gemm<Real>(std::min(chunk, M - r), K, A + r * lda, lda, P, K * NR, 0, Panel<Real>::blocks(N), N,
                     C + r * ldc, ldc, false, nullptr, false, stream);
}

// C (M, N) += A^T B for A (R, M) and B (R, N), N a multiple of the vector width, both read in
// place: panel_tile's TransA tiles of MR rows (fewer at the end) by 2 vectors, then by one.
template <typename Real>
void tn_gemm(int64_t M, int64_t N, int64_t R, const Real* A, int64_t lda, const Real* B, int64_t ldb,
             Real* C, int64_t ldc) {
  constexpr int MR = Panel<Real>::MR, VW = Panel<Real>::VW;
  int64_t j = 0;
  for (; j + 2 * VW <= N; j += 2 * VW)
    for (int64_t i = 0; i < M; i += MR)
      panel_rows<Real, MR, 2, true>(std::min<int64_t>(MR, M - i), R, A + i, lda, B + j, C + i * ldc + j, ldc,
                                    2 * VW, true, nullptr, false, ldb);
  for (; j + VW <= N; j += VW)
    for (int64_t i = 0; i < M; i += MR)
      panel_rows<Real, MR, 1, true>(std::min<int64_t>(MR, M - i), R, A + i, lda, B + j, C + i * ldc + j, ldc,
                                    VW, true, nullptr, false, ldb);
}

}  // namespace faltung::rnn_detail
