// cpp/cuda/rnn_common.cuh — what the recurrent families (lstm.cuh, gru.cuh) share: the gate
// gate activations, the GEMM and the column sum around their fused gate epilogues.
// The GEMM is a plain body (thread per output element) on both executors, so that the host
// harness checks each family's whole launch sequence; on the device it stands in for cuBLAS,
// which replaces it (same operands and strides) once the backend links cuBLAS (CMakeLists.txt).
#pragma once
#include <algorithm>
#include <cstdint>

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

// dW (F,GU) = X^T dP and (unless dx is nullptr) dx (rows,F) = dP W^T, over all rows = B T.
template <class Exec, typename R>
void input_grads(Exec& ex, const R* x, const R* W, const R* dP, R* dW, R* dx, int64_t rows, int64_t F, int64_t GU,
                 int64_t block) {
  ex.launch(cover(F * GU, block), Gemm<R>{dW, GU, nullptr, 0, x, 1, F, dP, GU, 1, nullptr, F, GU, rows});
  if (dx) ex.launch(cover(rows * F, block), Gemm<R>{dx, F, nullptr, 0, dP, GU, 1, W, 1, GU, nullptr, rows, F, GU});
}

// The gradients after the backward loop, over all B T rows, for GU = gates * U columns:
// dW (F,GU) = X^T dP, dx (B,T,F) = dP W^T, dR (U,GU) = sum over b of H_b[0:T]^T dQ_b (H (B,T+1,U)
// holds h_{t-1} at [b, t]: one GEMM per sample), db = column sums of dP (and, for a separate
// recurrent bias, of dQ into db + GU). LSTM passes dZ as both dP and dQ. dx nullptr: not wanted.
template <class Exec, typename R>
void weight_grads(Exec& ex, const R* x, const R* W, const R* H, const R* dP, const R* dQ, R* dW, R* dx, R* dR,
                  R* db, bool db_rec, int64_t B, int64_t T, int64_t F, int64_t U, int64_t GU, int64_t block) {
  const int64_t rows = B * T;
  input_grads(ex, x, W, dP, dW, dx, rows, F, GU, block);
  // (B = 0: one product over no rows, which writes the zeros the samples' sum is)
  for (int64_t b = 0; b < std::max<int64_t>(B, 1); ++b)
    ex.launch(cover(U * GU, block), Gemm<R>{dR, GU, b ? dR : nullptr, GU, H + b * (T + 1) * U, 1, U,
                                            dQ + b * T * GU, GU, 1, nullptr, U, GU, B ? T : 0});
  if (!db) return;
  ex.launch(cover(GU, block), ColumnSum<R>{db, dP, rows, GU});
  if (db_rec) ex.launch(cover(GU, block), ColumnSum<R>{db + GU, dQ, rows, GU});
}

}  // namespace faltung::cuda::rnn
