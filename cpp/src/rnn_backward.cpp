// Backward of the recurrent kernels (notation and buffers: faltung/rnn.hpp, rnn_kernels.hpp).
// Per step, from the last one: the gate gradients from the state gradient (dZ, the gradient of
// the step's recurrent product), the product back (dh_{t-1} = dZ R^T * m, against R packed
// transposed once per call: rnn_gemm.hpp), and after the loop dW = Xp^T dZ, dR = Hm^T dZ
// (LSTM, SimpleRNN: both from one GEMM over the saved rows [x | h m], split over the rows or
// the columns), dx = dZ W^T as single GEMMs over all packed rows (LSTM and SimpleRNN while R^T
// and W^T fit the row-split limit: in each step instead, input_grad; else against W^T packed
// in panels while it fits 2 MiB: packed_input_grad); db from per-thread column sums that
// each step adds while its dZ rows are in cache (instead of a pass over all of dZ afterwards:
// paired, LSTM 128 training step 9.73 -> 9.56 ms). A masked step passes the state gradients
// through and adds its carried output's gradient.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "faltung/rnn.hpp"
#include "rnn_kernels.hpp"

namespace faltung {

namespace {

using namespace rnn_detail;

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
  Real *Xp, *dZ, *dXh, *dxp, *dH, *dC, *dHm, *dQ, *Rb, *Wb, *dWR;
  // db's partial sums, one row of db_len per thread: the column sums of dZ (GU), then of
  // dXh (U, GRU reset_after); each thread adds its part of every step while it is in cache.
  Real* db_parts;
  int64_t db_len;
  int threads;  // the team the workspace was laid out for
  bool default_lstm_acts;  // LSTM with sigmoid and tanh: lstm_cell_back
  bool packed_dx;  // dx after the loop against Wb (packed_input_grad); else Wb: in each step
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
    threads = team_size(c, pl);
    const BackwardLayout L = backward_layout<Real>(c, pl.N, dx != nullptr, dW != nullptr, threads);
    Real* ws = aligned<Real>(workspace);
    Xp = at(ws, L.Xp), dZ = at(ws, L.dZ), dXh = at(ws, L.dXh), dxp = at(ws, L.dxp);
    dWR = at(ws, L.dWR);
    db_parts = dW && db ? at(ws, L.db_parts) : nullptr, db_len = L.db_len;
    dH = at(ws, L.dH), dC = at(ws, L.dC), dHm = at(ws, L.dHm), dQ = at(ws, L.dQ), Rb = at(ws, L.Rb);
    Wb = at(ws, L.Wb);
    packed_dx = Wb && packed_input_grad<Real>(c);
    default_lstm_acts = is_lstm(c) && c.rec_act == Act::sigmoid && c.act == Act::tanh;
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
    const int64_t nb = Panel<Real>::blocks(U);
    pack_backward<Real>(w.recurrent_kernel, U, GU, split_lo(nb, k, nt), split_lo(nb, k + 1, nt), Rb);
    if (Wb) {
      const int64_t nbx = Panel<Real>::blocks(F);
      pack_backward<Real>(w.kernel, F, GU, split_lo(nbx, k, nt), split_lo(nbx, k + 1, nt), Wb);
    }
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
#pragma omp simd
    for (int64_t u = u0; u < u1; ++u) dh[u] += d[u];
  }
  // dh_tot = dH + dhs, in dH.
  Real* total_dh(int64_t s, int64_t p, int64_t u0, int64_t n) {
    Real* dh = dH + p * U + u0;
    if (const Real* d = dout_row(s, p))
#pragma omp simd
      for (int64_t u = 0; u < n; ++u) dh[u] += d[u + u0];
    return dh;
  }
  void zero_dz(int64_t r, int64_t u0, int64_t n) {
    for (int64_t g = 0; g < c.gates(); ++g) std::fill_n(dZ + r * GU + g * U + u0, n, Real(0));
    if (dXh) std::fill_n(dXh + r * U + u0, n, Real(0));
  }

  // The LSTM cell's backward with Keras's default activations (sigmoid gates, tanh), in one
  // pass: the derivatives from the outputs, y (1 - y) and 1 - y^2, the products in act_grad's
  // order (GCC may fuse the sum into dct with an FMA), without act_grad's four passes over the
  // step's rows. Paired, LSTM 256 backward (batch 32, T 100, input 128): 14.01-14.16 -> 13.86-13.98
  // ms (0.987-0.990); LSTM 128 (batch 64, T 50) level.
  static void lstm_cell_back(int64_t n, const Real* __restrict gi, const Real* __restrict gf,
                             const Real* __restrict gg, const Real* __restrict go,
                             const Real* __restrict ac, const Real* __restrict cp, Real* __restrict dh,
                             Real* __restrict dc, Real* __restrict di, Real* __restrict df,
                             Real* __restrict dg, Real* __restrict dout) {
    const Real one(1);
#pragma omp simd
    for (int64_t u = 0; u < n; ++u) {
      const Real i = gi[u], f = gf[u], g = gg[u], o = go[u], a = ac[u], d = dh[u];
      dout[u] = d * a * o * (one - o);                      // h = o a(c)
      const Real dct = dc[u] + d * o * (one - a * a);
      di[u] = dct * g * i * (one - i);                      // c = f c_{t-1} + i g
      df[u] = dct * cp[u] * f * (one - f);
      dg[u] = dct * i * (one - g * g);
      dc[u] = dct * f;
      dh[u] = Real(0);
    }
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
          if (default_lstm_acts) {
            lstm_cell_back(n, gi, gf, gg, go, ac, cp, dh, dc, di, df, dg, dout);
            break;
          }
          // h = o a(c): do = dh a(c); dc += dh o a'(c)   (dg is scratch for dh o a'(c))
#pragma omp simd
          for (int64_t u = 0; u < n; ++u) {
            dout[u] = dh[u] * ac[u];
            dg[u] = dh[u] * go[u];
          }
          act_grad(c.act, c.act_params, dg, Cnew ? Cnew + r * U + u0 : nullptr, ac, n);
          // c = f c_{t-1} + i g: di = dc g, df = dc c_{t-1}, dg = dc i, dc_{t-1} = dc f
#pragma omp simd
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
#pragma omp simd
          for (int64_t u = 0; u < n; ++u) {
            dzz[u] = dh[u] * (hp[u] - gh[u]);
            dhh[u] = dh[u] * (Real(1) - gz[u]);
            dh[u] = dh[u] * gz[u];
          }
          act_grad(c.rec_act, c.rec_act_params, dzz, pre(r, 0) ? pre(r, 0) + u0 : nullptr, gz, n);
          act_grad(c.act, c.act_params, dhh, pre(r, 2) ? pre(r, 2) + u0 : nullptr, gh, n);
          if (c.reset_after) {  // hh = a(x_h + r gh'): d(gh') = dhh r, dr = dhh gh'
            const Real* rh = GH + r * U + u0;
#pragma omp simd
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
#pragma omp simd
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
#pragma omp simd
        for (int64_t u = q.u0; u < q.u1; ++u) dh[u] += dhm[u] * m[u];
      } else {
#pragma omp simd
        for (int64_t u = q.u0; u < q.u1; ++u) dh[u] += dhm[u];
      }
    }
  }

  // Thread k's partial db sums += its rectangle q of step s's dZ (and dXh) rows.
  void sum_bias(int64_t s, const Rect& q, int k) {
    if (!db_parts || q.empty()) return;
    Real* acc = db_parts + k * db_len;
    for (int64_t p = q.r0; p < q.r1; ++p) {
      const int64_t r = pl.off[s] + (p - pl.lo[s]);
      for (int64_t g = 0; g < c.gates(); ++g) {
        const Real* dz = dZ + r * GU + g * U;
        Real* a = acc + g * U;
#pragma omp simd
        for (int64_t u = q.u0; u < q.u1; ++u) a[u] += dz[u];
      }
      if (dXh) {
        const Real* dxh = dXh + r * U;
        Real* a = acc + GU;
#pragma omp simd
        for (int64_t u = q.u0; u < q.u1; ++u) a[u] += dxh[u];
      }
    }
  }

  // Step s's rows of dxp = dZ_s W^T (folded_input_grad): the thread's rows with every input
  // column, or (split by units, after the barrier) every row with its blocks of columns.
  void input_grad(int64_t s, const Rect& q, int k, int nt) {
    constexpr int64_t NR = Panel<Real>::NR;
    const int64_t lo = pl.lo[s], nbx = Panel<Real>::blocks(F);
    const int64_t j0 = q.by_units ? split_lo(nbx, k, nt) : 0, j1 = q.by_units ? split_lo(nbx, k + 1, nt) : nbx;
    if (q.r1 <= q.r0 || j1 <= j0) return;
    panel_gemm<Real>(q.r1 - q.r0, GU, dZ + (pl.off[s] + q.r0 - lo) * GU, GU, Wb, GU * NR, j0, j1, F,
                     dxp + (pl.off[s] + q.r0 - lo) * F, F, false);
  }

  void step(int64_t s, int k, int nt) {
    const int64_t lo = pl.lo[s], hi = pl.hi[s];
    const Rect q = step_rect<Real>(lo, hi, U, c.gates(), k, nt);
    Real* dZ_s = dZ + pl.off[s] * GU;
    gates_back(s, q);
    for_idle_rows(pl, B, s, k, nt, [&](int64_t p) { carry(s, p, 0, U); });
    if (q.by_units) {
#pragma omp barrier
    }
    if (is_gru(c) && !c.reset_after) {
      step_gemm_back<Real>(q, lo, U, GU, 2 * U, 3 * U, dZ_s, GU, Rb, false, dQ, U);
      gru_gate_r_back(s, q);
      if (q.by_units) {
#pragma omp barrier
      }
      step_gemm_back<Real>(q, lo, U, GU, 0, 2 * U, dZ_s, GU, Rb, true, dHm, U);
    } else {
      step_gemm_back<Real>(q, lo, U, GU, 0, GU, dZ_s, GU, Rb, false, dHm, U);
    }
    if (Wb && !packed_dx) input_grad(s, q, k, nt);
    combine(s, q);
    sum_bias(s, q, k);
    // No barrier before a step (s - 1) that repeats this split by rows: see Forward::step.
    const bool same_rows_next = s > 0 && !q.by_units && pl.lo[s - 1] == lo && pl.hi[s - 1] == hi;
    if (!same_rows_next) {
#pragma omp barrier
    }
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
      if (dWR && weight_grads_by_rows<Real>(c, N, threads)) {  // (nt <= threads parts)
        // [dW; dR] = [x | h m]^T dZ split over the packed rows: each thread's product over its
        // rows into its own dWR, then the sums; OpenBLAS packs each operand row once (split by
        // columns, each thread packed all of [x | h m]). Paired, training step: LSTM 128 (batch
        // 64, T 50) 0.979, SimpleRNN 256 0.972, LSTM 256 (batch 32 and 64) 1.000 / 1.002.
        const int64_t r0 = split_lo(N, k, nt), r1 = split_lo(N, k + 1, nt), WR = (F + U) * GU;
        gemm0<Real>(true, false, F + U, GU, r1 - r0, Real(1), Hm + r0 * (F + U), F + U, dZ + r0 * GU, GU, Real(0),
                    dWR + k * WR, GU);
#pragma omp barrier
        for (int64_t i = split_lo(F + U, k, nt); i < split_lo(F + U, k + 1, nt); ++i) {
          Real* dst = i < F ? dW + i * GU : dR + (i - F) * GU;
          const Real* p0 = dWR + i * GU;
          for (int64_t j = 0; j < GU; ++j) {
            Real v = p0[j];
            for (int t = 1; t < nt; ++t) v += p0[t * WR + j];
            dst[j] = v;
          }
        }
      } else if (dWR) {  // the same, split by columns, into one dWR
        team_gemm<Real>(k, nt, true, false, F + U, GU, N, Real(1), Hm, F + U, dZ, GU, Real(0), dWR, GU);
#pragma omp barrier
        for (int64_t i = split_lo(F + U, k, nt); i < split_lo(F + U, k + 1, nt); ++i)
          std::memcpy(i < F ? dW + i * GU : dR + (i - F) * GU, dWR + i * GU, GU * sizeof(Real));
      } else {  // GRU
        team_gemm<Real>(k, nt, true, false, F, GUz, N, Real(1), Xp, F, dZ, GU, Real(0), dW, GU);
        if (split_h)
          team_gemm<Real>(k, nt, true, false, F, U, N, Real(1), Xp, F, dXh, U, Real(0), dW + 2 * U, GU);
        if (!c.reset_after) {
          team_gemm<Real>(k, nt, true, false, U, 2 * U, N, Real(1), Hm, U, dZ, GU, Real(0), dR, GU);
          team_gemm<Real>(k, nt, true, false, U, U, N, Real(1), Q, U, dZ + 2 * U, GU, Real(0), dR + 2 * U, GU);
        } else {
          team_gemm<Real>(k, nt, true, false, U, GU, N, Real(1), Hm, U, dZ, GU, Real(0), dR, GU);
        }
      }
      if (db) {  // GRU reset_after: row 0 input side, row 1 recurrent side
        // the threads' partial sums (sum_bias), reduced over a range of db's columns each;
        // the sources of db's columns: [0, 2U) and [GU, 2GU) from dZ, [2U, GU) from dXh (split_h)
        const int64_t ncol = split_h ? 2 * GU : GU;
        for (int64_t j = split_lo(ncol, k, nt); j < split_lo(ncol, k + 1, nt); ++j) {
          const int64_t src = j < GUz ? j : j < GU ? GU + (j - GUz) : j - GU;
          Real sum = 0;
          for (int t = 0; t < nt; ++t) sum += db_parts[t * db_len + src];
          db[j] = sum;
        }
      }
    }
    if (dx) {
      // dxp = dZ_input W^T (unless each step made its rows), then scattered to (B,T,F)
      if (packed_dx) {
        const int64_t r0 = split_lo(N, k, nt), r1 = split_lo(N, k + 1, nt);
        panel_product<Real>(r1 - r0, GU, dZ + r0 * GU, GU, Wb, F, dxp + r0 * F, F);
      } else if (!Wb) {
        team_gemm<Real>(k, nt, false, true, N, F, GUz, Real(1), dZ, GU, W, GU, Real(0), dxp, F);
      }
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
    if (db_parts) std::fill_n(db_parts, threads * db_len, Real(0));
#pragma omp parallel num_threads(threads)
    {
      const int k = omp_get_thread_num(), nt = omp_get_num_threads();
      prologue(k, nt);
      for (int64_t s = T - 1; s >= 0; --s) step(s, k, nt);
      epilogue(k, nt);
    }
  }
};

}  // namespace

template <typename Real>
void rnn_backward(const RnnConfig& c, const RnnPlan& plan, const RnnWeights<Real>& w,
                  const Real* x, const Real* saved, const Real* dhs, const Real* dh_T,
                  const Real* dc_T, Real* dx, Real* dW, Real* dR, Real* db, Real* dh0,
                  Real* dc0, void* workspace) {
  rnn_check(c);
  Backward<Real>(c, plan, w, x, saved, dhs, dh_T, dc_T, dx, dW, dR, db, dh0, dc0, workspace).run();
}

#define FALTUNG_RNN_INSTANTIATE(Real)                                                              \
  template void rnn_backward<Real>(const RnnConfig&, const RnnPlan&, const RnnWeights<Real>&,      \
                                   const Real*, const Real*, const Real*, const Real*,             \
                                   const Real*, Real*, Real*, Real*, Real*, Real*, Real*, void*);
FALTUNG_RNN_INSTANTIATE(float)
FALTUNG_RNN_INSTANTIATE(double)
#undef FALTUNG_RNN_INSTANTIATE

}  // namespace faltung
