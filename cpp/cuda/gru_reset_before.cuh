// cpp/cuda/gru_reset_before.cuh — GRU with reset_after=False (the reset gate applied before the
// recurrent product of the h gate; Keras 2's GRU), forward and backward, as kernel bodies and
// launch sequences (see hd.cuh for the design). Oracle: cpp/src/rnn.cpp / rnn_backward.cpp
// through faltung.ops.gru_forward/gru_backward(reset_after=False).
//
// B batch, T steps, F input features, U units, 3U gate columns (Keras's order z, r, h).
// gru::Args with bias (3U) or nullptr (one bias, on the input side), mask (B,T) bytes (0 =
// masked: state carried, output the carried h or 0 with zero_output_for_mask; dP_t = 0) or
// nullptr, h0 (B,U) or nullptr (zeros); hs (B,T,U), h_T (B,U).
//   p = x_t W + b;  z, r = sigmoid(p_{z,r} + h_{t-1} R_{z,r})
//   hh = tanh(p_h + (r h_{t-1}) R_h);  h_t = z h_{t-1} + (1 - z) hh
//
// Launches. Forward: P = X W + b (one GEMM over all B T rows); H_0 from h0; per step t:
// Q_t[zr] = H_t R_zr (GEMM), the z, r epilogue (thread per (b, u)) writing RH_t = r h_{t-1},
// Q_t[h] = RH_t R_h (GEMM), the h epilogue. Backward, per step t = T-1..0: the h epilogue
// backward turns dh into dP_t[z], dP_t[h] and the carried dH = dh z; dRH = dP_t[h] R_h^T (GEMM);
// the r epilogue backward gives dP_t[r] and dH += dRH r; then dH += dP_t[zr] R_zr^T (GEMM).
// After the loop, over all rows: dW = X^T dP, dx = dP W^T, db = column sums of dP,
// dR_zr = Hprev^T dP[zr], dR_h = RH^T dP[h] (rnn::sum_over_steps: a GEMM per sample or per
// step, whichever are fewer).
// A recurrent dropout mask m (a.rmask, rnn_common.cuh) scales h_{t-1} in both recurrent products,
// as the CPU kernels do: Q_t[zr] = (h m) R_zr, RH_t = r h m; the z gate's h_{t-1} stays unmasked.
#pragma once
#include <cstdint>

#include "gru.cuh"

namespace faltung::cuda::gru_reset_before {

using gru::Args;
using rnn::Gemm;
using rnn::hd_tanh;
using rnn::sigmoid;

// The workspace layout, here and nowhere else.
struct Layout {
  int64_t P, Q, G, H, RH, dP, dRH, dH, total;
  Layout(int64_t B, int64_t T, int64_t U, bool backward) {
    const int64_t rows = B * T, GU = 3 * U;
    P = 0;                                   // (B,T,3U) x W + b
    Q = P + rows * GU;                       // (B,T,3U) h_{t-1} R_zr | (r h_{t-1}) R_h
    G = Q + rows * GU;                       // (B,T,3U) z, r, hh
    H = G + rows * GU;                       // (B,T+1,U) h_{t-1} at [b, t], h_T at [b, T]
    RH = H + B * (T + 1) * U;                // (B,T,U) r h_{t-1}
    dP = RH + rows * U;                      // (B,T,3U) backward only
    dRH = dP + (backward ? rows * GU : 0);   // (B,U)
    dH = dRH + (backward ? B * U : 0);       // (B,U)
    total = dH + (backward ? B * U : 0);
  }
};
inline int64_t workspace_size(int64_t B, int64_t T, int64_t U, bool backward) {
  return Layout(B, T, U, backward).total;
}

template <typename R>
using View = gru::View<R, Layout>;
// RH_t = r h_{t-1} of sample b
template <typename R>
FALTUNG_HD R* rh(const View<R>& v, int64_t b, int64_t t) {
  return v.a.ws + v.lay.RH + (b * v.a.T + t) * v.a.U;
}
// H[:, 0] = h0 (zeros when absent), or with `grad` dH = dh_T; h_T or dh0. Thread per (b, u).
template <typename R>
using Init = gru::InitState<R, Layout>;
template <typename R>
using Final = gru::Final<R, Layout>;

// Step t's z, r epilogue: z, r and RH_t = r h_{t-1}. Thread per (b, u).
template <typename R>
struct GatesZR {
  View<R> v;
  int64_t t;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global(), U = v.a.U;
    if (e >= v.a.B * U) return;
    const int64_t b = e / U, u = e % U;
    const R *p = v.gates(v.lay.P, b, t), *q = v.gates(v.lay.Q, b, t);
    R* g = v.gates(v.lay.G, b, t);
    const R z = sigmoid(p[u] + q[u]), r = sigmoid(p[U + u] + q[U + u]);
    g[u] = z, g[U + u] = r;
    rh(v, b, t)[u] = r * v.state(b, t)[u] * (v.a.rmask ? v.a.rmask[e] : R(1));
  }
};

// Step t's h epilogue: hh, h_t. Thread per (b, u).
template <typename R>
struct GateH {
  View<R> v;
  int64_t t;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<R>& a = v.a;
    const int64_t e = th.global(), U = a.U;
    if (e >= a.B * U) return;
    const int64_t b = e / U, u = e % U;
    if (!v.live(b, t)) {
      const R h_prev = v.state(b, t)[u];
      v.state(b, t + 1)[u] = h_prev;
      a.hs[(b * a.T + t) * U + u] = a.zero_output_for_mask ? R(0) : h_prev;
      return;
    }
    R* g = v.gates(v.lay.G, b, t);
    const R hh = hd_tanh(v.gates(v.lay.P, b, t)[2 * U + u] + v.gates(v.lay.Q, b, t)[2 * U + u]);
    const R z = g[u];
    g[2 * U + u] = hh;
    v.state(b, t + 1)[u] = a.hs[(b * a.T + t) * U + u] = z * v.state(b, t)[u] + (R(1) - z) * hh;
  }
};

// Step t's h epilogue backward: dh = dH + dhs_t -> dP_t[z], dP_t[h], and the carried dH = dh z.
// At a masked step dP_t = 0 and dh (with dhs_t unless the output was zeros) passes to step t - 1.
// Thread per (b, u).
template <typename R>
struct GateHBackward {
  View<R> v;
  int64_t t;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<R>& a = v.a;
    const int64_t e = th.global(), U = a.U;
    if (e >= a.B * U) return;
    const int64_t b = e / U, u = e % U;
    const R* g = v.gates(v.lay.G, b, t);
    R* dp = v.gates(v.lay.dP, b, t);
    R& dH = v.w(v.lay.dH)[e];
    const R dout = a.dhs ? a.dhs[(b * a.T + t) * U + u] : R(0);
    if (!v.live(b, t)) {
      dp[u] = dp[2 * U + u] = R(0);
      if (!a.zero_output_for_mask) dH += dout;
      return;
    }
    const R z = g[u], hh = g[2 * U + u], h_prev = v.state(b, t)[u];
    const R dh = dH + dout;
    dp[u] = dh * (h_prev - hh) * z * (R(1) - z);
    dp[2 * U + u] = dh * (R(1) - z) * (R(1) - hh * hh);
    dH = dh * z;
  }
};

// Step t's r epilogue backward, from dRH = dP_t[h] R_h^T: dP_t[r] = dRH h_{t-1} m r (1 - r) and
// dH += dRH r m (m = 1 without a mask; the GEMM adds dP_t[zr] R_zr^T next). Thread per (b, u).
template <typename R>
struct GateRBackward {
  View<R> v;
  int64_t t;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global(), U = v.a.U;
    if (e >= v.a.B * U) return;
    const int64_t b = e / U, u = e % U;
    if (!v.live(b, t)) {  // dRH is 0 here (dP_t[h] is)
      v.gates(v.lay.dP, b, t)[U + u] = R(0);
      return;
    }
    const R r = v.gates(v.lay.G, b, t)[U + u], drh = v.w(v.lay.dRH)[e], m = v.a.rmask ? v.a.rmask[e] : R(1);
    v.gates(v.lay.dP, b, t)[U + u] = drh * v.state(b, t)[u] * m * r * (R(1) - r);
    v.w(v.lay.dH)[e] += drh * r * m;
  }
};

// Forward: hs, h_T, and in a.ws what the backward reads. Launch sizes: `block` threads per
// block. The forward part of the layout does not depend on `backward`.
template <class Exec, typename R>
void forward(Exec& ex, const Args<R>& a, int64_t block) {
  const View<R> v{a, Layout(a.B, a.T, a.U, false)};
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = 3 * U, rows = B * T;
  R *P = v.w(v.lay.P), *Q = v.w(v.lay.Q), *H = v.w(v.lay.H), *RH = v.w(v.lay.RH);
  const Geometry per_unit = cover(B * U, block);
  // P (BT,3U) = X (BT,F) W (F,3U) + b
  rnn::gemm(ex, Gemm<R>{P, GU, nullptr, 0, a.x, F, 1, a.W, GU, 1, a.bias, rows, GU, F}, block);
  ex.launch(per_unit, Init<R>{v, false});
  for (int64_t t = 0; t < T; ++t) {
    // Q_t[zr] (B,2U) = H_t (B,U) R[:, :2U]; rows of step t are T * 3U (resp. (T+1) U) apart
    int64_t hst = (T + 1) * U;
    const R* Ht = rnn::step_state(ex, H + t * U, hst, a.rmask, a.rscratch, B, U, block);
    rnn::gemm(ex, Gemm<R>{Q + t * GU, T * GU, nullptr, 0, Ht, hst, 1, a.Rk, GU, 1, nullptr, B, 2 * U, U}, block);
    ex.launch(per_unit, GatesZR<R>{v, t});
    // Q_t[h] (B,U) = RH_t (B,U) R[:, 2U:]
    rnn::gemm(ex, Gemm<R>{Q + t * GU + 2 * U, T * GU, nullptr, 0, RH + t * U, T * U, 1, a.Rk + 2 * U, GU, 1,
                          nullptr, B, U, U}, block);
    ex.launch(per_unit, GateH<R>{v, t});
  }
  ex.launch(per_unit, Final<R>{v, false});
}

// Backward after forward, a.ws (of workspace_size(B, T, U, true) elements) as forward left it;
// a.dW, a.dR, a.dh0, a.dx (unless nullptr) and a.db (with a bias) are written.
template <class Exec, typename R>
void backward(Exec& ex, const Args<R>& a, int64_t block) {
  const View<R> v{a, Layout(a.B, a.T, a.U, true)};
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = 3 * U, rows = B * T;
  R *H = v.w(v.lay.H), *RH = v.w(v.lay.RH), *dP = v.w(v.lay.dP), *dRH = v.w(v.lay.dRH), *dH = v.w(v.lay.dH);
  R* dHm = a.rmask ? a.rscratch + B * T * U : dH;  // (dP_t[zr] R_zr^T) before the mask
  const Geometry per_unit = cover(B * U, block);
  ex.launch(per_unit, Init<R>{v, true});
  for (int64_t t = T - 1; t >= 0; --t) {
    ex.launch(per_unit, GateHBackward<R>{v, t});
    // dRH (B,U) = dP_t[h] (B,U) R[:, 2U:]^T
    rnn::gemm(ex, Gemm<R>{dRH, U, nullptr, 0, dP + t * GU + 2 * U, T * GU, 1, a.Rk + 2 * U, 1, GU, nullptr, B,
                          U, U}, block);
    ex.launch(per_unit, GateRBackward<R>{v, t});
    // dH (B,U) += dP_t[zr] (B,2U) R[:, :2U]^T
    rnn::gemm(ex, Gemm<R>{dHm, U, a.rmask ? nullptr : dH, U, dP + t * GU, T * GU, 1, a.Rk, 1, GU, nullptr, B, U,
                          2 * U}, block);
    if (a.rmask) ex.launch(per_unit, rnn::AddMasked<R>{dH, dHm, a.rmask, B * U});
  }
  ex.launch(per_unit, Final<R>{v, true});
  rnn::input_grads(ex, a.x, a.W, dP, a.dW, a.dx, rows, F, GU, block);
  // dR[:, :2U] = sum over b of H_b[0:T]^T dP_b[zr];  dR[:, 2U:] = sum over b of RH_b^T dP_b[h]
  const R* Hm = H;  // h m (rnn::weight_grads does the same)
  int64_t sh = (T + 1) * U;
  if (a.rmask) {
    ex.launch(cover(B * T * U, block), rnn::MaskStates<R>{a.rscratch, H, sh, a.rmask, B, T, U});
    Hm = a.rscratch, sh = T * U;
  }
  rnn::sum_over_steps(ex, a.dR, GU, Hm, sh, dP, T * GU, GU, B, T, U, 2 * U, block);
  rnn::sum_over_steps(ex, a.dR + 2 * U, GU, RH, T * U, dP + 2 * U, T * GU, GU, B, T, U, U, block);
  if (a.db) ex.launch(cover(GU, block), rnn::ColumnSum<R>{a.db, dP, rows, GU});
}

}  // namespace faltung::cuda::gru_reset_before
