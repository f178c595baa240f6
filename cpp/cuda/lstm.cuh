// cpp/cuda/lstm.cuh — LSTM forward and backward: the fused gate epilogues of each step around
// its recurrent GEMM, as kernel bodies and a launch sequence (see hd.cuh for the design).
// Oracle: cpp/src/rnn.cpp / rnn_backward.cpp through faltung.ops.lstm_forward/lstm_backward.
//
// B batch, T steps, F input features, U units, 4U gate columns (Keras's order i, f, c, o).
// x (B,T,F), W (F,4U), R (U,4U), bias (4U) or nullptr, h0, c0 (B,U) or nullptr (zeros),
// mask (B,T) bytes (0 = masked: states carried, output the carried h or 0 with
// zero_output_for_mask) or nullptr; hs (B,T,U), h_T, c_T (B,U).
//   z = x_t W + b + h_{t-1} R;  i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_c)
//   c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
// This slice covers Keras's default activations (tanh, sigmoid), a recurrent dropout mask (rnn_common.cuh),
// go_backwards false; the CPU kernels cover the rest.
//
// Launches. Forward: P = X W + b (one GEMM over all B T rows); H0/C0 from h0/c0; then per step
// t: Z_t = P_t + H_t R (GEMM), the gate epilogue (thread per (b, u)) writes the gates, c_t,
// h_t and hs. Backward, per step t = T-1..0: the epilogue backward (thread per (b, u)) turns
// dh, dc into dZ_t and the carried dH, dC; then dH += dZ_t R^T (GEMM). After the loop, over
// all B T rows: dW = X^T dZ, dR = Hprev^T dZ, db = column sums of dZ, dx = dZ W^T.
// The GEMM is rnn_common.cuh's plain body (see there).
#pragma once
#include <cstdint>

#include "rnn_common.cuh"

namespace faltung::cuda::lstm {

using rnn::Gemm;
using rnn::hd_tanh;
using rnn::sigmoid;

template <typename R>
struct Args {
  int64_t B, T, F, U;
  bool zero_output_for_mask;
  const R *x, *W, *Rk, *bias, *h0, *c0;
  const uint8_t* mask;
  R *hs, *h_T, *c_T;
  // backward (dx == nullptr: forward_backward runs the forward only, backward skips the input
  // gradient); dhs, dh_T, dc_T may be nullptr (zero)
  const R *dhs, *dh_T, *dc_T;
  R *dx, *dW, *dR, *db, *dh0, *dc0;
  R* ws;  // workspace_size(...) elements, laid out by Layout
  // recurrent dropout (rnn_common.cuh): m (B,U) or nullptr, and with it scratch of B (T+1) U
  const R* rmask;
  R* rscratch;
};

// The workspace layout, here and nowhere else.
struct Layout {
  int64_t P, Z, G, H, C, Ac, dZ, dH, dC, total;
  Layout(int64_t B, int64_t T, int64_t U, bool backward) {
    const int64_t rows = B * T, GU = 4 * U;
    P = 0;                                   // (B,T,4U) x W + b
    Z = P + rows * GU;                       // (B,T,4U) preactivations
    G = Z + rows * GU;                       // (B,T,4U) gates i f g o
    H = G + rows * GU;                       // (B,T+1,U) h_{t-1} at [b, t], h_T at [b, T]
    C = H + B * (T + 1) * U;                 // (B,T+1,U) c likewise
    Ac = C + B * (T + 1) * U;                // (B,T,U)   tanh(c_t)
    dZ = Ac + rows * U;                      // (B,T,4U)  backward only
    dH = dZ + (backward ? rows * GU : 0);    // (B,U)
    dC = dH + (backward ? B * U : 0);        // (B,U)
    total = dC + (backward ? B * U : 0);
  }
};
inline int64_t workspace_size(int64_t B, int64_t T, int64_t U, bool backward) {
  return Layout(B, T, U, backward).total;
}

template <typename R>
struct View {
  Args<R> a;
  Layout lay;
  FALTUNG_HD R* w(int64_t off) const { return a.ws + off; }
  FALTUNG_HD R* state(int64_t off, int64_t b, int64_t t) const { return a.ws + off + (b * (a.T + 1) + t) * a.U; }
  FALTUNG_HD R* gates(int64_t off, int64_t b, int64_t t) const { return a.ws + off + (b * a.T + t) * 4 * a.U; }
  FALTUNG_HD bool live(int64_t b, int64_t t) const { return !a.mask || a.mask[b * a.T + t]; }
};

// H[:, 0] = h0, C[:, 0] = c0 (zeros when absent). Thread per (b, u).
template <typename R>
struct InitState {
  View<R> v;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global(), U = v.a.U;
    if (e >= v.a.B * U) return;
    const int64_t b = e / U, u = e % U;
    v.state(v.lay.H, b, 0)[u] = v.a.h0 ? v.a.h0[e] : R(0);
    v.state(v.lay.C, b, 0)[u] = v.a.c0 ? v.a.c0[e] : R(0);
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
    const R h_prev = v.state(v.lay.H, b, t)[u], c_prev = v.state(v.lay.C, b, t)[u];
    R* hs = a.hs + (b * a.T + t) * U;
    if (!v.live(b, t)) {
      v.state(v.lay.H, b, t + 1)[u] = h_prev;
      v.state(v.lay.C, b, t + 1)[u] = c_prev;
      hs[u] = a.zero_output_for_mask ? R(0) : h_prev;
      return;
    }
    const R* z = v.gates(v.lay.Z, b, t);
    R* g = v.gates(v.lay.G, b, t);
    const R i = sigmoid(z[u]), f = sigmoid(z[U + u]), gg = hd_tanh(z[2 * U + u]), o = sigmoid(z[3 * U + u]);
    g[u] = i, g[U + u] = f, g[2 * U + u] = gg, g[3 * U + u] = o;
    const R c = f * c_prev + i * gg, ac = hd_tanh(c);
    v.w(v.lay.Ac)[(b * a.T + t) * U + u] = ac;
    v.state(v.lay.C, b, t + 1)[u] = c;
    v.state(v.lay.H, b, t + 1)[u] = hs[u] = o * ac;
  }
};

// h_T, c_T from the last state. Thread per (b, u).
template <typename R>
struct Final {
  View<R> v;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global(), U = v.a.U;
    if (e >= v.a.B * U) return;
    const int64_t b = e / U, u = e % U;
    v.a.h_T[e] = v.state(v.lay.H, b, v.a.T)[u];
    v.a.c_T[e] = v.state(v.lay.C, b, v.a.T)[u];
  }
};

// dH, dC from dh_T, dc_T (zeros when absent). Thread per (b, u).
template <typename R>
struct InitGrad {
  View<R> v;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= v.a.B * v.a.U) return;
    v.w(v.lay.dH)[e] = v.a.dh_T ? v.a.dh_T[e] : R(0);
    v.w(v.lay.dC)[e] = v.a.dc_T ? v.a.dc_T[e] : R(0);
  }
};

// Step t's epilogue backward: dh = dH + dhs_t, dc = dC; dZ_t, and the carried dH (0, the GEMM
// adds dZ_t R^T next) and dC = dc f. At a masked step dZ_t = 0 and dh (with dhs_t unless the
// output was zeros), dc pass to step t - 1. Thread per (b, u).
template <typename R>
struct EpilogueBackward {
  View<R> v;
  int64_t t;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<R>& a = v.a;
    const int64_t e = th.global(), U = a.U;
    if (e >= a.B * U) return;
    const int64_t b = e / U, u = e % U;
    R* dz = v.gates(v.lay.dZ, b, t);
    R& dH = v.w(v.lay.dH)[e];
    R& dC = v.w(v.lay.dC)[e];
    const R dout = a.dhs ? a.dhs[(b * a.T + t) * U + u] : R(0);
    if (!v.live(b, t)) {
      dz[u] = dz[U + u] = dz[2 * U + u] = dz[3 * U + u] = R(0);
      if (!a.zero_output_for_mask) dH += dout;
      return;
    }
    const R* g = v.gates(v.lay.G, b, t);
    const R i = g[u], f = g[U + u], gg = g[2 * U + u], o = g[3 * U + u];
    const R ac = v.w(v.lay.Ac)[(b * a.T + t) * U + u], c_prev = v.state(v.lay.C, b, t)[u];
    const R dh = dH + dout;
    const R dc = dC + dh * o * (R(1) - ac * ac);
    dz[u] = dc * gg * i * (R(1) - i);
    dz[U + u] = dc * c_prev * f * (R(1) - f);
    dz[2 * U + u] = dc * i * (R(1) - gg * gg);
    dz[3 * U + u] = dh * ac * o * (R(1) - o);
    dH = R(0);
    dC = dc * f;
  }
};

// dh0 = dH, dc0 = dC. Thread per (b, u).
template <typename R>
struct FinalGrad {
  View<R> v;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= v.a.B * v.a.U) return;
    v.a.dh0[e] = v.w(v.lay.dH)[e];
    v.a.dc0[e] = v.w(v.lay.dC)[e];
  }
};

// Forward: hs, h_T, c_T, and in a.ws what the backward reads. Launch sizes: `block` threads per
// block. The forward part of the layout does not depend on `backward`.
template <class Exec, typename R>
void forward(Exec& ex, const Args<R>& a, int64_t block) {
  const View<R> v{a, Layout(a.B, a.T, a.U, false)};
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = 4 * U, rows = B * T;
  R* P = v.w(v.lay.P);
  R* Z = v.w(v.lay.Z);
  R* H = v.w(v.lay.H);
  // P (BT,4U) = X (BT,F) W (F,4U) + b
  rnn::gemm(ex, Gemm<R>{P, GU, nullptr, 0, a.x, F, 1, a.W, GU, 1, a.bias, rows, GU, F}, block);
  ex.launch(cover(B * U, block), InitState<R>{v});
  for (int64_t t = 0; t < T; ++t) {
    // Z_t (B,4U) = P_t + H_t (B,U) R (U,4U); rows of step t are T * 4U (resp. (T+1) U) apart
    int64_t hst = (T + 1) * U;
    const R* Ht = rnn::step_state(ex, H + t * U, hst, a.rmask, a.rscratch, B, U, block);
    rnn::gemm(ex, Gemm<R>{Z + t * GU, T * GU, P + t * GU, T * GU, Ht, hst, 1, a.Rk, GU, 1, nullptr, B, GU, U},
              block);
    ex.launch(cover(B * U, block), Epilogue<R>{v, t});
  }
  ex.launch(cover(B * U, block), Final<R>{v});
}

// Backward after forward, a.ws (of workspace_size(B, T, U, true) elements) as forward left it;
// a.dx nullptr: no input gradient.
template <class Exec, typename R>
void backward(Exec& ex, const Args<R>& a, int64_t block) {
  const View<R> v{a, Layout(a.B, a.T, a.U, true)};
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = 4 * U;
  R* H = v.w(v.lay.H);
  R* dZ = v.w(v.lay.dZ);
  R* dH = v.w(v.lay.dH);
  R* dHm = a.rmask ? a.rscratch + B * T * U : dH;  // (dq R^T) before the mask
  ex.launch(cover(B * U, block), InitGrad<R>{v});
  for (int64_t t = T - 1; t >= 0; --t) {
    ex.launch(cover(B * U, block), EpilogueBackward<R>{v, t});
    // dH (B,U) += dZ_t (B,4U) R^T (4U,U)
    rnn::gemm(ex, Gemm<R>{dHm, U, a.rmask ? nullptr : dH, U, dZ + t * GU, T * GU, 1, a.Rk, 1, GU, nullptr, B, U,
                          GU}, block);
    if (a.rmask) ex.launch(cover(B * U, block), rnn::AddMasked<R>{dH, dHm, a.rmask, B * U});
  }
  ex.launch(cover(B * U, block), FinalGrad<R>{v});
  rnn::weight_grads(ex, a.x, a.W, H, dZ, dZ, a.dW, a.dx, a.dR, a.db, false, B, T, F, U, GU, block, a.rmask,
                    a.rscratch);
}

// Forward, then (a.dx != nullptr) backward.
template <class Exec, typename R>
void forward_backward(Exec& ex, const Args<R>& a, int64_t block) {
  forward(ex, a, block);
  if (a.dx) backward(ex, a, block);
}

}  // namespace faltung::cuda::lstm
