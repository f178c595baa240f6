// Recurrent kernels: SimpleRNN, LSTM, GRU (see faltung/rnn.hpp for the equations, the plan
// and the algorithm). B batch, T steps, F features, U units, G gates, GU = G*U, N packed
// rows; s processing step, t(s) input time, p sorted position, b = perm[p] batch index.
//
// Packed arrays are time-major: step s owns rows off[s] + (p - lo[s]) for p in [lo[s], hi[s]).
// Buffers (elements of Real):
//   saved (forward with training, read by backward), all (N, .) packed:
//     G      (N,GU) gate activations: SimpleRNN h; LSTM i f g o; GRU z r hh
//     Zpre   (N,GU) the preactivations, only if an activation's derivative reads its input
//     Hm     (N,U)  the recurrent GEMM's input h_{t-1} * m
//     Hprev  (N,U)  GRU with a recurrent mask: h_{t-1} (without one, Hm is h_{t-1})
//     Cprev  (N,U)  LSTM c_{t-1};  Ac (N,U) LSTM a(c_t);  Cnew (N,U) LSTM c_t if a reads it
//     GH     (N,U)  GRU reset_after: (h_{t-1} m) R_h + rb_h
//     Q      (N,U)  GRU not reset_after: r * h_{t-1} m (the h gate's GEMM input)
//   forward workspace: Xp (N,F) gathered x; xbias (GU); h, c (B,U) the states in sorted
//     order; without training G (N,GU) and one step's block (B,U) of Hm, Ac, GH, Q.
//   backward workspace: Xp (N,F) if dweights; dZ (N,GU) the gradient of the recurrent GEMM's
//     output (GRU reset_after: dG, with dXh (N,U) the input side of the h gate); dxp (N,F) if
//     dx; dH, dC (B,U) the state gradients; dHm (B,U) one step's GEMM result; dQ (B,U) GRU.
//
// Threads: one parallel region per call. Per step each thread owns a rectangle of the
// block (rows [r0,r1) of sorted positions x units [u0,u1) of every gate): rows when the
// block is tall, else units (the GEMM then needs every unit of its input: one barrier
// between the input's writers and the GEMM). Every step ends at a barrier.
#include "faltung/rnn.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>

#include "faltung/common.hpp"

namespace faltung {

namespace {

// Whether act_backward reads the forward input x (else only the output y, or nothing).
// Mirrors act_backward in activations.cpp: sigmoid, tanh and exponential read y.
bool reads_input(Act a) {
  return !(a == Act::linear || a == Act::sigmoid || a == Act::tanh || a == Act::exponential);
}
bool needs_preactivations(const RnnConfig& c) {
  return reads_input(c.act) || (c.cell != RnnCell::simple_rnn && reads_input(c.rec_act));
}
bool is_gru(const RnnConfig& c) { return c.cell == RnnCell::gru; }
bool is_lstm(const RnnConfig& c) { return c.cell == RnnCell::lstm; }

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

struct SavedLayout {
  int64_t G = -1, Zpre = -1, Hm = -1, Hprev = -1, Cprev = -1, Ac = -1, Cnew = -1, GH = -1,
          Q = -1, total = 0;
};
SavedLayout saved_layout(const RnnConfig& c, int64_t N) {
  const int64_t U = c.U, GU = c.GU();
  SavedLayout L;
  Carve k;
  L.G = k.take(N * GU);
  if (needs_preactivations(c)) L.Zpre = k.take(N * GU);
  L.Hm = k.take(N * U);
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

struct ForwardLayout {
  int64_t Xp = -1, xbias = -1, h = -1, c = -1;                   // always
  int64_t G = -1, Hm = -1, Ac = -1, GH = -1, Q = -1, total = 0;  // without training
};
ForwardLayout forward_layout(const RnnConfig& c, int64_t N, bool training) {
  const int64_t B = c.B, U = c.U, GU = c.GU();
  ForwardLayout L;
  Carve k;
  L.Xp = k.take(N * c.F);
  L.xbias = k.take(GU);
  L.h = k.take(B * U);
  if (is_lstm(c)) L.c = k.take(B * U);
  if (!training) {
    L.G = k.take(N * GU);
    L.Hm = k.take(B * U);
    if (is_lstm(c)) L.Ac = k.take(B * U);
    if (is_gru(c)) (c.reset_after ? L.GH : L.Q) = k.take(B * U);
  }
  L.total = k.total;
  return L;
}

struct BackwardLayout {
  int64_t Xp = -1, dZ = -1, dXh = -1, dxp = -1, dH = -1, dC = -1, dHm = -1, dQ = -1, total = 0;
};
BackwardLayout backward_layout(const RnnConfig& c, int64_t N, bool need_dx, bool need_dweights) {
  const int64_t B = c.B, U = c.U, GU = c.GU();
  BackwardLayout L;
  Carve k;
  if (need_dweights) L.Xp = k.take(N * c.F);
  L.dZ = k.take(N * GU);
  if (is_gru(c) && c.reset_after) L.dXh = k.take(N * U);
  if (need_dx) L.dxp = k.take(N * c.F);
  L.dH = k.take(B * U);
  if (is_lstm(c)) L.dC = k.take(B * U);
  L.dHm = k.take(B * U);
  if (is_gru(c) && !c.reset_after) L.dQ = k.take(B * U);
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
constexpr int64_t kMinRowsPerThread = 8;    // below this, split the units instead ...
constexpr int64_t kMinUnitsPerThread = 16;  // ... if there are this many per thread
Rect step_rect(int64_t lo, int64_t hi, int64_t U, int k, int nt) {
  const int64_t rows = hi - lo;
  if (nt == 1 || rows >= kMinRowsPerThread * nt || U < kMinUnitsPerThread * nt)
    return {lo + split_lo(rows, k, nt), lo + split_lo(rows, k + 1, nt), 0, U, false};
  const int64_t chunk = ((U + nt - 1) / nt + 7) / 8 * 8;  // multiples of 8 units
  return {lo, hi, std::min(U, k * chunk), std::min(U, (k + 1) * chunk), true};
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

// Thread k's share of C (M,N) = alpha op(A) op(B) + beta C: rows of C when tall, else
// columns (as parallel_gemm splits, but inside the caller's parallel region).
template <typename Real>
void team_gemm(int k, int nt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, Real alpha,
               const Real* A, int64_t lda, const Real* B, int64_t ldb, Real beta, Real* C,
               int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (nt == 1 || 2.0 * M * N * K < 1e5) {
    if (k == 0) gemm0<Real>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (M >= 16 * nt || M >= N) {
    const int64_t m0 = split_lo(M, k, nt), m1 = split_lo(M, k + 1, nt);
    gemm0<Real>(ta, tb, m1 - m0, N, K, alpha, ta ? A + m0 : A + m0 * lda, lda, B, ldb, beta,
                C + m0 * ldc, ldc);
  } else {
    const int64_t n0 = split_lo(N, k, nt), n1 = split_lo(N, k + 1, nt);
    gemm0<Real>(ta, tb, M, n1 - n0, K, alpha, A, lda, tb ? B + n0 * ldb : B + n0, ldb, beta,
                C + n0, ldc);
  }
}

// Step s's recurrent product for rectangle q, gates [g0, g1):
// C[rows, (g - g0)*U + (u0..u1)] = beta C + A[rows] (K = U) @ R[:, g*U + (u0..u1)].
// A and C are the step's blocks (row 0 = sorted position lo; C starts at gate g0's column),
// R has leading dimension GU.
template <typename Real>
void step_gemm(const Rect& q, int64_t lo, int64_t U, int64_t GU, int64_t g0, int64_t g1,
               const Real* A, int64_t lda, const Real* R, Real beta, Real* C, int64_t ldc) {
  if (q.empty()) return;
  const Real* A_q = A + (q.r0 - lo) * lda;
  Real* C_q = C + (q.r0 - lo) * ldc;
  if (!q.by_units) {  // all units: the gates are contiguous columns
    gemm0<Real>(false, false, q.r1 - q.r0, (g1 - g0) * U, U, Real(1), A_q, lda, R + g0 * U, GU,
                beta, C_q, ldc);
    return;
  }
  for (int64_t g = g0; g < g1; ++g)
    gemm0<Real>(false, false, q.r1 - q.r0, q.u1 - q.u0, U, Real(1), A_q, lda, R + g * U + q.u0,
                GU, beta, C_q + (g - g0) * U + q.u0, ldc);
}

// Backward of step_gemm: dA[rows, u0..u1] = beta dA + dC[rows, k0..k1] @ R[u0..u1, k0..k1]^T.
template <typename Real>
void step_gemm_back(const Rect& q, int64_t lo, int64_t GU, int64_t k0, int64_t k1,
                    const Real* dC, int64_t ldc, const Real* R, Real beta, Real* dA, int64_t lda) {
  if (q.empty()) return;
  gemm0<Real>(false, true, q.r1 - q.r0, q.u1 - q.u0, k1 - k0, Real(1), dC + (q.r0 - lo) * ldc + k0,
              ldc, R + q.u0 * GU + k0, GU, beta, dA + (q.r0 - lo) * lda + q.u0, lda);
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

int team_size(const RnnConfig& c, const RnnPlan& pl) {
  if (omp_in_parallel()) return 1;
  const double step_flops = 2.0 * c.B * c.U * c.GU(), input_flops = 2.0 * pl.N * c.F * c.GU();
  if (step_flops < 1e5 && input_flops < 2e6) return 1;  // waking the pool costs more
  return get_num_threads();
}

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

// ---- forward ---------------------------------------------------------------------------

template <typename Real>
struct Forward {
  const RnnConfig& c;
  const RnnPlan& pl;
  const RnnWeights<Real>& w;
  const Real *x, *h0, *c0;
  Real *hs, *h_T, *c_T;
  bool training;
  // saved / workspace buffers (see the top of the file)
  Real *G, *Zpre, *Hm, *Hprev, *Cprev, *Ac, *Cnew, *GH, *Q;
  Real *Xp, *xbias, *h, *cs;
  int64_t B, T, F, U, GU;

  Forward(const RnnConfig& c_, const RnnPlan& pl_, const RnnWeights<Real>& w_, const Real* x_,
          const Real* h0_, const Real* c0_, Real* hs_, Real* h_T_, Real* c_T_, Real* saved,
          void* workspace)
      : c(c_), pl(pl_), w(w_), x(x_), h0(h0_), c0(c0_), hs(hs_), h_T(h_T_), c_T(c_T_),
        training(saved != nullptr), B(c_.B), T(c_.T), F(c_.F), U(c_.U), GU(c_.GU()) {
    const ForwardLayout L = forward_layout(c, pl.N, training);
    Real* ws = aligned<Real>(workspace);
    Xp = at(ws, L.Xp), xbias = at(ws, L.xbias), h = at(ws, L.h), cs = at(ws, L.c);
    if (training) {
      const SavedLayout S = saved_layout(c, pl.N);
      G = at(saved, S.G), Zpre = at(saved, S.Zpre), Hm = at(saved, S.Hm);
      Hprev = at(saved, S.Hprev), Cprev = at(saved, S.Cprev), Ac = at(saved, S.Ac);
      Cnew = at(saved, S.Cnew), GH = at(saved, S.GH), Q = at(saved, S.Q);
    } else {
      G = at(ws, L.G), Hm = at(ws, L.Hm), Ac = at(ws, L.Ac), GH = at(ws, L.GH), Q = at(ws, L.Q);
      Zpre = Hprev = Cprev = Cnew = nullptr;
    }
  }

  int64_t t_of(int64_t s) const { return c.go_backwards ? T - 1 - s : s; }
  // Row 0 of step s's block in a per-step buffer: packed (training) or one block (B,.).
  int64_t block_row(int64_t s) const { return training ? pl.off[s] : 0; }
  bool active(int64_t s, int64_t p) const {
    return pl.active.empty() || pl.active[pl.off[s] + (p - pl.lo[s])];
  }
  Real* out_row(int64_t s, int64_t p) const { return hs + (pl.perm[p] * T + s) * U; }

  // x gathered into packed rows, G filled with the input bias, states from h0 / c0.
  void prologue(int k, int nt) {
    if (k == 0) input_bias(c, w.bias, xbias);
    for (int64_t p = split_lo(B, k, nt); p < split_lo(B, k + 1, nt); ++p) {
      const int64_t b = pl.perm[p];
      for (int64_t u = 0; u < U; ++u) h[p * U + u] = h0 ? h0[b * U + u] : Real(0);
      if (cs)
        for (int64_t u = 0; u < U; ++u) cs[p * U + u] = c0 ? c0[b * U + u] : Real(0);
    }
#pragma omp barrier
    for_packed_rows(pl, split_lo(pl.N, k, nt), split_lo(pl.N, k + 1, nt),
                    [&](int64_t r, int64_t s, int64_t p) {
                      std::memcpy(Xp + r * F, x + (pl.perm[p] * T + t_of(s)) * F, F * sizeof(Real));
                      std::memcpy(G + r * GU, xbias, GU * sizeof(Real));
                    });
#pragma omp barrier
    // the input projection of all steps: G (N,GU) += Xp (N,F) @ W (F,GU)
    team_gemm<Real>(k, nt, false, false, pl.N, GU, F, Real(1), Xp, F, w.kernel, GU, Real(1), G, GU);
#pragma omp barrier
  }

  // Hm block rows of q = h * m (the recurrent GEMM's input).
  void pack(int64_t s, const Rect& q) {
    Real* Hm_s = Hm + block_row(s) * U;
    const int64_t lo = pl.lo[s];
    for (int64_t p = q.r0; p < q.r1; ++p) {
      const Real* hp = h + p * U;
      Real* hm = Hm_s + (p - lo) * U;
      if (w.recurrent_mask) {
        const Real* m = w.recurrent_mask + pl.perm[p] * U;
        for (int64_t u = q.u0; u < q.u1; ++u) hm[u] = hp[u] * m[u];
      } else {
        std::memcpy(hm + q.u0, hp + q.u0, (q.u1 - q.u0) * sizeof(Real));
      }
    }
  }

  // The output of a masked step: the carried h, or zeros.
  void masked_output(int64_t s, int64_t p, int64_t u0, int64_t u1) {
    Real* o = out_row(s, p);
    if (c.zero_output_for_mask)
      std::fill(o + u0, o + u1, Real(0));
    else
      std::memcpy(o + u0, h + p * U + u0, (u1 - u0) * sizeof(Real));
  }

  // Copies the preactivations of gates [g0, g1) at units [u0, u1) of packed row r.
  void keep_pre(int64_t r, int64_t g0, int64_t g1, int64_t u0, int64_t n) {
    if (!Zpre) return;
    for (int64_t g = g0; g < g1; ++g)
      std::memcpy(Zpre + r * GU + g * U + u0, G + r * GU + g * U + u0, n * sizeof(Real));
  }

  // SimpleRNN epilogue: h = a(z).
  void simple_epilogue(int64_t s, const Rect& q) {
    const int64_t n = q.u1 - q.u0;
    for (int64_t p = q.r0; p < q.r1; ++p) {
      if (!active(s, p)) { masked_output(s, p, q.u0, q.u1); continue; }
      const int64_t r = pl.off[s] + (p - pl.lo[s]);
      Real* z = G + r * GU + q.u0;
      keep_pre(r, 0, 1, q.u0, n);
      act(c.act, c.act_params, z, z, n);
      std::memcpy(h + p * U + q.u0, z, n * sizeof(Real));
      std::memcpy(out_row(s, p) + q.u0, z, n * sizeof(Real));
    }
  }

  // LSTM epilogue: i, f, o = ra(.), g = a(.), c = f c + i g, h = o a(c).
  void lstm_epilogue(int64_t s, const Rect& q) {
    const int64_t n = q.u1 - q.u0, u0 = q.u0;
    for (int64_t p = q.r0; p < q.r1; ++p) {
      if (!active(s, p)) { masked_output(s, p, q.u0, q.u1); continue; }
      const int64_t r = pl.off[s] + (p - pl.lo[s]), rb = block_row(s) + (p - pl.lo[s]);
      Real* zr = G + r * GU;
      Real *gi = zr + u0, *gf = zr + U + u0, *gg = zr + 2 * U + u0, *go = zr + 3 * U + u0;
      keep_pre(r, 0, 4, u0, n);
      act(c.rec_act, c.rec_act_params, gi, gi, n);
      act(c.rec_act, c.rec_act_params, gf, gf, n);
      act(c.act, c.act_params, gg, gg, n);
      act(c.rec_act, c.rec_act_params, go, go, n);
      Real* cp = cs + p * U + u0;
      if (Cprev) std::memcpy(Cprev + r * U + u0, cp, n * sizeof(Real));
      for (int64_t u = 0; u < n; ++u) cp[u] = gf[u] * cp[u] + gi[u] * gg[u];  // c_t, in place
      if (Cnew) std::memcpy(Cnew + r * U + u0, cp, n * sizeof(Real));
      Real* ac = Ac + rb * U + u0;
      act(c.act, c.act_params, ac, cp, n);
      Real *hp = h + p * U + u0, *o = out_row(s, p) + u0;
      for (int64_t u = 0; u < n; ++u) hp[u] = o[u] = go[u] * ac[u];
    }
  }

  // GRU reset_after epilogue: z, r = ra(.), hh = a(x_h + r (gh + rb_h)), h = z h + (1-z) hh.
  void gru_epilogue(int64_t s, const Rect& q) {
    const int64_t n = q.u1 - q.u0, u0 = q.u0;
    const Real* rb_h = w.bias ? w.bias + GU + 2 * U + u0 : nullptr;
    for (int64_t p = q.r0; p < q.r1; ++p) {
      if (!active(s, p)) { masked_output(s, p, q.u0, q.u1); continue; }
      const int64_t r = pl.off[s] + (p - pl.lo[s]), rb = block_row(s) + (p - pl.lo[s]);
      Real* zr = G + r * GU;
      Real *gz = zr + u0, *gr = zr + U + u0, *gh = zr + 2 * U + u0;
      Real* rh = GH + rb * U + u0;
      if (rb_h)
        for (int64_t u = 0; u < n; ++u) rh[u] += rb_h[u];
      keep_pre(r, 0, 2, u0, n);
      act(c.rec_act, c.rec_act_params, gz, gz, n);
      act(c.rec_act, c.rec_act_params, gr, gr, n);
      for (int64_t u = 0; u < n; ++u) gh[u] += gr[u] * rh[u];
      keep_pre(r, 2, 3, u0, n);
      act(c.act, c.act_params, gh, gh, n);
      update_h(s, p, r, gz, gh, u0, n);
    }
  }

  // GRU h = z h_{t-1} + (1 - z) hh (h_{t-1} kept when training with a recurrent mask).
  void update_h(int64_t s, int64_t p, int64_t r, const Real* gz, const Real* hh, int64_t u0,
                int64_t n) {
    Real *hp = h + p * U + u0, *o = out_row(s, p) + u0;
    if (Hprev) std::memcpy(Hprev + r * U + u0, hp, n * sizeof(Real));
    for (int64_t u = 0; u < n; ++u) hp[u] = o[u] = gz[u] * hp[u] + (Real(1) - gz[u]) * hh[u];
  }

  // GRU without reset_after, before the h gate's GEMM: z, r = ra(.), Q = r * Hm.
  void gru_gates_zr(int64_t s, const Rect& q) {
    const int64_t n = q.u1 - q.u0, u0 = q.u0;
    for (int64_t p = q.r0; p < q.r1; ++p) {
      const int64_t rb = block_row(s) + (p - pl.lo[s]);
      Real* qq = Q + rb * U + u0;
      if (!active(s, p)) {  // finite rows: Q feeds the GEMMs
        std::fill(qq, qq + n, Real(0));
        continue;
      }
      const int64_t r = pl.off[s] + (p - pl.lo[s]);
      Real *gz = G + r * GU + u0, *gr = G + r * GU + U + u0;
      keep_pre(r, 0, 2, u0, n);
      act(c.rec_act, c.rec_act_params, gz, gz, n);
      act(c.rec_act, c.rec_act_params, gr, gr, n);
      const Real* hm = Hm + rb * U + u0;
      for (int64_t u = 0; u < n; ++u) qq[u] = gr[u] * hm[u];
    }
  }
  // ... and after it: hh = a(.), h = z h + (1-z) hh.
  void gru_gate_h(int64_t s, const Rect& q) {
    const int64_t n = q.u1 - q.u0, u0 = q.u0;
    for (int64_t p = q.r0; p < q.r1; ++p) {
      if (!active(s, p)) { masked_output(s, p, q.u0, q.u1); continue; }
      const int64_t r = pl.off[s] + (p - pl.lo[s]);
      Real *gz = G + r * GU + u0, *gh = G + r * GU + 2 * U + u0;
      keep_pre(r, 2, 3, u0, n);
      act(c.act, c.act_params, gh, gh, n);
      update_h(s, p, r, gz, gh, u0, n);
    }
  }

  void step(int64_t s, int k, int nt) {
    const int64_t lo = pl.lo[s], hi = pl.hi[s];
    const Rect q = step_rect(lo, hi, U, k, nt);
    Real* Hm_s = Hm + block_row(s) * U;
    Real* G_s = G + pl.off[s] * GU;
    pack(s, q);
    if (q.by_units) {
#pragma omp barrier
    }
    switch (c.cell) {
      case RnnCell::simple_rnn:
        step_gemm<Real>(q, lo, U, GU, 0, 1, Hm_s, U, w.recurrent_kernel, Real(1), G_s, GU);
        simple_epilogue(s, q);
        break;
      case RnnCell::lstm:
        step_gemm<Real>(q, lo, U, GU, 0, 4, Hm_s, U, w.recurrent_kernel, Real(1), G_s, GU);
        lstm_epilogue(s, q);
        break;
      case RnnCell::gru:
        step_gemm<Real>(q, lo, U, GU, 0, 2, Hm_s, U, w.recurrent_kernel, Real(1), G_s, GU);
        if (c.reset_after) {
          Real* GH_s = GH + block_row(s) * U;  // (h m) R_h, the bias is added in the epilogue
          step_gemm<Real>(q, lo, U, GU, 2, 3, Hm_s, U, w.recurrent_kernel, Real(0), GH_s, U);
          gru_epilogue(s, q);
        } else {
          gru_gates_zr(s, q);
          if (q.by_units) {
#pragma omp barrier
          }
          Real* Q_s = Q + block_row(s) * U;
          step_gemm<Real>(q, lo, U, GU, 2, 3, Q_s, U, w.recurrent_kernel, Real(1), G_s + 2 * U, GU);
          gru_gate_h(s, q);
        }
        break;
    }
    for_idle_rows(pl, B, s, k, nt, [&](int64_t p) { masked_output(s, p, 0, U); });
#pragma omp barrier
  }

  void epilogue(int k, int nt) {
    for (int64_t p = split_lo(B, k, nt); p < split_lo(B, k + 1, nt); ++p) {
      const int64_t b = pl.perm[p];
      std::memcpy(h_T + b * U, h + p * U, U * sizeof(Real));
      if (cs && c_T) std::memcpy(c_T + b * U, cs + p * U, U * sizeof(Real));
    }
  }

  void run() {
    const int nt_want = team_size(c, pl);
#pragma omp parallel num_threads(nt_want)
    {
      const int k = omp_get_thread_num(), nt = omp_get_num_threads();
      prologue(k, nt);
      for (int64_t s = 0; s < T; ++s) step(s, k, nt);
      epilogue(k, nt);
    }
  }
};

// ---- backward --------------------------------------------------------------------------

template <typename Real>
struct Backward {
  const RnnConfig& c;
  const RnnPlan& pl;
  const RnnWeights<Real>& w;
  const Real *x, *dhs, *dh_T, *dc_T;
  Real *dx, *dW, *dR, *db, *dh0, *dc0;
  // saved
  const Real *G, *Zpre, *Hm, *Hprev, *Cprev, *Ac, *Cnew, *GH, *Q;
  // workspace
  Real *Xp, *dZ, *dXh, *dxp, *dH, *dC, *dHm, *dQ;
  int64_t B, T, F, U, GU;

  Backward(const RnnConfig& c_, const RnnPlan& pl_, const RnnWeights<Real>& w_, const Real* x_,
           const Real* saved, const Real* dhs_, const Real* dh_T_, const Real* dc_T_, Real* dx_,
           Real* dW_, Real* dR_, Real* db_, Real* dh0_, Real* dc0_, void* workspace)
      : c(c_), pl(pl_), w(w_), x(x_), dhs(dhs_), dh_T(dh_T_), dc_T(dc_T_), dx(dx_), dW(dW_),
        dR(dR_), db(db_), dh0(dh0_), dc0(dc0_), B(c_.B), T(c_.T), F(c_.F), U(c_.U), GU(c_.GU()) {
    const SavedLayout S = saved_layout(c, pl.N);
    G = at(saved, S.G), Zpre = at(saved, S.Zpre), Hm = at(saved, S.Hm);
    Hprev = at(saved, S.Hprev) ? at(saved, S.Hprev) : Hm;  // h_{t-1}; Hm without a mask
    Cprev = at(saved, S.Cprev), Ac = at(saved, S.Ac), Cnew = at(saved, S.Cnew);
    GH = at(saved, S.GH), Q = at(saved, S.Q);
    const BackwardLayout L = backward_layout(c, pl.N, dx != nullptr, dW != nullptr);
    Real* ws = aligned<Real>(workspace);
    Xp = at(ws, L.Xp), dZ = at(ws, L.dZ), dXh = at(ws, L.dXh), dxp = at(ws, L.dxp);
    dH = at(ws, L.dH), dC = at(ws, L.dC), dHm = at(ws, L.dHm), dQ = at(ws, L.dQ);
  }

  int64_t t_of(int64_t s) const { return c.go_backwards ? T - 1 - s : s; }
  bool active(int64_t s, int64_t p) const {
    return pl.active.empty() || pl.active[pl.off[s] + (p - pl.lo[s])];
  }
  const Real* dout_row(int64_t s, int64_t p) const {
    return dhs ? dhs + (pl.perm[p] * T + s) * U : nullptr;
  }
  const Real* pre(int64_t r, int64_t g) const { return Zpre ? Zpre + r * GU + g * U : nullptr; }

  void prologue(int k, int nt) {
    for (int64_t p = split_lo(B, k, nt); p < split_lo(B, k + 1, nt); ++p) {
      const int64_t b = pl.perm[p];
      for (int64_t u = 0; u < U; ++u) dH[p * U + u] = dh_T ? dh_T[b * U + u] : Real(0);
      if (dC)
        for (int64_t u = 0; u < U; ++u) dC[p * U + u] = dc_T ? dc_T[b * U + u] : Real(0);
    }
    if (Xp)
      for_packed_rows(pl, split_lo(pl.N, k, nt), split_lo(pl.N, k + 1, nt),
                      [&](int64_t r, int64_t s, int64_t p) {
                        std::memcpy(Xp + r * F, x + (pl.perm[p] * T + t_of(s)) * F, F * sizeof(Real));
                      });
    if (dx)  // steps without a packed row get no gradient
      std::fill(dx + split_lo(B * T, k, nt) * F, dx + split_lo(B * T, k + 1, nt) * F, Real(0));
#pragma omp barrier
  }

  // A masked step passes the state gradient through; its carried output adds its gradient.
  void carry(int64_t s, int64_t p, int64_t u0, int64_t u1) {
    const Real* d = dout_row(s, p);
    if (!d || c.zero_output_for_mask) return;
    Real* dh = dH + p * U;
    for (int64_t u = u0; u < u1; ++u) dh[u] += d[u];
  }
  // dh_tot = dH + dhs, in dH.
  Real* total_dh(int64_t s, int64_t p, int64_t u0, int64_t n) {
    Real* dh = dH + p * U + u0;
    if (const Real* d = dout_row(s, p))
      for (int64_t u = 0; u < n; ++u) dh[u] += d[u + u0];
    return dh;
  }
  void zero_dz(int64_t r, int64_t u0, int64_t n) {
    for (int64_t g = 0; g < c.gates(); ++g) std::fill_n(dZ + r * GU + g * U + u0, n, Real(0));
    if (dXh) std::fill_n(dXh + r * U + u0, n, Real(0));
  }

  // Step s's gradient at rows/units q, from dH (the gradient of h_s) and dhs:
  // dZ rows and dC (LSTM), and dH = the part of dh_{s-1} that does not go through the GEMM.
  void gates_back(int64_t s, const Rect& q) {
    const int64_t n = q.u1 - q.u0, u0 = q.u0;
    for (int64_t p = q.r0; p < q.r1; ++p) {
      const int64_t r = pl.off[s] + (p - pl.lo[s]);
      if (!active(s, p)) {
        carry(s, p, u0, q.u1);
        zero_dz(r, u0, n);
        continue;
      }
      Real* dh = total_dh(s, p, u0, n);
      const Real* gr = G + r * GU;
      Real* dz = dZ + r * GU;
      switch (c.cell) {
        case RnnCell::simple_rnn:  // h = a(z)
          std::memcpy(dz + u0, dh, n * sizeof(Real));
          act_grad(c.act, c.act_params, dz + u0, pre(r, 0) ? pre(r, 0) + u0 : nullptr, gr + u0, n);
          std::fill_n(dh, n, Real(0));
          break;
        case RnnCell::lstm: {
          const Real *gi = gr + u0, *gf = gr + U + u0, *gg = gr + 2 * U + u0, *go = gr + 3 * U + u0;
          const Real *ac = Ac + r * U + u0, *cp = Cprev + r * U + u0;
          Real *di = dz + u0, *df = dz + U + u0, *dg = dz + 2 * U + u0, *dout = dz + 3 * U + u0;
          Real* dc = dC + p * U + u0;
          // h = o a(c): do = dh a(c); dc += dh o a'(c)   (dg is scratch for dh o a'(c))
          for (int64_t u = 0; u < n; ++u) {
            dout[u] = dh[u] * ac[u];
            dg[u] = dh[u] * go[u];
          }
          act_grad(c.act, c.act_params, dg, Cnew ? Cnew + r * U + u0 : nullptr, ac, n);
          // c = f c_{t-1} + i g: di = dc g, df = dc c_{t-1}, dg = dc i, dc_{t-1} = dc f
          for (int64_t u = 0; u < n; ++u) {
            const Real dct = dc[u] + dg[u];
            di[u] = dct * gg[u];
            df[u] = dct * cp[u];
            dg[u] = dct * gi[u];
            dc[u] = dct * gf[u];
          }
          act_grad(c.rec_act, c.rec_act_params, di, pre(r, 0) ? pre(r, 0) + u0 : nullptr, gi, n);
          act_grad(c.rec_act, c.rec_act_params, df, pre(r, 1) ? pre(r, 1) + u0 : nullptr, gf, n);
          act_grad(c.act, c.act_params, dg, pre(r, 2) ? pre(r, 2) + u0 : nullptr, gg, n);
          act_grad(c.rec_act, c.rec_act_params, dout, pre(r, 3) ? pre(r, 3) + u0 : nullptr, go, n);
          std::fill_n(dh, n, Real(0));
          break;
        }
        case RnnCell::gru: {
          const Real *gz = gr + u0, *grr = gr + U + u0, *gh = gr + 2 * U + u0;
          const Real* hp = Hprev + r * U + u0;
          Real *dzz = dz + u0, *dzr = dz + U + u0, *dzh = dz + 2 * U + u0;
          // h = z h_{t-1} + (1 - z) hh: dz = dh (h_{t-1} - hh), dhh = dh (1 - z), dh_{t-1} = dh z
          Real* dhh = c.reset_after ? dXh + r * U + u0 : dzh;
          for (int64_t u = 0; u < n; ++u) {
            dzz[u] = dh[u] * (hp[u] - gh[u]);
            dhh[u] = dh[u] * (Real(1) - gz[u]);
            dh[u] = dh[u] * gz[u];
          }
          act_grad(c.rec_act, c.rec_act_params, dzz, pre(r, 0) ? pre(r, 0) + u0 : nullptr, gz, n);
          act_grad(c.act, c.act_params, dhh, pre(r, 2) ? pre(r, 2) + u0 : nullptr, gh, n);
          if (c.reset_after) {  // hh = a(x_h + r gh'): d(gh') = dhh r, dr = dhh gh'
            const Real* rh = GH + r * U + u0;
            for (int64_t u = 0; u < n; ++u) {
              dzh[u] = dhh[u] * grr[u];
              dzr[u] = dhh[u] * rh[u];
            }
            act_grad(c.rec_act, c.rec_act_params, dzr, pre(r, 1) ? pre(r, 1) + u0 : nullptr, grr, n);
          }
          break;
        }
      }
    }
  }

  // GRU without reset_after, between the two GEMMs back: from dQ = dZ_h R_h^T,
  // dr = dQ hm (-> dZ_r), and dHm = dQ r (the second GEMM adds dZ_zr R_zr^T).
  void gru_gate_r_back(int64_t s, const Rect& q) {
    const int64_t n = q.u1 - q.u0, u0 = q.u0, lo = pl.lo[s];
    for (int64_t p = q.r0; p < q.r1; ++p) {
      if (!active(s, p)) continue;
      const int64_t r = pl.off[s] + (p - lo);
      const Real *dq = dQ + (p - lo) * U + u0, *hm = Hm + r * U + u0, *grr = G + r * GU + U + u0;
      Real *dzr = dZ + r * GU + U + u0, *dhm = dHm + (p - lo) * U + u0;
      for (int64_t u = 0; u < n; ++u) {
        dzr[u] = dq[u] * hm[u];
        dhm[u] = dq[u] * grr[u];
      }
      act_grad(c.rec_act, c.rec_act_params, dzr, pre(r, 1) ? pre(r, 1) + u0 : nullptr, grr, n);
    }
  }

  // dh_{s-1} += dHm * m at the active rows of q.
  void combine(int64_t s, const Rect& q) {
    const int64_t lo = pl.lo[s];
    for (int64_t p = q.r0; p < q.r1; ++p) {
      if (!active(s, p)) continue;
      const Real* dhm = dHm + (p - lo) * U;
      Real* dh = dH + p * U;
      if (w.recurrent_mask) {
        const Real* m = w.recurrent_mask + pl.perm[p] * U;
        for (int64_t u = q.u0; u < q.u1; ++u) dh[u] += dhm[u] * m[u];
      } else {
        for (int64_t u = q.u0; u < q.u1; ++u) dh[u] += dhm[u];
      }
    }
  }

  void step(int64_t s, int k, int nt) {
    const int64_t lo = pl.lo[s], hi = pl.hi[s];
    const Rect q = step_rect(lo, hi, U, k, nt);
    const Real* R = w.recurrent_kernel;
    Real* dZ_s = dZ + pl.off[s] * GU;
    gates_back(s, q);
    for_idle_rows(pl, B, s, k, nt, [&](int64_t p) { carry(s, p, 0, U); });
    if (q.by_units) {
#pragma omp barrier
    }
    if (is_gru(c) && !c.reset_after) {
      step_gemm_back<Real>(q, lo, GU, 2 * U, 3 * U, dZ_s, GU, R, Real(0), dQ, U);
      gru_gate_r_back(s, q);
      if (q.by_units) {
#pragma omp barrier
      }
      step_gemm_back<Real>(q, lo, GU, 0, 2 * U, dZ_s, GU, R, Real(1), dHm, U);
    } else {
      step_gemm_back<Real>(q, lo, GU, 0, GU, dZ_s, GU, R, Real(0), dHm, U);
    }
    combine(s, q);
#pragma omp barrier
  }

  // The weight gradients (one GEMM each over all packed rows), dx, dh0, dc0.
  void epilogue(int k, int nt) {
    for (int64_t p = split_lo(B, k, nt); p < split_lo(B, k + 1, nt); ++p) {
      const int64_t b = pl.perm[p];
      if (dh0) std::memcpy(dh0 + b * U, dH + p * U, U * sizeof(Real));
      if (dc0 && dC) std::memcpy(dc0 + b * U, dC + p * U, U * sizeof(Real));
    }
    const int64_t N = pl.N;
    const Real* W = w.kernel;
    const bool split_h = is_gru(c) && c.reset_after;  // the h gate's input side is dXh
    const int64_t GUz = split_h ? 2 * U : GU;          // columns of dZ shared by both sides
    if (dW) {
      // dW = Xp^T dZ_input;  dR = Hm^T dZ (GRU without reset_after: Q^T for the h gate)
      team_gemm<Real>(k, nt, true, false, F, GUz, N, Real(1), Xp, F, dZ, GU, Real(0), dW, GU);
      if (split_h)
        team_gemm<Real>(k, nt, true, false, F, U, N, Real(1), Xp, F, dXh, U, Real(0), dW + 2 * U, GU);
      if (is_gru(c) && !c.reset_after) {
        team_gemm<Real>(k, nt, true, false, U, 2 * U, N, Real(1), Hm, U, dZ, GU, Real(0), dR, GU);
        team_gemm<Real>(k, nt, true, false, U, U, N, Real(1), Q, U, dZ + 2 * U, GU, Real(0), dR + 2 * U, GU);
      } else {
        team_gemm<Real>(k, nt, true, false, U, GU, N, Real(1), Hm, U, dZ, GU, Real(0), dR, GU);
      }
      if (db) {  // column sums; GRU reset_after: row 0 input side, row 1 recurrent side
        const int64_t ncol = split_h ? 2 * GU : GU;
        for (int64_t j = split_lo(ncol, k, nt); j < split_lo(ncol, k + 1, nt); ++j) {
          const Real* col;
          int64_t ld;
          if (split_h && j >= 2 * U && j < GU) {
            col = dXh + (j - 2 * U), ld = U;
          } else {
            col = dZ + (j % GU), ld = GU;
          }
          Real acc = 0;
          for (int64_t r = 0; r < N; ++r) acc += col[r * ld];
          db[j] = acc;
        }
      }
    }
    if (dx) {
      // dxp = dZ_input W^T, then scattered to (B,T,F)
      team_gemm<Real>(k, nt, false, true, N, F, GUz, Real(1), dZ, GU, W, GU, Real(0), dxp, F);
      if (split_h) {
#pragma omp barrier
      }
      if (split_h)
        team_gemm<Real>(k, nt, false, true, N, F, U, Real(1), dXh, U, W + 2 * U, GU, Real(1), dxp, F);
#pragma omp barrier
      for_packed_rows(pl, split_lo(N, k, nt), split_lo(N, k + 1, nt),
                      [&](int64_t r, int64_t s, int64_t p) {
                        std::memcpy(dx + (pl.perm[p] * T + t_of(s)) * F, dxp + r * F, F * sizeof(Real));
                      });
    }
  }

  void run() {
    const int nt_want = team_size(c, pl);
#pragma omp parallel num_threads(nt_want)
    {
      const int k = omp_get_thread_num(), nt = omp_get_num_threads();
      prologue(k, nt);
      for (int64_t s = T - 1; s >= 0; --s) step(s, k, nt);
      epilogue(k, nt);
    }
  }
};

}  // namespace

void rnn_check(const RnnConfig& c) {
  const char* op = c.cell == RnnCell::simple_rnn ? "simple_rnn" : c.cell == RnnCell::lstm ? "lstm" : "gru";
  FALTUNG_CHECK(c.B >= 0 && c.T >= 0 && c.F >= 0,
                std::string(op) + ": expected non-negative sizes, received B=" + std::to_string(c.B) +
                    ", T=" + std::to_string(c.T) + ", F=" + std::to_string(c.F));
  FALTUNG_CHECK(c.U > 0, std::string(op) + ": expected units > 0, received " + std::to_string(c.U));
}

RnnPlan rnn_plan(const RnnConfig& c, const uint8_t* mask) {
  const int64_t B = c.B, T = c.T;
  RnnPlan pl;
  pl.perm.resize(B);
  std::iota(pl.perm.begin(), pl.perm.end(), int64_t(0));
  pl.lo.assign(T, 0);
  pl.hi.assign(T, B);
  pl.off.resize(T + 1);
  if (mask) {
    // each sample's unmasked interval [first, last + 1) in processing order; none: [T, T)
    std::vector<int64_t> s0(B, T), s1(B, T);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < T; ++s)
        if (mask[b * T + (c.go_backwards ? T - 1 - s : s)]) {
          if (s0[b] == T) s0[b] = s;
          s1[b] = s + 1;
        }
    // sorted by first step, then by last step descending: right-padded masks (all first 0)
    // and left-padded ones (all last T) give each step a prefix of the sorted samples
    std::stable_sort(pl.perm.begin(), pl.perm.end(), [&](int64_t a, int64_t b) {
      return s0[a] != s0[b] ? s0[a] < s0[b] : s1[a] > s1[b];
    });
    for (int64_t p = 0; p < B; ++p) pl.identity_perm = pl.identity_perm && pl.perm[p] == p;
    for (int64_t s = 0; s < T; ++s) {
      int64_t lo = B, hi = 0;
      for (int64_t p = 0; p < B; ++p) {
        const int64_t b = pl.perm[p];
        if (s0[b] <= s && s < s1[b]) lo = std::min(lo, p), hi = p + 1;
      }
      pl.lo[s] = lo < hi ? lo : 0;
      pl.hi[s] = lo < hi ? hi : 0;
    }
  }
  pl.off[0] = 0;
  for (int64_t s = 0; s < T; ++s) pl.off[s + 1] = pl.off[s] + (pl.hi[s] - pl.lo[s]);
  pl.N = pl.off[T];
  if (mask) {
    bool all = true;
    pl.active.resize(pl.N);
    for (int64_t s = 0; s < T; ++s)
      for (int64_t p = pl.lo[s]; p < pl.hi[s]; ++p) {
        const uint8_t a = mask[pl.perm[p] * T + (c.go_backwards ? T - 1 - s : s)] != 0;
        pl.active[pl.off[s] + (p - pl.lo[s])] = a;
        all = all && a;
      }
    if (all) pl.active.clear();
  }
  return pl;
}

int64_t rnn_saved_size(const RnnConfig& c, const RnnPlan& plan) {
  return saved_layout(c, plan.N).total;
}

template <typename Real>
int64_t rnn_forward_workspace_size(const RnnConfig& c, const RnnPlan& plan, bool training) {
  return forward_layout(c, plan.N, training).total * int64_t(sizeof(Real)) + kAlignSlack;
}

template <typename Real>
int64_t rnn_backward_workspace_size(const RnnConfig& c, const RnnPlan& plan, bool need_dx,
                                    bool need_dweights) {
  return backward_layout(c, plan.N, need_dx, need_dweights).total * int64_t(sizeof(Real)) +
         kAlignSlack;
}

template <typename Real>
void rnn_forward(const RnnConfig& c, const RnnPlan& plan, const RnnWeights<Real>& w,
                 const Real* x, const Real* h0, const Real* c0, Real* hs, Real* h_T, Real* c_T,
                 Real* saved, void* workspace) {
  rnn_check(c);
  Forward<Real>(c, plan, w, x, h0, c0, hs, h_T, c_T, saved, workspace).run();
}

template <typename Real>
void rnn_backward(const RnnConfig& c, const RnnPlan& plan, const RnnWeights<Real>& w,
                  const Real* x, const Real* saved, const Real* dhs, const Real* dh_T,
                  const Real* dc_T, Real* dx, Real* dW, Real* dR, Real* db, Real* dh0,
                  Real* dc0, void* workspace) {
  rnn_check(c);
  Backward<Real>(c, plan, w, x, saved, dhs, dh_T, dc_T, dx, dW, dR, db, dh0, dc0, workspace).run();
}

#define FALTUNG_RNN_INSTANTIATE(Real)                                                              \
  template int64_t rnn_forward_workspace_size<Real>(const RnnConfig&, const RnnPlan&, bool);      \
  template int64_t rnn_backward_workspace_size<Real>(const RnnConfig&, const RnnPlan&, bool, bool); \
  template void rnn_forward<Real>(const RnnConfig&, const RnnPlan&, const RnnWeights<Real>&,       \
                                  const Real*, const Real*, const Real*, Real*, Real*, Real*,      \
                                  Real*, void*);                                                   \
  template void rnn_backward<Real>(const RnnConfig&, const RnnPlan&, const RnnWeights<Real>&,      \
                                   const Real*, const Real*, const Real*, const Real*,             \
                                   const Real*, Real*, Real*, Real*, Real*, Real*, Real*, void*);
FALTUNG_RNN_INSTANTIATE(float)
FALTUNG_RNN_INSTANTIATE(double)
#undef FALTUNG_RNN_INSTANTIATE

}  // namespace faltung
