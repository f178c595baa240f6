// cpp/cuda/rnn_common.cuh — what the recurrent families (lstm.cuh, gru.cuh) share: the gate
// gate activations, the GEMM and the column sum around their fused gate epilogues.
// gemm() runs each product through the executor's BLAS when it has one (cuBLAS on the device,
// blas.hpp; the host harness's reference GEMM when asked), else the Gemm body (thread per output
// element), which stays as the fallback and the oracle.
#pragma once
#include <algorithm>
#include <cstdint>

#include "blas.hpp"
#include "hd.cuh"

namespace faltung::cuda::rnn {

template <typename R> FALTUNG_HD inline R sigmoid(R z) { return R(1) / (R(1) + hd_exp(-z)); }
FALTUNG_HD inline float hd_tanh(float z) { return tanhf(z); }
FALTUNG_HD inline double hd_tanh(double z) { return tanh(z); }

// out (M,N) = add (M,N) (or 0) + sum_k A(i,k) B(k,j), every operand given by its element
// strides (row, column), so transposes are strides. Thread per output element. `out` may be
// `add` (each thread reads only its own element of it).
template <typename R>
struct Gemm {
  R* out;
  int64_t ors;
  const R* add;
  int64_t adrs;
  const R* A;
  int64_t ars, acs;
  const R* Bm;
  int64_t brs, bcs;
  const R* col_bias;  // (N) added to every row, or nullptr
  int64_t M, N, K;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= M * N) return;
    const int64_t i = e / N, j = e % N;
    R s = add ? add[i * adrs + j] : R(0);
    if (col_bias) s += col_bias[j];
    for (int64_t k = 0; k < K; ++k) s += A[i * ars + k * acs] * Bm[k * brs + j * bcs];
    out[i * ors + j] = s;
  }
};

// Gemm g through the executor's BLAS (ex.blas()): a K = 0 Gemm first writes out = add + col_bias
// where the product must add to something other than out itself, then the product accumulates
// (beta 1) or overwrites (beta 0). Without BLAS, for K = 0 (the prologue alone is the result),
// operands whose strides BLAS cannot express and an `add` that is `out` read with other strides,
// the Gemm body.
template <class Exec, typename R>
void gemm(Exec& ex, const Gemm<R>& g, int64_t block) {
  const blas::Operand a = blas::operand(g.ars, g.acs, g.M, g.K), b = blas::operand(g.brs, g.bcs, g.K, g.N);
  const bool odd_add = g.add == g.out && g.adrs != g.ors;
  if (!ex.blas() || g.M <= 0 || g.N <= 0 || g.K <= 0 || a.ld < 0 || b.ld < 0 || odd_add) {
    ex.launch(cover(g.M * g.N, block), g);
    return;
  }
  if (g.col_bias || (g.add && g.add != g.out))
    ex.launch(cover(g.M * g.N, block), Gemm<R>{g.out, g.ors, g.add, g.adrs, nullptr, 0, 0, nullptr, 0, 0, g.col_bias,
                                               g.M, g.N, 0});
  const int64_t ldc = g.M == 1 && g.ors < g.N ? g.N : g.ors;
  ex.gemm(blas::RowGemm<R>{a.trans, b.trans, g.M, g.N, g.K, R(1), g.A, a.ld, g.Bm, b.ld,
                           g.add || g.col_bias ? R(1) : R(0), g.out, ldc});
}

// out (cols) = sum over the rows of in (rows, cols). Thread per column.
template <typename R>
struct ColumnSum {
  R* out;
  const R* in;
  int64_t rows, cols;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t j = th.global();
    if (j >= cols) return;
    R s = 0;
    for (int64_t r = 0; r < rows; ++r) s += in[r * cols + j];
    out[j] = s;
  }
};

// Keras's recurrent dropout, as the CPU kernels apply it (cpp/src/rnn.cpp): a mask m (B,U) fixed
// across time scales h_{t-1} in the recurrent product only (q = (h m) R; the gates' other reads
// of h take it unmasked), so the backward adds (dq R^T) m to dh and dR sums (h m)^T dq.
// out (B,n,U) = in (B,n,U), a sample's rows `in_stride` apart, times m of its sample. Thread per
// element.
template <typename R>
struct MaskStates {
  R* out;
  const R* in;
  int64_t in_stride;
  const R* m;
  int64_t B, n, U;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global(), row = n * U;
    if (e >= B * row) return;
    const int64_t b = e / row, k = e % row;
    out[e] = in[b * in_stride + k] * m[b * U + k % U];
  }
};

// dh (B,U) += d (B,U) m. Thread per element.
template <typename R>
struct AddMasked {
  R* dh;
  const R* d;
  const R* m;
  int64_t n;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e < n) dh[e] += d[e] * m[e];
  }
};

// The rows the step GEMM reads for h_{t-1}: H[:, t] (rows `stride` apart), or without a mask
// (m nullptr) those, else h_{t-1} m in scratch (B,U); stride set to the rows' distance.
template <class Exec, typename R>
const R* step_state(Exec& ex, const R* Ht, int64_t& stride, const R* m, R* scratch, int64_t B, int64_t U,
                    int64_t block) {
  if (!m) return Ht;
  ex.launch(cover(B * U, block), MaskStates<R>{scratch, Ht, stride, m, B, 1, U});
  stride = U;
  return scratch;
}

// dW (F,GU) = X^T dP and (unless dx is nullptr) dx (rows,F) = dP W^T, over all rows = B T.
template <class Exec, typename R>
void input_grads(Exec& ex, const R* x, const R* W, const R* dP, R* dW, R* dx, int64_t rows, int64_t F, int64_t GU,
                 int64_t block) {
  rnn::gemm(ex, Gemm<R>{dW, GU, nullptr, 0, x, 1, F, dP, GU, 1, nullptr, F, GU, rows}, block);
  if (dx) rnn::gemm(ex, Gemm<R>{dx, F, nullptr, 0, dP, GU, 1, W, 1, GU, nullptr, rows, F, GU}, block);
}

// The gradients after the backward loop, over all B T rows, for GU = gates * U columns:
// dR (U,N) with rows ldr apart = sum over samples b and steps t < T of A[b,t]^T Q[b,t]: A's rows
// (U long) at b sa + t U, Q's (N long) at b sq + t lq. One product per sample (K = T) or per step
// (K = B), whichever are fewer launches; B or T = 0: one product over no rows (the zeros the sum is).
template <class Exec, typename R>
void sum_over_steps(Exec& ex, R* dR, int64_t ldr, const R* A, int64_t sa, const R* Q, int64_t sq, int64_t lq,
                    int64_t B, int64_t T, int64_t U, int64_t N, int64_t block) {
  const bool per_step = T < B;
  const int64_t n = std::max<int64_t>(per_step ? T : B, 1), K = B && T ? (per_step ? B : T) : 0;
  for (int64_t i = 0; i < n; ++i) {
    // per sample: A_b^T (U,T) Q_b (T,N); per step: A[:, t]^T (U,B) Q[:, t] (B,N)
    const R* a = A + i * (per_step ? U : sa);
    const R* q = Q + i * (per_step ? lq : sq);
    rnn::gemm(ex, Gemm<R>{dR, ldr, i ? dR : nullptr, ldr, a, 1, per_step ? sa : U, q, per_step ? sq : lq, 1, nullptr,
                          U, N, K}, block);
  }
}

// dW (F,GU) = X^T dP, dx (B,T,F) = dP W^T, dR (U,GU) = sum over b of H_b[0:T]^T dQ_b (H (B,T+1,U)
// holds h_{t-1} at [b, t]; with a recurrent dropout mask m, h m: MaskStates into `scratch`
// (B,T,U) first), db = column sums of dP (and, for a separate recurrent bias, of dQ into
// db + GU). LSTM passes dZ as both dP and dQ. dx nullptr: not wanted.
template <class Exec, typename R>
void weight_grads(Exec& ex, const R* x, const R* W, const R* H, const R* dP, const R* dQ, R* dW, R* dx, R* dR,
                  R* db, bool db_rec, int64_t B, int64_t T, int64_t F, int64_t U, int64_t GU, int64_t block,
                  const R* m = nullptr, R* scratch = nullptr) {
  const int64_t rows = B * T;
  input_grads(ex, x, W, dP, dW, dx, rows, F, GU, block);
  int64_t sh = (T + 1) * U;
  if (m) {
    ex.launch(cover(B * T * U, block), MaskStates<R>{scratch, H, sh, m, B, T, U});
    H = scratch, sh = T * U;
  }
  sum_over_steps(ex, dR, GU, H, sh, dQ, T * GU, GU, B, T, U, GU, block);
  if (!db) return;
  ex.launch(cover(GU, block), ColumnSum<R>{db, dP, rows, GU});
  if (db_rec) ex.launch(cover(GU, block), ColumnSum<R>{db + GU, dQ, rows, GU});
}

}  // namespace faltung::cuda::rnn
