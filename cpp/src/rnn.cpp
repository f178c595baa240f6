// Recurrent kernels, the plan and the forward: SimpleRNN, LSTM, GRU (see faltung/rnn.hpp for
// the equations, the plan and the algorithm; rnn_kernels.hpp for the buffers and the team's
// split of a step; rnn_backward.cpp for the backward). B batch, T steps, F features, U units,
// G gates, GU = G*U, N packed rows; s processing step, t(s) input time, p sorted position,
// b = perm[p] batch index. Packed arrays are time-major: step s owns rows off[s] + (p - lo[s])
// for p in [lo[s], hi[s]).
// The fused LSTM cell vectorizes only without -ftrapping-math (see activations.cpp); nothing
// here reads floating-point exception flags. The pragma precedes every include.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>
#include <string>
#include <type_traits>

#include "elementwise.hpp"
#include "faltung/rnn.hpp"
#include "rnn_kernels.hpp"

namespace faltung {

namespace {

using namespace rnn_detail;

// ---- forward ---------------------------------------------------------------------------

// The LSTM cell with Keras's default activations in one pass over n units: the gates'
// preactivations z (gate g at zi + g U) get the input-side bias b (same layout), become
// i, f, o = sigmoid(.), g = tanh(.) in place; c = f c + i g in place; ac = tanh(c);
// h = out = o ac.
// Each activation is a ratio over a denominator d = 1 + e in (1, 2], e = exp(-|z|) (tanh:
// exp(-2|z|)): sigmoid(z) = (z >= 0 ? 1 : e) / d, tanh(z) = sign(z) (1 - e) / d. The four
// gates' denominators share one division (their product is at most 16; each reciprocal is
// the product's reciprocal times the other three): a division costs as much as an exp here.
// tanh near 0 takes tanh_f's series (1 - e loses the relative precision there).
template <typename Real>
void lstm_cell(int64_t n, Real* __restrict zi, Real* __restrict zf, Real* __restrict zg,
               Real* __restrict zo, const Real* __restrict b, int64_t U, Real* __restrict c,
               Real* __restrict ac, Real* __restrict h, Real* __restrict out) {
  using elementwise::clamp_nan;
  using elementwise::tanh_series;
  using elementwise::vexp_le0;
  const Real *bi = b, *bf = b + U, *bg = b + 2 * U, *bo = b + 3 * U;
  const Real one(1), zero(0), small(0.2);
  for (int64_t u = 0; u < n; ++u) {
    const Real ai = zi[u] + bi[u], af = zf[u] + bf[u], ag = zg[u] + bg[u], ao = zo[u] + bo[u];
    const Real ei = vexp_le0(-std::abs(ai)), ef = vexp_le0(-std::abs(af));
    const Real eg = vexp_le0(Real(-2) * std::abs(ag)), eo = vexp_le0(-std::abs(ao));
    const Real di = one + ei, df = one + ef, dg = one + eg, dq = one + eo;
    const Real pif = di * df, pgo = dg * dq, inv = one / (pif * pgo);
    const Real ri = inv * pgo * df, rf = inv * pgo * di, rg = inv * pif * dq, ro = inv * pif * dg;
    // NaN stays NaN (vexp_le0 maps it to a finite value)
    const Real i = ai == ai ? (ai >= zero ? one : ei) * ri : ai;
    const Real f = af == af ? (af >= zero ? one : ef) * rf : af;
    const Real o = ao == ao ? (ao >= zero ? one : eo) * ro : ao;
    const Real gb = std::copysign((one - eg) * rg, ag);
    const Real g = ag == ag ? (std::abs(ag) < small ? tanh_series(clamp_nan(ag, small)) : gb) : ag;
    zi[u] = i, zf[u] = f, zg[u] = g, zo[u] = o;
    const Real cn = f * c[u] + i * g;
    const Real ec = vexp_le0(Real(-2) * std::abs(cn));
    const Real tb = std::copysign((one - ec) / (one + ec), cn);
    const Real a = cn == cn ? (std::abs(cn) < small ? tanh_series(clamp_nan(cn, small)) : tb) : cn;
    c[u] = cn, ac[u] = a;
    h[u] = out[u] = o * a;
  }
}

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
  Real *Xp, *xbias, *h, *cs, *Rf, *Wf;
  int64_t B, T, F, U, GU;
  bool fold;     // folded_forward: the step's product is [x_t | h m] @ [W; R], K = F + U
  bool xh;       // Hm's rows are [x_t | h m] (folded, or saved for the backward: rnn_kernels.hpp)
  int64_t K, ldh, ldx;  // the step product's inner size; Hm's and Xp's row lengths

  Forward(const RnnConfig& c_, const RnnPlan& pl_, const RnnWeights<Real>& w_, const Real* x_,
          const Real* h0_, const Real* c0_, Real* hs_, Real* h_T_, Real* c_T_, Real* saved,
          void* workspace)
      : c(c_), pl(pl_), w(w_), x(x_), h0(h0_), c0(c0_), hs(hs_), h_T(h_T_), c_T(c_T_),
        training(saved != nullptr), B(c_.B), T(c_.T), F(c_.F), U(c_.U), GU(c_.GU()),
        fold(folded_forward<Real>(c_)),
        xh(saved ? joint_weight_grads(c_) : fold), K(fold ? F + U : U), ldh(xh ? F + U : U),
        ldx(F) {
    const ForwardLayout L = forward_layout<Real>(c, pl.N, training);
    Real* ws = aligned<Real>(workspace);
    Xp = at(ws, L.Xp), xbias = at(ws, L.xbias), h = at(ws, L.h), cs = at(ws, L.c), Rf = at(ws, L.Rf);
    Wf = at(ws, L.Wf);
    if (training) {
      const SavedLayout S = saved_layout(c, pl.N);
      G = at(saved, S.G), Zpre = at(saved, S.Zpre), Hm = at(saved, S.Hm);
      Hprev = at(saved, S.Hprev), Cprev = at(saved, S.Cprev), Ac = at(saved, S.Ac);
      Cnew = at(saved, S.Cnew), GH = at(saved, S.GH), Q = at(saved, S.Q);
      if (xh) Xp = Hm, ldx = ldh;  // x gathered into the saved rows' first F columns
    } else {
      G = at(ws, L.G), Hm = at(ws, L.Hm), Ac = at(ws, L.Ac), GH = at(ws, L.GH), Q = at(ws, L.Q);
      Zpre = Hprev = Cprev = Cnew = nullptr;
    }
  }

  int64_t t_of(int64_t s) const { return c.go_backwards ? T - 1 - s : s; }
  // Row 0 of step s's block in a per-step buffer: packed (training) or one block (B,.).
  int64_t block_row(int64_t s) const { return training ? pl.off[s] : 0; }
  // Row 0 of step s's block of G: packed, or the one block of the folded inference.
  int64_t g_row(int64_t s) const { return fold && !training ? 0 : pl.off[s]; }
  bool active(int64_t s, int64_t p) const {
    return pl.active.empty() || pl.active[pl.off[s] + (p - pl.lo[s])];
  }
  Real* out_row(int64_t s, int64_t p) const { return hs + (pl.perm[p] * T + s) * U; }

  // x gathered into packed rows, states from h0 / c0, the recurrent kernel packed (each thread
  // the blocks of its units; folded: [W; R]). The input-side bias is added by the epilogues,
  // where a step's rows are in cache (filling G with it first cost a pass over all of G).
  void prologue(int k, int nt) {
    if (k == 0) input_bias(c, w.bias, xbias);
    const int64_t nb = Panel<Real>::blocks(U);
    pack_forward<Real>(w.recurrent_kernel, U, c.gates(), split_lo(nb, k, nt), split_lo(nb, k + 1, nt),
                       Rf, fold ? w.kernel : nullptr, fold ? F : 0);
    for (int64_t p = split_lo(B, k, nt); p < split_lo(B, k + 1, nt); ++p) {
      const int64_t b = pl.perm[p];
      for (int64_t u = 0; u < U; ++u) h[p * U + u] = h0 ? h0[b * U + u] : Real(0);
      if (cs)
        for (int64_t u = 0; u < U; ++u) cs[p * U + u] = c0 ? c0[b * U + u] : Real(0);
    }
#pragma omp barrier
    if (fold) return;  // each step reads its x rows itself (pack)
    for_packed_rows(pl, split_lo(pl.N, k, nt), split_lo(pl.N, k + 1, nt),
                    [&](int64_t r, int64_t s, int64_t p) {
                      std::memcpy(Xp + r * ldx, x + (pl.perm[p] * T + t_of(s)) * F, F * sizeof(Real));
                    });
    if (Wf) {
      const int64_t nbg = Panel<Real>::blocks(GU);
      pack_panels<Real>(w.kernel, F, GU, GU, 1, split_lo(nbg, k, nt), split_lo(nbg, k + 1, nt), Wf);
    }
#pragma omp barrier
    // the input projection of all steps: G (N,GU) = Xp (N,F) @ W (F,GU)
    if (Wf)
      projection(split_lo(pl.N, k, nt), split_lo(pl.N, k + 1, nt));
    else
      team_gemm<Real>(k, nt, false, false, pl.N, GU, F, Real(1), Xp, ldx, w.kernel, GU, Real(0), G, GU);
#pragma omp barrier
  }

  // G's rows [r0, r1) = Xp's @ W, W packed in Wf (rnn_gemm.hpp's panel_product, as conv.cpp's
  // 1x1 forward). OpenBLAS zeroed all of G (13 MB at LSTM 256, batch 32, T 100) before adding
  // its products, a pass of its own; G above 8 MB goes out with streaming stores (it is read
  // step by step, long after).
  void projection(int64_t r0, int64_t r1) {
    const bool stream = simd::stream_rows(pl.N, GU * int64_t(sizeof(Real)), G);
    panel_product<Real>(r1 - r0, F, Xp + r0 * ldx, ldx, Wf, GU, G + r0 * GU, GU, stream);
    if (stream) simd::stream_fence();
  }

  // Hm block rows of q = h * m (the recurrent GEMM's input), after x_t's F columns where the
  // rows are [x_t | h m]; folded, x_t too, each thread the part of its columns in proportion to
  // its units.
  void pack(int64_t s, const Rect& q) {
    Real* Hm_s = Hm + block_row(s) * ldh;
    const int64_t lo = pl.lo[s];
    for (int64_t p = q.r0; p < q.r1; ++p) {
      const Real* hp = h + p * U;
      Real* hm = Hm_s + (p - lo) * ldh;
      if (fold) {
        const int64_t f0 = F * q.u0 / U, f1 = F * q.u1 / U;
        if (f1 > f0)
          std::memcpy(hm + f0, x + (pl.perm[p] * T + t_of(s)) * F + f0, (f1 - f0) * sizeof(Real));
      }
      if (xh) hm += F;  // (not folded: the prologue gathered x there)
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
      Real* z = G + (g_row(s) + p - pl.lo[s]) * GU + q.u0;
      add_bias(z, xbias + q.u0, n);
      keep_pre(r, 0, 1, q.u0, n);
      act(c.act, c.act_params, z, z, n);
      std::memcpy(h + p * U + q.u0, z, n * sizeof(Real));
      std::memcpy(out_row(s, p) + q.u0, z, n * sizeof(Real));
    }
  }

  // z += the input-side bias of its columns.
  static void add_bias(Real* z, const Real* b, int64_t n) {
    for (int64_t u = 0; u < n; ++u) z[u] += b[u];
  }

  // LSTM epilogue: i, f, o = ra(.), g = a(.), c = f c + i g, h = o a(c).
  void lstm_epilogue(int64_t s, const Rect& q) {
    const int64_t n = q.u1 - q.u0, u0 = q.u0;
    // Keras's default activations in float (double keeps libm's, for the gradient checks)
    const bool fused = std::is_same_v<Real, float> && c.rec_act == Act::sigmoid && c.act == Act::tanh;
    for (int64_t p = q.r0; p < q.r1; ++p) {
      if (!active(s, p)) { masked_output(s, p, q.u0, q.u1); continue; }
      const int64_t r = pl.off[s] + (p - pl.lo[s]), rb = block_row(s) + (p - pl.lo[s]);
      Real* zr = G + (g_row(s) + p - pl.lo[s]) * GU;
      Real *gi = zr + u0, *gf = zr + U + u0, *gg = zr + 2 * U + u0, *go = zr + 3 * U + u0;
      Real* cp = cs + p * U + u0;
      if (Cprev) std::memcpy(Cprev + r * U + u0, cp, n * sizeof(Real));
      if (fused) {  // no preactivations kept: sigmoid's and tanh's derivatives read outputs
        lstm_cell(n, gi, gf, gg, go, xbias + u0, U, cp, Ac + rb * U + u0, h + p * U + u0,
                  out_row(s, p) + u0);
        continue;
      }
      for (int64_t g = 0; g < 4; ++g) add_bias(zr + g * U + u0, xbias + g * U + u0, n);
      keep_pre(r, 0, 4, u0, n);
      act(c.rec_act, c.rec_act_params, gi, gi, n);
      act(c.rec_act, c.rec_act_params, gf, gf, n);
      act(c.act, c.act_params, gg, gg, n);
      act(c.rec_act, c.rec_act_params, go, go, n);
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
      add_bias(gz, xbias + u0, n);
      add_bias(gr, xbias + U + u0, n);
      add_bias(gh, xbias + 2 * U + u0, n);
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
      add_bias(gz, xbias + u0, n);
      add_bias(gr, xbias + U + u0, n);
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
      add_bias(gh, xbias + 2 * U + u0, n);
      keep_pre(r, 2, 3, u0, n);
      act(c.act, c.act_params, gh, gh, n);
      update_h(s, p, r, gz, gh, u0, n);
    }
  }

  void step(int64_t s, int k, int nt) {
    const int64_t lo = pl.lo[s], hi = pl.hi[s];
    const Rect q = step_rect<Real>(lo, hi, U, c.gates(), k, nt, K);
    const int64_t Gn = c.gates();
    Real* Hm_s = Hm + block_row(s) * ldh;
    const Real* A_s = fold || !xh ? Hm_s : Hm_s + F;  // the product's input: K columns
    Real* G_s = G + g_row(s) * GU;
    pack(s, q);
    if (q.by_units) {
#pragma omp barrier
    }
    switch (c.cell) {
      case RnnCell::simple_rnn:
        step_gemm<Real>(q, lo, U, Gn, 0, 1, A_s, ldh, Rf, !fold, G_s, GU, K);
        simple_epilogue(s, q);
        break;
      case RnnCell::lstm:
        step_gemm<Real>(q, lo, U, Gn, 0, 4, A_s, ldh, Rf, !fold, G_s, GU, K);
        lstm_epilogue(s, q);
        break;
      case RnnCell::gru:
        step_gemm<Real>(q, lo, U, Gn, 0, 2, Hm_s, U, Rf, true, G_s, GU);
        if (c.reset_after) {
          Real* GH_s = GH + block_row(s) * U;  // (h m) R_h, the bias is added in the epilogue
          step_gemm<Real>(q, lo, U, Gn, 2, 3, Hm_s, U, Rf, false, GH_s, U);
          gru_epilogue(s, q);
        } else {
          gru_gates_zr(s, q);
          if (q.by_units) {
#pragma omp barrier
          }
          Real* Q_s = Q + block_row(s) * U;
          step_gemm<Real>(q, lo, U, Gn, 2, 3, Q_s, U, Rf, true, G_s + 2 * U, GU);
          gru_gate_h(s, q);
        }
        break;
    }
    for_idle_rows(pl, B, s, k, nt, [&](int64_t p) { masked_output(s, p, 0, U); });
    // A split by rows that the next step repeats (its rows [lo, hi) are these: always without
    // a mask) needs no barrier: each thread's rows read only the states they wrote themselves,
    // and the idle rows' states stay unwritten. The condition is the same on every thread.
    const bool same_rows_next = s + 1 < T && !q.by_units && pl.lo[s + 1] == lo && pl.hi[s + 1] == hi;
    if (!same_rows_next) {
#pragma omp barrier
    }
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

}  // namespace

namespace rnn_detail {

namespace {
std::atomic<int64_t> row_split_override{0};
}

int64_t rnn_row_split_bytes() {
  if (const int64_t o = row_split_override.load(std::memory_order_relaxed)) return o;
  static const int64_t automatic = [] {
#ifdef _SC_LEVEL2_CACHE_SIZE
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);  // glibc reads it from cpuid; 0 if unknown
#else
    const long l2 = 0;
#endif
    return l2 > 0 ? int64_t(l2) / 2 : int64_t(256) * 1024;
  }();
  return automatic;
}

}  // namespace rnn_detail

using namespace rnn_detail;

void rnn_set_row_split_bytes(int64_t bytes) {
  FALTUNG_CHECK(bytes >= 0, "rnn_set_row_split_bytes: expected bytes >= 0 (0: half the L2), received " +
                                std::to_string(bytes));
  row_split_override.store(bytes, std::memory_order_relaxed);
}

int64_t rnn_get_row_split_bytes() { return rnn_row_split_bytes(); }

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
  if (lanes_forward_applies<Real>(c, plan, training)) return lanes_forward_workspace_size<Real>(c);
  return forward_layout<Real>(c, plan.N, training).total * int64_t(sizeof(Real)) + kAlignSlack;
}

template <typename Real>
int64_t rnn_backward_workspace_size(const RnnConfig& c, const RnnPlan& plan, bool need_dx,
                                    bool need_dweights) {
  return backward_layout<Real>(c, plan.N, need_dx, need_dweights, team_size(c, plan)).total *
             int64_t(sizeof(Real)) +
         kAlignSlack;
}

template <typename Real>
bool rnn_forward_in_lanes(const RnnConfig& c, const RnnPlan& plan, bool training) {
  return lanes_forward_applies<Real>(c, plan, training);
}

template <typename Real>
void rnn_forward(const RnnConfig& c, const RnnPlan& plan, const RnnWeights<Real>& w,
                 const Real* x, const Real* h0, const Real* c0, Real* hs, Real* h_T, Real* c_T,
                 Real* saved, void* workspace) {
  rnn_check(c);
  if (lanes_forward_applies<Real>(c, plan, saved != nullptr))
    return lanes_forward<Real>(c, plan, w, x, h0, c0, hs, h_T, c_T, workspace);
  Forward<Real>(c, plan, w, x, h0, c0, hs, h_T, c_T, saved, workspace).run();
}

#define FALTUNG_RNN_INSTANTIATE(Real)                                                              \
  template int64_t rnn_forward_workspace_size<Real>(const RnnConfig&, const RnnPlan&, bool);      \
  template bool rnn_forward_in_lanes<Real>(const RnnConfig&, const RnnPlan&, bool);               \
  template int64_t rnn_backward_workspace_size<Real>(const RnnConfig&, const RnnPlan&, bool, bool); \
  template void rnn_forward<Real>(const RnnConfig&, const RnnPlan&, const RnnWeights<Real>&,       \
                                  const Real*, const Real*, const Real*, Real*, Real*, Real*,      \
                                  Real*, void*);
FALTUNG_RNN_INSTANTIATE(float)
FALTUNG_RNN_INSTANTIATE(double)
#undef FALTUNG_RNN_INSTANTIATE

}  // namespace faltung
