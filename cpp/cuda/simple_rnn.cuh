// cpp/cuda/simple_rnn.cuh — SimpleRNN forward and backward: the fused epilogue of each step
// around its recurrent GEMM, as kernel bodies and a launch sequence (see hd.cuh for the design).
// Oracle: cpp/src/rnn.cpp / rnn_backward.cpp through faltung.ops.simple_rnn_forward/backward.
//
// B batch, T steps, F input features, U units. x (B,T,F), W (F,U), R (U,U), bias (U) or
// nullptr, h0 (B,U) or nullptr (zeros), mask (B,T) bytes (0 = masked: state carried, output
// the carried h or 0 with zero_output_for_mask) or nullptr; hs (B,T,U), h_T (B,U).
//   h_t = tanh(x_t W + b + h_{t-1} R)
// This slice covers tanh, a recurrent dropout mask (rnn_common.cuh), go_backwards false.
//
// Launches: P = X W + b (one GEMM over all B T rows); H_0 from h0; per step t: Z_t = P_t + H_t R
// (GEMM), the epilogue (thread per (b, u)). Backward per step t = T-1..0: the epilogue backward
// turns dh into dZ_t (the carried dH is 0), then dH += dZ_t R^T (GEMM); after the loop
// rnn::weight_grads (dW, dx, dR, db).
#pragma once
#include <cstdint>

#include "rnn_common.cuh"

namespace faltung::cuda::simple_rnn {

template <typename R>
struct Args {
  int64_t B, T, F, U;
  bool zero_output_for_mask;
  const R *x, *W, *Rk, *bias, *h0;
  const uint8_t* mask;
  R *hs, *h_T;
  const R *dhs, *dh_T;          // backward inputs, or nullptr (zero)
  R *dx, *dW, *dR, *db, *dh0;   // dx == nullptr: forward_backward runs the forward only,
                                //   backward skips the input gradient
  R* ws;                        // workspace_size(...) elements
  // recurrent dropout (rnn_common.cuh): m (B,U) or nullptr, and with it scratch of B (T+1) U
  const R* rmask;
  R* rscratch;
};

// The workspace layout, here and nowhere else.
struct Layout {
  int64_t P, Z, H, dZ, dH, total;
  Layout(int64_t B, int64_t T, int64_t U, bool backward) {
    const int64_t rows = B * T;
    P = 0;                                  // (B,T,U) x W + b
    Z = P + rows * U;                       // (B,T,U) preactivations
    H = Z + rows * U;                       // (B,T+1,U) h_{t-1} at [b, t], h_T at [b, T]
    dZ = H + B * (T + 1) * U;               // (B,T,U) backward only
    dH = dZ + (backward ? rows * U : 0);    // (B,U)
    total = dH + (backward ? B * U : 0);
  }
};
inline int64_t workspace_size(int64_t B, int64_t T, int64_t U, bool backward) {
  return Layout(B, T, U, backward).total;
}

// One step's epilogue (forward, or backward with `grad`), and the first/last state copies
// (step -1: H_0 from h0 or dH from dh_T; step T: h_T or dh0). Thread per (b, u).
template <typename R>
struct Step {
  Args<R> a;
  Layout lay;
  int64_t t;
  bool grad;
  FALTUNG_HD R* state(int64_t b, int64_t s) const { return a.ws + lay.H + (b * (a.T + 1) + s) * a.U; }
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global(), U = a.U;
    if (e >= a.B * U) return;
    const int64_t b = e / U, u = e % U, r = (b * a.T + t) * U + u;  // r: element (b, t, u)
    R* dH = grad ? a.ws + lay.dH + e : nullptr;  // (dH exists in the backward layout only)
    if (t < 0) {
      if (grad) *dH = a.dh_T ? a.dh_T[e] : R(0);
      else state(b, 0)[u] = a.h0 ? a.h0[e] : R(0);
      return;
    }
    if (t == a.T) {
      if (grad) a.dh0[e] = *dH;
      else a.h_T[e] = state(b, a.T)[u];
      return;
    }
    const bool live = !a.mask || a.mask[b * a.T + t];
    if (!grad) {
      const R h = live ? rnn::hd_tanh(a.ws[lay.Z + r]) : state(b, t)[u];
      state(b, t + 1)[u] = h;
      a.hs[r] = live || !a.zero_output_for_mask ? h : R(0);
      return;
    }
    const R dout = a.dhs ? a.dhs[r] : R(0);
    if (!live) {
      a.ws[lay.dZ + r] = R(0);
      if (!a.zero_output_for_mask) *dH += dout;
      return;
    }
    const R h = state(b, t + 1)[u];
    a.ws[lay.dZ + r] = (*dH + dout) * (R(1) - h * h);
    *dH = R(0);
  }
};

// Forward: hs, h_T, and in a.ws what the backward reads (the forward part of the layout does
// not depend on `backward`).
template <class Exec, typename R>
void forward(Exec& ex, const Args<R>& a, int64_t block) {
  const Layout lay(a.B, a.T, a.U, false);
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, rows = B * T;
  R *P = a.ws + lay.P, *Z = a.ws + lay.Z, *H = a.ws + lay.H;
  const Geometry per_unit = cover(B * U, block);
  using rnn::Gemm;
  // P (BT,U) = X (BT,F) W (F,U) + b
  rnn::gemm(ex, Gemm<R>{P, U, nullptr, 0, a.x, F, 1, a.W, U, 1, a.bias, rows, U, F}, block);
  ex.launch(per_unit, Step<R>{a, lay, -1, false});
  for (int64_t t = 0; t < T; ++t) {
    // Z_t (B,U) = P_t + H_t (B,U) R (U,U)
    int64_t hst = (T + 1) * U;
    const R* Ht = rnn::step_state(ex, H + t * U, hst, a.rmask, a.rscratch, B, U, block);
    rnn::gemm(ex, Gemm<R>{Z + t * U, T * U, P + t * U, T * U, Ht, hst, 1, a.Rk, U, 1, nullptr, B, U, U}, block);
    ex.launch(per_unit, Step<R>{a, lay, t, false});
  }
  ex.launch(per_unit, Step<R>{a, lay, T, false});
}

// Backward after forward, a.ws (of workspace_size(B, T, U, true) elements) as forward left it;
// a.dx nullptr: no input gradient.
template <class Exec, typename R>
void backward(Exec& ex, const Args<R>& a, int64_t block) {
  const Layout lay(a.B, a.T, a.U, true);
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U;
  R *H = a.ws + lay.H, *dZ = a.ws + lay.dZ, *dH = a.ws + lay.dH;
  R* dHm = a.rmask ? a.rscratch + B * T * U : dH;  // (dq R^T) before the mask
  const Geometry per_unit = cover(B * U, block);
  using rnn::Gemm;
  ex.launch(per_unit, Step<R>{a, lay, -1, true});
  for (int64_t t = T - 1; t >= 0; --t) {
    ex.launch(per_unit, Step<R>{a, lay, t, true});
    // dH (B,U) += dZ_t (B,U) R^T (U,U)
    rnn::gemm(ex, Gemm<R>{dHm, U, a.rmask ? nullptr : dH, U, dZ + t * U, T * U, 1, a.Rk, 1, U, nullptr, B, U, U},
              block);
    if (a.rmask) ex.launch(per_unit, rnn::AddMasked<R>{dH, dHm, a.rmask, B * U});
  }
  ex.launch(per_unit, Step<R>{a, lay, T, true});
  rnn::weight_grads(ex, a.x, a.W, H, dZ, dZ, a.dW, a.dx, a.dR, a.db, false, B, T, F, U, U, block, a.rmask,
                    a.rscratch);
}

// Forward, then (a.dx != nullptr) backward.
template <class Exec, typename R>
void forward_backward(Exec& ex, const Args<R>& a, int64_t block) {
  forward(ex, a, block);
  if (a.dx) backward(ex, a, block);
}

}  // namespace faltung::cuda::simple_rnn
