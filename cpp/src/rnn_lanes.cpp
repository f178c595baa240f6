// The LSTM forward at inference with the batch in the vector lanes (rnn_kernels.hpp,
// lanes_forward). Notation as in faltung/rnn.hpp; Bp = B rounded up to whole vectors.
//
// Why: the packed-panel forward (rnn.cpp) puts gate columns in the lanes and batch rows in
// broadcasts. When its packed recurrent kernel is too large for a core's cache (LSTM 256: 1 MB,
// unfolded) it projects x into G (N, 4U) through memory first, and with 32 rows over 2 threads
// each thread runs 12- and 4-row tiles over the whole kernel every step. Here the team splits
// the units: each thread reads only its units' part of the packed [W; R] (x's projection is
// folded into the step), every tile is the same 4 gates x 3 units x 32 lanes register block at
// AVX-512, and the cell runs on the tile's accumulators: the preactivations never leave the
// registers. The price is one barrier per step (each thread reads every unit of h_{t-1}) and
// transposing x_t in and h_t out. Measured (LSTM 256, batch 32, T 100, input 128, 2 threads,
// AVX-512): 11.3 -> 9.4 ms.
//
// Buffers (workspace, elements of Real): P the packed [W; R]; xbias (GU); xT[2] (F, Bp) x_t
// transposed; hT[2] (U, Bp) h transposed; cT (U, Bp). Step s reads xT[s & 1] and hT[s & 1] and
// writes hT[~s & 1]; the team transposes x_{t(s+1)} into xT[~s & 1] during step s. Lanes past B
// start as zeros and are never copied out (each lane is computed on its own).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "faltung/rnn.hpp"
#include "rnn_cell.hpp"
#include "rnn_kernels.hpp"
#include "simd.hpp"

namespace faltung::rnn_detail {

namespace {

template <typename Real>
struct Lanes {
  using V = typename simd::Vec<Real>::type;
  static constexpr int VW = simd::Vec<Real>::width;
  // A tile: the 4 gate rows of UT units x CB batch vectors, 4 UT CB accumulators: per k, CB
  // loads of [x_t | h] and 4 UT broadcasts of the packed weights feed 4 UT CB FMAs.
  // (taken at AVX-512 only, see lanes_forward_applies; narrower levels compile a 12-register
  // tile that nothing calls)
  static constexpr int UT = simd::kBytes == 64 ? 3 : 1;  // 24 of 32 registers
  static constexpr int CB = simd::kBytes == 64 ? 2 : 3;  // 12 of 16
  static int64_t padded(int64_t B) { return (B + VW - 1) / VW * VW; }
};

struct LanesLayout {
  int64_t P = -1, xbias = -1, xT = -1, hT = -1, cT = -1, total = 0;
};
template <typename Real>
LanesLayout lanes_layout(const RnnConfig& c) {
  const int64_t Bp = Lanes<Real>::padded(c.B);
  LanesLayout l;
  Carve k;
  l.P = k.take(4 * c.U * (c.F + c.U));
  l.xbias = k.take(c.GU());
  l.xT = k.take(2 * c.F * Bp);
  l.hT = k.take(2 * c.U * Bp);
  l.cT = k.take(c.U * Bp);
  l.total = k.total;
  return l;
}

// One tile at units [u0, u0 + UTn) and lanes [b0, b0 + CBn VW): z = bias + [x_t | h] @ [W; R]
// in registers, then the cells: c updated in place, h written to hN. P: the tile's packed
// weights (K = F + U rows of 4 UTn values, gate-major); bias at unit u0; xT, hT, c, hN at unit
// (feature) 0 and lane b0, rows ld apart.
template <typename Real, int UTn, int CBn>
void lane_tile(int64_t F, int64_t U, int64_t ld, const Real* __restrict xT,
               const Real* __restrict hT, const Real* __restrict P, const Real* __restrict bias,
               Real* __restrict c, Real* __restrict hN) {
  using V = typename Lanes<Real>::V;
  constexpr int VW = Lanes<Real>::VW, R = 4 * UTn;
  V acc[R][CBn];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    const V b = simd::bcast(bias + (r / UTn) * U + r % UTn);
#pragma GCC unroll 3
    for (int v = 0; v < CBn; ++v) acc[r][v] = b;
  }
  for (int part = 0; part < 2; ++part) {  // the rows of x_t, then those of h
    const Real* A = part ? hT : xT;
    const Real* Pp = part ? P + F * R : P;
    const int64_t K = part ? U : F;
    for (int64_t k = 0; k < K; ++k) {
      // A's rows (48 KB at LSTM 256, batch 32) do not stay in L1 while the tile's weights
      // stream through it: fetch them 8 rows ahead (paired, LSTM 256 batch 32 and 64: 0.98),
      // not past the part's last row (what lies there, other threads are writing this step)
      if (k + 8 < K) {
        __builtin_prefetch(A + (k + 8) * ld);
        if constexpr (CBn * VW * sizeof(Real) > 64) __builtin_prefetch(A + (k + 8) * ld + 64 / sizeof(Real));
      }
      V a[CBn];
#pragma GCC unroll 3
      for (int v = 0; v < CBn; ++v) a[v] = simd::load<V>(A + k * ld + v * VW);
#pragma GCC unroll 12
      for (int r = 0; r < R; ++r) {
        const V w = simd::bcast(Pp + k * R + r);
#pragma GCC unroll 3
        for (int v = 0; v < CBn; ++v) acc[r][v] += w * a[v];
      }
    }
  }
#pragma GCC unroll 3
  for (int u = 0; u < UTn; ++u)
#pragma GCC unroll 3
    for (int v = 0; v < CBn; ++v) {
      Real* cp = c + u * ld + v * VW;
      const LstmVec<V> q = lstm_vec(acc[u][v], acc[UTn + u][v], acc[2 * UTn + u][v],
                                    acc[3 * UTn + u][v], simd::load<V>(cp));
      simd::store(cp, q.c);
      simd::store(hN + u * ld + v * VW, q.h);
    }
}

// lane_tile for ut <= UTn units and cb <= CBn vectors.
template <typename Real, int UTn = Lanes<Real>::UT, int CBn = Lanes<Real>::CB>
void lane_block(int ut, int cb, int64_t F, int64_t U, int64_t ld, const Real* xT, const Real* hT,
                const Real* P, const Real* bias, Real* c, Real* hN) {
  if constexpr (UTn > 1) {
    if (ut < UTn) return lane_block<Real, UTn - 1, CBn>(ut, cb, F, U, ld, xT, hT, P, bias, c, hN);
  }
  if constexpr (CBn > 1) {
    if (cb < CBn) return lane_block<Real, UTn, CBn - 1>(ut, cb, F, U, ld, xT, hT, P, bias, c, hN);
  }
  lane_tile<Real, UTn, CBn>(F, U, ld, xT, hT, P, bias, c, hN);
}

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: whole width x width blocks
// through registers (simd::transpose), the edges element by element. Stream: the blocks'
// stores bypass the caches when dst's rows are vector-aligned.
template <typename Real, bool Stream = false>
void transpose(const Real* src, int64_t lds, int64_t rows, int64_t cols, Real* dst, int64_t ldd) {
  using V = typename simd::Vec<Real>::type;
  constexpr int VW = simd::Vec<Real>::width;
  const int64_t rb = rows / VW * VW, cb = cols / VW * VW;
  const bool nt = Stream && reinterpret_cast<uintptr_t>(dst) % sizeof(V) == 0 &&
                  ldd * sizeof(Real) % sizeof(V) == 0;
  for (int64_t i0 = 0; i0 < rb; i0 += VW)
    for (int64_t j0 = 0; j0 < cb; j0 += VW) {
      V r[VW];
      for (int i = 0; i < VW; ++i) r[i] = simd::load<V>(src + (i0 + i) * lds + j0);
      simd::transpose<Real>(r);
      if (nt)
        for (int j = 0; j < VW; ++j) simd::stream(dst + (j0 + j) * ldd + i0, r[j]);
      else
        for (int j = 0; j < VW; ++j) simd::store(dst + (j0 + j) * ldd + i0, r[j]);
    }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = i < rb ? cb : 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

template <typename Real>
struct LanesForward {
  using L = Lanes<Real>;
  const RnnConfig& c;
  const RnnWeights<Real>& w;
  const Real *x, *h0, *c0;
  Real *hs, *h_T, *c_T;
  int64_t B, T, F, U, GU, K, Bp;
  Real *P, *xbias, *xT[2], *hT[2], *cT;

  LanesForward(const RnnConfig& c_, const RnnWeights<Real>& w_, const Real* x_, const Real* h0_,
               const Real* c0_, Real* hs_, Real* h_T_, Real* c_T_, void* workspace)
      : c(c_), w(w_), x(x_), h0(h0_), c0(c0_), hs(hs_), h_T(h_T_), c_T(c_T_), B(c_.B), T(c_.T),
        F(c_.F), U(c_.U), GU(c_.GU()), K(c_.F + c_.U), Bp(L::padded(c_.B)) {
    const LanesLayout l = lanes_layout<Real>(c);
    Real* ws = aligned<Real>(workspace);
    P = ws + l.P, xbias = ws + l.xbias, cT = ws + l.cT;
    xT[0] = ws + l.xT, xT[1] = xT[0] + F * Bp;
    hT[0] = ws + l.hT, hT[1] = hT[0] + U * Bp;
  }

  int64_t t_of(int64_t s) const { return c.go_backwards ? T - 1 - s : s; }

  // fn(u0, ut) for the tiles of units [u_lo, u_hi): UT units each, the last fewer.
  template <typename Fn>
  static void for_tiles(int64_t u_lo, int64_t u_hi, Fn fn) {
    for (int64_t u0 = u_lo; u0 < u_hi; u0 += L::UT) fn(u0, std::min<int64_t>(L::UT, u_hi - u0));
  }

  // The tiles of units [u_lo, u_hi) packed: the tile at u0 with ut units holds at
  // P + u0 * 4 K + k * 4 ut the 4 gates' columns of its units in row k of W (k < F) or R.
  // Row by row: each source row is read once, in order.
  void pack(int64_t u_lo, int64_t u_hi) {
    for (int64_t k = 0; k < K; ++k) {
      const Real* src = k < F ? w.kernel + k * GU : w.recurrent_kernel + (k - F) * GU;
      for_tiles(u_lo, u_hi, [&](int64_t u0, int64_t ut) {
        Real* row = P + u0 * 4 * K + k * 4 * ut;
        for (int64_t g = 0; g < 4; ++g)
          for (int64_t u = 0; u < ut; ++u) row[g * ut + u] = src[g * U + u0 + u];
      });
    }
  }

  // x_t's features [f0, f1) into xT's lanes [0, B).
  void transpose_x(int64_t t, int64_t f0, int64_t f1, Real* dst) {
    transpose(x + t * F + f0, T * F, B, f1 - f0, dst + f0 * Bp, Bp);
  }

  void run(int nt_want) {
    const int64_t nb = (U + L::VW - 1) / L::VW;
#pragma omp parallel num_threads(nt_want)
    {
      // split by the team OpenMP started, which may be smaller (OMP_THREAD_LIMIT, OMP_DYNAMIC)
      const int k = omp_get_thread_num(), nt = omp_get_num_threads();
      // the thread's units in whole vectors (its part of an hs row starts 64-byte aligned) and
      // its features of x's transposition
      const int64_t u_lo = std::min(U, split_lo(nb, k, nt) * L::VW);
      const int64_t u_hi = std::min(U, split_lo(nb, k + 1, nt) * L::VW);
      const int64_t f_lo = split_lo(F, k, nt), f_hi = split_lo(F, k + 1, nt);
      if (k == 0) input_bias(c, w.bias, xbias);
      pack(u_lo, u_hi);
      for (int64_t u = u_lo; u < u_hi; ++u)
        for (int64_t b = 0; b < Bp; ++b) {
          hT[0][u * Bp + b] = h0 && b < B ? h0[b * U + u] : Real(0);
          cT[u * Bp + b] = c0 && b < B ? c0[b * U + u] : Real(0);
        }
      for (int i = 0; i < 2; ++i)
        for (int64_t f = f_lo; f < f_hi; ++f) std::fill(xT[i] + f * Bp + B, xT[i] + (f + 1) * Bp, Real(0));
      transpose_x(t_of(0), f_lo, f_hi, xT[0]);
#pragma omp barrier
      for (int64_t s = 0; s < T; ++s) {
        const int cur = s & 1;
        Real* hN = hT[cur ^ 1];
        for_tiles(u_lo, u_hi, [&](int64_t u0, int64_t ut) {
          for (int64_t b0 = 0; b0 < Bp; b0 += L::CB * L::VW) {
            const int cb = int(std::min<int64_t>(L::CB, (Bp - b0) / L::VW));
            lane_block<Real>(int(ut), cb, F, U, Bp, xT[cur] + b0, hT[cur] + b0, P + u0 * 4 * K,
                             xbias + u0, cT + u0 * Bp + b0, hN + u0 * Bp + b0);
          }
        });
        // hs (B, T, U) is written once and not read here: streaming stores keep its 100 KB-apart
        // rows out of the caches, where they evicted the packed weights (5% of the time at LSTM
        // 256, batch 32)
        transpose<Real, true>(hN + u_lo * Bp, Bp, u_hi - u_lo, B, hs + s * U + u_lo, T * U);
        if (s + 1 < T) transpose_x(t_of(s + 1), f_lo, f_hi, xT[cur ^ 1]);
#pragma omp barrier
      }
      simd::stream_fence();
      const Real* hl = hT[T & 1];
      for (int64_t b = 0; b < B; ++b)
        for (int64_t u = u_lo; u < u_hi; ++u) {
          h_T[b * U + u] = hl[u * Bp + b];
          if (c_T) c_T[b * U + u] = cT[u * Bp + b];
        }
    }
  }
};

}  // namespace

template <typename Real>
bool lanes_forward_applies(const RnnConfig& c, const RnnPlan& pl, bool training) {
  if constexpr (!std::is_same_v<Real, float>) {
    return false;
  } else {
    using L = Lanes<Real>;
    // AVX-512 only: at the avx2 level (a 1-unit x 3-vector tile in 16 registers, 8-lane cells
    // with divisions) it took 29.2 ms where the packed-panel forward takes 18.0 (LSTM 256,
    // batch 32, 2 threads, on the AVX-512 Xeon capped at avx2)
    if (simd::kBytes < 64) return false;
    if (training || c.cell != RnnCell::lstm || c.act != Act::tanh || c.rec_act != Act::sigmoid ||
        c.has_recurrent_mask || c.T < 1)
      return false;
    // A packed [W; R] that fits a core's cache: the packed-panel forward folds the projection and
    // splits the rows, without barriers (LSTM 128, batch 64, T 50, input 64: 2.6 against 2.8 ms).
    if (4 * (c.F + c.U) * c.U * int64_t(sizeof(Real)) <= rnn_row_split_bytes()) return false;
    // A quarter of the lanes or more idle: the packed-panel forward wastes less.
    const int64_t Bp = L::padded(c.B);
    if (c.B < L::VW || 4 * (Bp - c.B) > Bp) return false;
    if (!pl.active.empty() || pl.N != c.B * c.T) return false;  // a mask that masks a step
    for (int64_t p = 0; p < c.B; ++p)
      if (pl.perm[p] != p) return false;
    return true;
  }
}

template <typename Real>
int64_t lanes_forward_workspace_size(const RnnConfig& c) {
  return lanes_layout<Real>(c).total * int64_t(sizeof(Real)) + kAlignSlack;
}

template <typename Real>
void lanes_forward(const RnnConfig& c, const RnnPlan& pl, const RnnWeights<Real>& w, const Real* x,
                   const Real* h0, const Real* c0, Real* hs, Real* h_T, Real* c_T, void* workspace) {
  if constexpr (std::is_same_v<Real, float>)  // (lanes_forward_applies: float only)
    LanesForward<Real>(c, w, x, h0, c0, hs, h_T, c_T, workspace).run(team_size(c, pl));
}

#define FALTUNG_LANES_INSTANTIATE(Real)                                                            \
  template bool lanes_forward_applies<Real>(const RnnConfig&, const RnnPlan&, bool);              \
  template int64_t lanes_forward_workspace_size<Real>(const RnnConfig&);                          \
  template void lanes_forward<Real>(const RnnConfig&, const RnnPlan&, const RnnWeights<Real>&,    \
                                    const Real*, const Real*, const Real*, Real*, Real*, Real*,    \
                                    void*);
FALTUNG_LANES_INSTANTIATE(float)
FALTUNG_LANES_INSTANTIATE(double)
#undef FALTUNG_LANES_INSTANTIATE

}  // namespace faltung::rnn_detail
