// Internal to cpp/src (not part of the C++ API): what rnn.cpp (plan, forward) and
// rnn_backward.cpp share: the buffer layouts, the team's split of a step, the GEMM helpers.
// Notation as in faltung/rnn.hpp.
//
// Packed arrays are time-major: step s owns rows off[s] + (p - lo[s]) for p in [lo[s], hi[s]).
// Buffers (elements of Real):
//   saved (forward with training, read by backward), all (N, .) packed:
//     G      (N,GU) gate activations: SimpleRNN h; LSTM i f g o; GRU z r hh
//     Zpre   (N,GU) the preactivations, only if an activation's derivative reads its input
//     Hm     (N,U)  the recurrent GEMM's input h_{t-1} * m; LSTM, SimpleRNN: (N,F+U) rows
//                   [x_t | h_{t-1} * m] (joint_weight_grads)
//     Hprev  (N,U)  GRU with a recurrent mask: h_{t-1} (without one, Hm is h_{t-1})
//     Cprev  (N,U)  LSTM c_{t-1};  Ac (N,U) LSTM a(c_t);  Cnew (N,U) LSTM c_t if a reads it
//     GH     (N,U)  GRU reset_after: (h_{t-1} m) R_h + rb_h
//     Q      (N,U)  GRU not reset_after: r * h_{t-1} m (the h gate's GEMM input)
//   forward workspace: Xp (N,F) gathered x; xbias (GU); h, c (B,U) the states in sorted
//     order; Rf the packed recurrent kernel (rnn_gemm.hpp); Wf the packed input kernel
//     (packed_projection); without training G (N,GU) and one step's block (B,U) of Hm, Ac,
//     GH, Q.
//   backward workspace: db_parts (threads, GU [+ U]) if dweights: each thread's column sums of
//     dZ (and dXh); Xp (N,F) if dweights (GRU; LSTM and SimpleRNN read x from the saved Hm,
//     and dWR (F+U, GU) = [dW; dR] holds their one GEMM, one per thread when it is split over
//     the rows: weight_grads_by_rows); dZ (N,GU) the gradient of the recurrent GEMM's output
//     (GRU reset_after: dG, with dXh (N,U) the input side of the h gate); dxp (N,F) if dx; dH,
//     dC (B,U) the state gradients; dHm (B,U) one step's GEMM result; dQ (B,U) GRU; Rb the
//     packed transposed recurrent kernel (rnn_gemm.hpp); Wb W^T packed likewise, if dx
//     (folded_input_grad, packed_input_grad).
//
// Threads: one parallel region per call. Per step each thread owns a rectangle of the
// block (rows [r0,r1) of sorted positions x units [u0,u1) of every gate): rows when the
// block is tall and the packed kernel fits every core's cache (step_rect), else units, in
// whole panel blocks (each thread then reads only its own part of the packed kernel, which
// stays in its cache; the GEMM needs every unit of its input: one barrier between the
// input's writers and the GEMM). Every step ends at a barrier.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "faltung/common.hpp"
#include "faltung/rnn.hpp"
#include "rnn_gemm.hpp"

namespace faltung::rnn_detail {

// Whether act_backward reads the forward input x (else only the output y, or nothing).
// Mirrors act_backward in activations.cpp: sigmoid, tanh and exponential read y.
inline bool reads_input(Act a) {
  return !(a == Act::linear || a == Act::sigmoid || a == Act::tanh || a == Act::exponential);
}
inline bool needs_preactivations(const RnnConfig& c) {
  return reads_input(c.act) || (c.cell != RnnCell::simple_rnn && reads_input(c.rec_act));
}
inline bool is_gru(const RnnConfig& c) { return c.cell == RnnCell::gru; }
inline bool is_lstm(const RnnConfig& c) { return c.cell == RnnCell::lstm; }

// Offsets (in elements) of named buffers carved from one allocation; -1 = absent. Each
// buffer starts on a 64-byte boundary (16 elements).
struct Carve {
  int64_t total = 0;
  int64_t take(int64_t n) {
    const int64_t o = total;
    total += (std::max<int64_t>(n, 0) + 15) / 16 * 16;
    return o;
  }
};
template <typename Real>
Real* at(Real* base, int64_t off) {
  return off < 0 ? nullptr : base + off;
}
// Workspace pointers are rounded up to 64 bytes; the sizes include that slack.
constexpr int64_t kAlignSlack = 64;
template <typename Real>
Real* aligned(void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<Real*>((a + 63) & ~uintptr_t(63));
}

// LSTM and SimpleRNN save the rows [x_t | h_{t-1} m] (N, F+U) in place of Hm: the forward's
// input (the projection's, or the folded step's), and the backward's one GEMM for dW and dR,
// [x | h m]^T dZ, which packs dZ once instead of twice (LSTM 128, batch 64, T 50: the two GEMMs
// 2.94 ms, the one 2.39 ms in numpy's OpenBLAS). GRU reads dZ's h columns apart (dXh, Q).
inline bool joint_weight_grads(const RnnConfig& c) { return !is_gru(c); }
// The saved Hm's row length, the h m part starting at column hm_col.
inline int64_t saved_hm_width(const RnnConfig& c) { return joint_weight_grads(c) ? c.F + c.U : c.U; }

struct SavedLayout {
  int64_t G = -1, Zpre = -1, Hm = -1, Hprev = -1, Cprev = -1, Ac = -1, Cnew = -1, GH = -1,
          Q = -1, total = 0;
};
inline SavedLayout saved_layout(const RnnConfig& c, int64_t N) {
  const int64_t U = c.U, GU = c.GU();
  SavedLayout L;
  Carve k;
  L.G = k.take(N * GU);
  if (needs_preactivations(c)) L.Zpre = k.take(N * GU);
  L.Hm = k.take(N * saved_hm_width(c));
  if (is_gru(c) && c.has_recurrent_mask) L.Hprev = k.take(N * U);
  if (is_lstm(c)) {
    L.Cprev = k.take(N * U);
    L.Ac = k.take(N * U);
    if (reads_input(c.act)) L.Cnew = k.take(N * U);
  }
  if (is_gru(c)) (c.reset_after ? L.GH : L.Q) = k.take(N * U);
  L.total = k.total;
  return L;
}

int64_t rnn_row_split_bytes();  // rnn.cpp: L2 / 2 (256 KB where the L2 size is unknown)

// Whether the forward folds the input projection into each step's product:
// [x_t | h m] (B, F+U) @ [W; R] instead of one GEMM over all steps into G (N,GU) and per step
// h m @ R added to G's rows. G then never leaves the cache (a step's block, not all N rows),
// as long as the packed [W; R] stays in every core's cache too (rnn_row_split_bytes). Not GRU:
// its h gate keeps x W_h and (h m) R_h apart. Paired, avx512 (2 MB L2): LSTM 128 (batch 64,
// T 50, input 64; 384 KB) 2.95 -> 2.50 ms, SimpleRNN 256 (batch 32, T 100, input 128) 2.65 ->
// 2.47 ms; LSTM 256 (1.5 MB folded) 9.8 -> 10.5 ms, so it stays unfolded.
template <typename Real>
bool folded_forward(const RnnConfig& c) {
  const int64_t bytes = c.gates() * (c.F + c.U) * c.U * int64_t(sizeof(Real));
  return !is_gru(c) && bytes <= rnn_row_split_bytes();
}
// The rows of the packed forward kernel Rf per panel.
template <typename Real>
int64_t forward_k(const RnnConfig& c) {
  return folded_forward<Real>(c) ? c.F + c.U : c.U;
}

// Whether the input projection (not folded) runs on W packed in panels (Wf, rnn_gemm.hpp's
// tiles, G written with streaming stores when it is large) rather than OpenBLAS: while the
// packed W stays in a core's L2 (at most 2 MiB).
template <typename Real>
bool packed_projection(const RnnConfig& c) {
  return c.F > 0 && Panel<Real>::size(c.GU(), 1, c.F) * int64_t(sizeof(Real)) <= (int64_t(2) << 20);
}

struct ForwardLayout {
  int64_t Wf = -1;                                               // packed_projection
  int64_t Xp = -1, xbias = -1, h = -1, c = -1, Rf = -1;          // always
  int64_t G = -1, Hm = -1, Ac = -1, GH = -1, Q = -1, total = 0;  // without training
};
template <typename Real>
ForwardLayout forward_layout(const RnnConfig& c, int64_t N, bool training) {
  const int64_t B = c.B, U = c.U, GU = c.GU();
  ForwardLayout L;
  Carve k;
  const bool fold = folded_forward<Real>(c);
  if (!fold && !(training && joint_weight_grads(c))) L.Xp = k.take(N * c.F);  // else in Hm
  L.xbias = k.take(GU);
  L.h = k.take(B * U);
  if (is_lstm(c)) L.c = k.take(B * U);
  L.Rf = k.take(Panel<Real>::size(U, c.gates(), forward_k<Real>(c)));
  if (!fold && packed_projection<Real>(c)) L.Wf = k.take(Panel<Real>::size(GU, 1, c.F));
  if (!training) {
    L.G = k.take((fold ? B : N) * GU);       // folded: one step's block
    L.Hm = k.take(B * (fold ? c.F + U : U));  // folded: [x_t | h m]
    if (is_lstm(c)) L.Ac = k.take(B * U);
    if (is_gru(c)) (c.reset_after ? L.GH : L.Q) = k.take(B * U);
  }
  L.total = k.total;
  return L;
}

// Whether the backward computes the input gradient in each step (dx_t = dZ_t W^T against W^T
// packed once, as dh_{t-1} = dZ_t R^T, while dZ_t is in cache) instead of one GEMM over all
// packed rows after the loop: while the packed R^T and W^T together fit the row-split limit.
// Paired, training step (forward + backward), avx512, 2 threads: LSTM 128 (batch 64, T 50,
// input 64) 0.90-0.98 of the time in four runs, LSTM 128 (batch 32, T 100, input 128) 0.96,
// SimpleRNN 256 / 128 0.97-0.99; LSTM 256 (input 128: 1.5 MB) 1.00, so it stays unfolded. Not
// GRU: with reset_after its h gate's input side is dXh.
template <typename Real>
bool folded_input_grad(const RnnConfig& c) {
  const int64_t bytes = c.GU() * (c.F + c.U) * int64_t(sizeof(Real));
  return !is_gru(c) && c.F > 0 && bytes <= rnn_row_split_bytes();
}
// Otherwise, whether dx = dZ W^T over all packed rows after the loop runs W^T packed in panels
// (panel_product) rather than OpenBLAS: while the packed W^T stays in a core's L2 (at most
// 2 MiB). Not GRU (as above).
template <typename Real>
bool packed_input_grad(const RnnConfig& c) {
  return !is_gru(c) && c.F > 0 && !folded_input_grad<Real>(c) &&
         Panel<Real>::size(c.F, c.gates(), c.U) * int64_t(sizeof(Real)) <= (int64_t(2) << 20);
}

// Whether the joint weight gradient [dW; dR] (LSTM, SimpleRNN) is split over the packed rows,
// a part per thread (rnn_backward.cpp's epilogue), rather than over its columns: with 64 rows
// or more per thread, and the parts at most 16 MB together (many threads, large kernels).
template <typename Real>
bool weight_grads_by_rows(const RnnConfig& c, int64_t N, int threads) {
  return threads > 1 && N >= 64 * threads &&
         threads * (c.F + c.U) * c.GU() * int64_t(sizeof(Real)) <= (int64_t(16) << 20);
}

struct BackwardLayout {
  int64_t Xp = -1, dZ = -1, dXh = -1, dxp = -1, dH = -1, dC = -1, dHm = -1, dQ = -1, Rb = -1,
          Wb = -1, dWR = -1, db_parts = -1, db_len = 0, total = 0;
};
// threads: the team's size (team_size), for the per-thread partial sums of db (and of
// [dW; dR] when weight_grads_by_rows).
template <typename Real>
BackwardLayout backward_layout(const RnnConfig& c, int64_t N, bool need_dx, bool need_dweights,
                               int threads) {
  const int64_t B = c.B, U = c.U, GU = c.GU();
  BackwardLayout L;
  Carve k;
  if (need_dweights) {  // a row per thread, 64-byte aligned: no two threads share a line
    L.db_len = (GU + (is_gru(c) && c.reset_after ? U : 0) + 15) / 16 * 16;
    L.db_parts = k.take(threads * L.db_len);
  }
  const bool joint = need_dweights && joint_weight_grads(c);
  if (need_dweights && !joint) L.Xp = k.take(N * c.F);  // joint: x is in the saved Hm
  if (joint) L.dWR = k.take((weight_grads_by_rows<Real>(c, N, threads) ? threads : 1) * (c.F + U) * GU);
  L.dZ = k.take(N * GU);
  if (is_gru(c) && c.reset_after) L.dXh = k.take(N * U);
  if (need_dx) L.dxp = k.take(N * c.F);
  L.dH = k.take(B * U);
  if (is_lstm(c)) L.dC = k.take(B * U);
  L.dHm = k.take(B * U);
  if (is_gru(c) && !c.reset_after) L.dQ = k.take(B * U);
  L.Rb = k.take(Panel<Real>::size(U, c.gates(), U));  // blocks x GU rows of NR
  if (need_dx && (folded_input_grad<Real>(c) || packed_input_grad<Real>(c)))
    L.Wb = k.take(Panel<Real>::size(c.F, c.gates(), U));  // W^T's
  L.total = k.total;
  return L;
}

// [a, b) of n items for thread k of nt.
inline int64_t split_lo(int64_t n, int k, int nt) { return n * k / nt; }

// The part of step s's block that thread k of nt owns: rows [r0, r1) x units [u0, u1).
struct Rect {
  int64_t r0, r1, u0, u1;
  bool by_units;
  bool empty() const { return r1 <= r0 || u1 <= u0; }
};
// Rows are split when the packed recurrent kernel (gates x U x U) is small enough for every
// core to hold it all in its L2 across steps (at most half of the L2: rnn_row_split_bytes), or
// has fewer panel blocks than threads: then each step needs no data from the other threads'
// units. Larger kernels are split by units, each thread reading only its own part of the
// kernel. Measured: with a 1 MB L2 (AMD Zen 5) rows won at 256 KB (LSTM U 128) and units at
// 1 MB (LSTM U 256); with a 2 MB L2 (Intel Xeon, AVX-512) rows won at 1 MB (LSTM U 256
// forward 11.0 -> 8.6 ms, GRU 7.8 -> 6.4 ms, batch 32, T 100).
constexpr int64_t kMinRowsPerThread = 8;
// K: the packed kernel's rows (U; the folded forward F + U).
template <typename Real>
Rect step_rect(int64_t lo, int64_t hi, int64_t U, int64_t gates, int k, int nt, int64_t K = -1) {
  constexpr int64_t NR = Panel<Real>::NR;
  const int64_t rows = hi - lo, nb = Panel<Real>::blocks(U);
  const bool small_kernel = gates * (K < 0 ? U : K) * U * int64_t(sizeof(Real)) <= rnn_row_split_bytes();
  if (nt == 1 || ((nb < nt || small_kernel) && rows >= kMinRowsPerThread * nt))
    return {lo + split_lo(rows, k, nt), lo + split_lo(rows, k + 1, nt), 0, U, false};
  const int64_t u0 = std::min(U, split_lo(nb, k, nt) * NR), u1 = std::min(U, split_lo(nb, k + 1, nt) * NR);
  return {lo, hi, u0, u1, true};
}
// Units [u0, u1) of a Rect lie in the panel blocks [block_of(u0), block_of(u1)).
template <typename Real>
int64_t block_of(int64_t u) {
  return (u + Panel<Real>::NR - 1) / Panel<Real>::NR;
}

// gemm with K possibly 0 (OpenBLAS rejects lda = 0): then C = beta * C.
template <typename Real>
void gemm0(bool ta, bool tb, int64_t M, int64_t N, int64_t K, Real alpha, const Real* A,
           int64_t lda, const Real* B, int64_t ldb, Real beta, Real* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K > 0) {
    gemm<Real>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == Real(0) ? Real(0) : beta * C[i * ldc + j];
}

// Thread k's share of C (M,N) = alpha op(A) op(B) + beta C: rows of C when M >= N, else
// columns, inside the caller's parallel region. Every thread packs all of the operand that is
// not split, so the split takes the side whose operand is larger: the weight gradients (M = F
// or U, N = 4U, K = all rows) split columns and pack op(A) twice instead of dZ (LSTM 128,
// batch 64, T 50, avx512, paired: forward+backward 9.70 -> 9.07 ms; LSTM 256 32.9 -> 31.2 ms).
template <typename Real>
void team_gemm(int k, int nt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, Real alpha,
               const Real* A, int64_t lda, const Real* B, int64_t ldb, Real beta, Real* C,
               int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (nt == 1 || 2.0 * M * N * K < 1e5) {
    if (k == 0) gemm0<Real>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (M >= N) {
    const int64_t m0 = split_lo(M, k, nt), m1 = split_lo(M, k + 1, nt);
    gemm0<Real>(ta, tb, m1 - m0, N, K, alpha, ta ? A + m0 : A + m0 * lda, lda, B, ldb, beta,
                C + m0 * ldc, ldc);
  } else {
    const int64_t n0 = split_lo(N, k, nt), n1 = split_lo(N, k + 1, nt);
    gemm0<Real>(ta, tb, M, n1 - n0, K, alpha, A, lda, tb ? B + n0 * ldb : B + n0, ldb, beta,
                C + n0, ldc);
  }
}

// Step s's recurrent product for rectangle q, gates [g0, g1) (A holds K = U columns):
// C[rows, (g - g0)*U + (u0..u1)] = (add ? C : 0) + A[rows] @ R[:, g*U + (u0..u1)], R packed as
// Rf (rnn_gemm.hpp) with G gates. A and C are the step's blocks (row 0 = sorted position lo;
// C starts at gate g0's column).
// K: A's columns and Rf's rows per panel (U; the folded forward F + U).
template <typename Real>
void step_gemm(const Rect& q, int64_t lo, int64_t U, int64_t G, int64_t g0, int64_t g1,
               const Real* A, int64_t lda, const Real* Rf, bool add, Real* C, int64_t ldc,
               int64_t K = -1) {
  if (q.empty()) return;
  if (K < 0) K = U;
  const int64_t panel = K * Panel<Real>::NR;
  for (int64_t g = g0; g < g1; ++g)
    panel_gemm<Real>(q.r1 - q.r0, K, A + (q.r0 - lo) * lda, lda, Rf + g * panel, G * panel,
                     block_of<Real>(q.u0), block_of<Real>(q.u1), U,
                     C + (q.r0 - lo) * ldc + (g - g0) * U, ldc, add);
}

// Backward of step_gemm: dA[rows, u0..u1] = (add ? dA : 0) + dC[rows, k0..k1] @
// R[u0..u1, k0..k1]^T, R packed as Rb (rnn_gemm.hpp), GU = G*U.
template <typename Real>
void step_gemm_back(const Rect& q, int64_t lo, int64_t U, int64_t GU, int64_t k0, int64_t k1,
                    const Real* dC, int64_t ldc, const Real* Rb, bool add, Real* dA, int64_t lda) {
  if (q.empty()) return;
  constexpr int64_t NR = Panel<Real>::NR;
  panel_gemm<Real>(q.r1 - q.r0, k1 - k0, dC + (q.r0 - lo) * ldc + k0, ldc, Rb + k0 * NR, GU * NR,
                   block_of<Real>(q.u0), block_of<Real>(q.u1), U, dA + (q.r0 - lo) * lda, lda, add);
}

// Packed rows [r0, r1): fn(row, s, p).
template <typename Fn>
void for_packed_rows(const RnnPlan& pl, int64_t r0, int64_t r1, Fn fn) {
  if (r0 >= r1) return;
  int64_t s = std::upper_bound(pl.off.begin(), pl.off.end(), r0) - pl.off.begin() - 1;
  for (int64_t r = r0; r < r1; ++r) {
    while (r >= pl.off[s + 1]) ++s;
    fn(r, s, pl.lo[s] + (r - pl.off[s]));
  }
}

// Rows outside step s's block: the sorted positions [0, lo) and [hi, B), split over the team.
template <typename Fn>
void for_idle_rows(const RnnPlan& pl, int64_t B, int64_t s, int k, int nt, Fn fn) {
  const int64_t lo = pl.lo[s], hi = pl.hi[s], n = lo + (B - hi);
  for (int64_t j = split_lo(n, k, nt); j < split_lo(n, k + 1, nt); ++j) fn(j < lo ? j : hi + (j - lo));
}

inline int team_size(const RnnConfig& c, const RnnPlan& pl) {
  if (omp_in_parallel()) return 1;
  const double step_flops = 2.0 * c.B * c.U * c.GU(), input_flops = 2.0 * pl.N * c.F * c.GU();
  if (step_flops < 1e5 && input_flops < 2e6) return 1;  // waking the pool costs more
  return get_num_threads();
}

// The LSTM forward at inference with the batch in the vector lanes (rnn_lanes.cpp): float at
// the avx512 level, Keras's default activations, no mask that masks a step, a packed [W; R]
// above the row-split limit, at most a quarter of the lanes idle. lanes_forward_applies says
// whether rnn_forward takes it; its workspace is lanes_forward_workspace_size bytes.
template <typename Real>
bool lanes_forward_applies(const RnnConfig& c, const RnnPlan& pl, bool training);
template <typename Real>
int64_t lanes_forward_workspace_size(const RnnConfig& c);
template <typename Real>
void lanes_forward(const RnnConfig& c, const RnnPlan& pl, const RnnWeights<Real>& w, const Real* x,
                   const Real* h0, const Real* c0, Real* hs, Real* h_T, Real* c_T, void* workspace);

// The input-side bias of every gate column (GU): what the input projection starts from.
// GRU reset_after adds the recurrent bias of z and r there too (it is outside r's product).
template <typename Real>
void input_bias(const RnnConfig& c, const Real* bias, Real* xb) {
  const int64_t U = c.U, GU = c.GU();
  for (int64_t j = 0; j < GU; ++j) xb[j] = bias ? bias[j] : Real(0);
  if (bias && is_gru(c) && c.reset_after)
    for (int64_t j = 0; j < 2 * U; ++j) xb[j] += bias[GU + j];
}

template <typename Real>
void act(Act a, const ActParams& p, Real* y, const Real* x, int64_t n) {
  act_forward<Real>(a, y, x, n, p);
}
// dz = dz * a'(x) with y = a(x) (in place).
template <typename Real>
void act_grad(Act a, const ActParams& p, Real* dz, const Real* x, const Real* y, int64_t n) {
  act_backward<Real>(a, dz, dz, x ? x : y, y, n, p);
}

}  // namespace faltung::rnn_detail
