// cpp/cuda/gru.cuh — GRU (reset_after, Keras's default) forward and backward: the fused gate
// epilogues of each step around its recurrent GEMM, as kernel bodies and a launch sequence
// (see hd.cuh for the design). Oracle: cpp/src/rnn.cpp / rnn_backward.cpp through
// faltung.ops.gru_forward/gru_backward.
//
// B batch, T steps, F input features, U units, 3U gate columns (Keras's order z, r, h).
// x (B,T,F), W (F,3U), R (U,3U), bias (2,3U) (row 0 input, row 1 recurrent) or nullptr,
// h0 (B,U) or nullptr (zeros), mask (B,T) bytes (0 = masked: state carried, output the carried
// h or 0 with zero_output_for_mask) or nullptr; hs (B,T,U), h_T (B,U).
//   p = x_t W + b_in;  q = h_{t-1} R + b_rec
//   z, r = sigmoid(p_{z,r} + q_{z,r});  hh = tanh(p_h + r q_h);  h_t = z h_{t-1} + (1 - z) hh
// This slice covers tanh/sigmoid, reset_after, a recurrent dropout mask (rnn_common.cuh),
// go_backwards false.
//
// Launches. Forward: P = X W + b_in (one GEMM over all B T rows); H_0 from h0; per step t:
// Q_t = H_t R + b_rec (GEMM), the gate epilogue (thread per (b, u)). Backward, per step
// t = T-1..0: the epilogue backward (thread per (b, u)) turns dh into dP_t, dQ_t and the
// carried dH = dh z; then dH += dQ_t R^T (GEMM). After the loop, over all B T rows:
// dW = X^T dP, dR = Hprev^T dQ, dbias = column sums of dP and dQ, dx = dP W^T.
#pragma once
#include <cstdint>

#include "rnn_common.cuh"

namespace faltung::cuda::gru {

using rnn::Gemm;
using rnn::hd_tanh;
using rnn::sigmoid;

template <typename R>
struct Args {
  int64_t B, T, F, U;
  bool zero_output_for_mask;
  const R *x, *W, *Rk, *bias, *h0;
  const uint8_t* mask;
  R *hs, *h_T;
  // backward (dx == nullptr: forward_backward runs the forward only, backward skips the input
  // gradient); dhs, dh_T may be nullptr (zero)
  const R *dhs, *dh_T;
  R *dx, *dW, *dR, *db, *dh0;
  R* ws;  // workspace_size(...) elements, laid out by Layout
  // recurrent dropout (rnn_common.cuh): m (B,U) or nullptr, and with it scratch of B (T+1) U
  const R* rmask;
  R* rscratch;
};

// The workspace layout, here and nowhere else.
struct Layout {
  int64_t P, Q, G, H, dP, dQ, dH, total;
  Layout(int64_t B, int64_t T, int64_t U, bool backward) {
    const int64_t rows = B * T, GU = 3 * U;
    P = 0;                                   // (B,T,3U) x W + b_in
    Q = P + rows * GU;                       // (B,T,3U) h_{t-1} R + b_rec
    G = Q + rows * GU;                       // (B,T,3U) z, r, hh
    H = G + rows * GU;                       // (B,T+1,U) h_{t-1} at [b, t], h_T at [b, T]
    dP = H + B * (T + 1) * U;                // (B,T,3U) backward only
    dQ = dP + (backward ? rows * GU : 0);    // (B,T,3U)
    dH = dQ + (backward ? rows * GU : 0);    // (B,U)
    total = dH + (backward ? B * U : 0);
  }
};
inline int64_t workspace_size(int64_t B, int64_t T, int64_t U, bool backward) {
  return Layout(B, T, U, backward).total;
}

// The workspace views and the state copies at either end, over this Layout or (L)
// gru_reset_before.cuh's, which names the same H and dH.
template <typename R, class L = Layout>
struct View {
  Args<R> a;
  L lay;
  FALTUNG_HD R* w(int64_t off) const { return a.ws + off; }
  FALTUNG_HD R* state(int64_t b, int64_t t) const { return a.ws + lay.H + (b * (a.T + 1) + t) * a.U; }
  FALTUNG_HD R* gates(int64_t off, int64_t b, int64_t t) const { return a.ws + off + (b * a.T + t) * 3 * a.U; }
  FALTUNG_HD bool live(int64_t b, int64_t t) const { return !a.mask || a.mask[b * a.T + t]; }
};

// H[:, 0] = h0 (zeros when absent); with `grad`, dH = dh_T instead. Thread per (b, u).
template <typename R, class L = Layout>
struct InitState {
  View<R, L> v;
  bool grad;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global(), U = v.a.U;
    if (e >= v.a.B * U) return;
    if (grad) v.w(v.lay.dH)[e] = v.a.dh_T ? v.a.dh_T[e] : R(0);
    else v.state(e / U, 0)[e % U] = v.a.h0 ? v.a.h0[e] : R(0);
  }
};

// Step t's gate epilogue. Thread per (b, u).
template <typename R>
struct Epilogue {
  View<R> v;
  int64_t t;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<R>& a = v.a;
    const int64_t e = th.global(), U = a.U;
    if (e >= a.B * U) return;
    const int64_t b = e / U, u = e % U;
    const R h_prev = v.state(b, t)[u];
    R* hs = a.hs + (b * a.T + t) * U;
    if (!v.live(b, t)) {
      v.state(b, t + 1)[u] = h_prev;
      hs[u] = a.zero_output_for_mask ? R(0) : h_prev;
      return;
    }
    const R* p = v.gates(v.lay.P, b, t);
    const R* q = v.gates(v.lay.Q, b, t);
    R* g = v.gates(v.lay.G, b, t);
    const R z = sigmoid(p[u] + q[u]), r = sigmoid(p[U + u] + q[U + u]);
    const R hh = hd_tanh(p[2 * U + u] + r * q[2 * U + u]);
    g[u] = z, g[U + u] = r, g[2 * U + u] = hh;
    v.state(b, t + 1)[u] = hs[u] = z * h_prev + (R(1) - z) * hh;
  }
};

// Step t's epilogue backward: dh = dH + dhs_t -> dP_t, dQ_t, and the carried dH = dh z (the
// GEMM adds dQ_t R^T next). At a masked step dP_t = dQ_t = 0 and dh (with dhs_t unless the
// output was zeros) passes to step t - 1. Thread per (b, u).
template <typename R>
struct EpilogueBackward {
  View<R> v;
  int64_t t;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<R>& a = v.a;
    const int64_t e = th.global(), U = a.U;
    if (e >= a.B * U) return;
    const int64_t b = e / U, u = e % U;
    R* dp = v.gates(v.lay.dP, b, t);
    R* dq = v.gates(v.lay.dQ, b, t);
    R& dH = v.w(v.lay.dH)[e];
    const R dout = a.dhs ? a.dhs[(b * a.T + t) * U + u] : R(0);
    if (!v.live(b, t)) {
      for (int64_t k = 0; k < 3; ++k) dp[k * U + u] = dq[k * U + u] = R(0);
      if (!a.zero_output_for_mask) dH += dout;
      return;
    }
    const R* g = v.gates(v.lay.G, b, t);
    const R z = g[u], r = g[U + u], hh = g[2 * U + u];
    const R q_h = v.gates(v.lay.Q, b, t)[2 * U + u], h_prev = v.state(b, t)[u];
    const R dh = dH + dout;
    const R dzp = dh * (h_prev - hh) * z * (R(1) - z);
    const R dhp = dh * (R(1) - z) * (R(1) - hh * hh);
    const R drp = dhp * q_h * r * (R(1) - r);
    dp[u] = dq[u] = dzp;
    dp[U + u] = dq[U + u] = drp;
    dp[2 * U + u] = dhp;
    dq[2 * U + u] = dhp * r;
    dH = dh * z;
  }
};

// h_T (forward) or dh0 (backward) from the last state. Thread per (b, u).
template <typename R, class L = Layout>
struct Final {
  View<R, L> v;
  bool grad;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global(), U = v.a.U;
    if (e >= v.a.B * U) return;
    if (grad) v.a.dh0[e] = v.w(v.lay.dH)[e];
    else v.a.h_T[e] = v.state(e / U, v.a.T)[e % U];
  }
};

// Forward: hs, h_T, and in a.ws what the backward reads. Launch sizes: `block` threads per
// block. The forward part of the layout does not depend on `backward`.
template <class Exec, typename R>
void forward(Exec& ex, const Args<R>& a, int64_t block) {
  const View<R> v{a, Layout(a.B, a.T, a.U, false)};
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = 3 * U, rows = B * T;
  R* P = v.w(v.lay.P);
  R* Q = v.w(v.lay.Q);
  R* H = v.w(v.lay.H);
  const R* b_in = a.bias;
  const R* b_rec = a.bias ? a.bias + GU : nullptr;
  // P (BT,3U) = X (BT,F) W (F,3U) + b_in
  rnn::gemm(ex, Gemm<R>{P, GU, nullptr, 0, a.x, F, 1, a.W, GU, 1, b_in, rows, GU, F}, block);
  ex.launch(cover(B * U, block), InitState<R>{v, false});
  for (int64_t t = 0; t < T; ++t) {
    // Q_t (B,3U) = H_t (B,U) R (U,3U) + b_rec; rows of step t are T * 3U (resp. (T+1) U) apart
    int64_t hst = (T + 1) * U;
    const R* Ht = rnn::step_state(ex, H + t * U, hst, a.rmask, a.rscratch, B, U, block);
    rnn::gemm(ex, Gemm<R>{Q + t * GU, T * GU, nullptr, 0, Ht, hst, 1, a.Rk, GU, 1, b_rec, B, GU, U}, block);
    ex.launch(cover(B * U, block), Epilogue<R>{v, t});
  }
  ex.launch(cover(B * U, block), Final<R>{v, false});
}

// Backward after forward, a.ws (of workspace_size(B, T, U, true) elements) as forward left it;
// a.dx nullptr: no input gradient.
template <class Exec, typename R>
void backward(Exec& ex, const Args<R>& a, int64_t block) {
  const View<R> v{a, Layout(a.B, a.T, a.U, true)};
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = 3 * U;
  R* H = v.w(v.lay.H);
  R* dP = v.w(v.lay.dP);
  R* dQ = v.w(v.lay.dQ);
  R* dH = v.w(v.lay.dH);
  R* dHm = a.rmask ? a.rscratch + B * T * U : dH;  // (dq R^T) before the mask
  ex.launch(cover(B * U, block), InitState<R>{v, true});
  for (int64_t t = T - 1; t >= 0; --t) {
    ex.launch(cover(B * U, block), EpilogueBackward<R>{v, t});
    // dH (B,U) += dQ_t (B,3U) R^T (3U,U)
    rnn::gemm(ex, Gemm<R>{dHm, U, a.rmask ? nullptr : dH, U, dQ + t * GU, T * GU, 1, a.Rk, 1, GU, nullptr, B, U,
                          GU}, block);
    if (a.rmask) ex.launch(cover(B * U, block), rnn::AddMasked<R>{dH, dHm, a.rmask, B * U});
  }
  ex.launch(cover(B * U, block), Final<R>{v, true});
  rnn::weight_grads(ex, a.x, a.W, H, dP, dQ, a.dW, a.dx, a.dR, a.db, true, B, T, F, U, GU, block, a.rmask,
                    a.rscratch);
}

// Forward, then (a.dx != nullptr) backward.
template <class Exec, typename R>
void forward_backward(Exec& ex, const Args<R>& a, int64_t block) {
  forward(ex, a, block);
  if (a.dx) backward(ex, a, block);
}

}  // namespace faltung::cuda::gru
