// cpp/cuda/dense.cuh — a shared-memory tiled GEMM body and the Dense layer's forward
// (x W + b, activation fused into the epilogue) and backward (dx = dy W^T, dW = x^T dy,
// db = column sums of dy) built on it (see hd.cuh for the design). Oracle: cpp/src/dense.cpp
// (OpenBLAS) and cpp/src/activations.cpp.
//
// gemm() runs the product through the executor's BLAS when it has one (cuBLAS on the device,
// blas.hpp; the host harness's reference GEMM when asked), with the bias and activation as the
// Epilogue body after it; otherwise the tiled Gemm body, which stays as the portable fallback
// and the testable reference: the host harness checks its tiling, transposes and bounds
// against the CPU on every run.
//
// B batch, IN input features, OUT units; row-major throughout.
#pragma once
#include <cstdint>

#include "blas.hpp"
#include "elementwise.cuh"
#include "hd.cuh"

namespace faltung::cuda::dense {

constexpr int64_t kTile = 16;              // a block computes one kTile x kTile tile of C
constexpr int64_t kBlock = kTile * kTile;  // one thread per C entry of the tile

// C (M,N) = alpha op(A) op(B) + beta C (+ bias[n], then act), op = transpose or not.
// op(A)[m,k] = transA ? A[k lda + m] : A[m lda + k]; op(B)[k,n] = transB ? B[n ldb + k] : B[k ldb + n].
// beta == 0 never reads C (BLAS's rule: C may hold anything). bias (N) or nullptr. With an
// activation other than linear, z (M,N) or nullptr receives the pre-activation value
// (the backward of x-reading activations needs it) and C the activated one.
// Batched (Dot's batch_matmul): `batch` such products, the b-th on A + b sA, B + b sB, C (and z)
// + b sC, the same bias; the grid covers the tiles of every product.
template <typename T>
struct Gemm {
  int64_t M, N, K;
  const T* A;
  int64_t lda;
  bool transA;
  const T* Bm;
  int64_t ldb;
  bool transB;
  T* C;
  int64_t ldc;
  T alpha, beta;
  const T* bias;
  T* z;
  ew::ActSpec<T> act;
  int64_t batch = 1, sA = 0, sB = 0, sC = 0;

  // The block's tiles of op(A) and op(B), and each thread's running sum: the sum must outlive
  // a step (a step ends at a barrier), so it lives in the thread's slot here.
  struct Shared {
    T a[kTile][kTile + 1];  // +1: threads of a warp reading a column hit distinct banks
    T b[kTile][kTile + 1];
    T acc[kBlock];
  };
  int64_t k_tiles() const { return ceil_div(K, kTile); }
  int64_t steps() const { return 2 * k_tiles() + 2; }  // zero, (load, multiply) per k tile, store

  FALTUNG_HD void step(int64_t s, Thread th, Shared& sh) const {
    const int64_t tiles_n = (N + kTile - 1) / kTile, tiles = ((M + kTile - 1) / kTile) * tiles_n;
    const int64_t bi = th.block / tiles, tile = th.block % tiles;  // the product, its tile
    const T *A = this->A + bi * sA, *Bm = this->Bm + bi * sB;
    T *C = this->C + bi * sC, *z = this->z ? this->z + bi * sC : nullptr;
    const int64_t ty = th.thread / kTile, tx = th.thread % kTile;
    const int64_t m = (tile / tiles_n) * kTile + ty, n = (tile % tiles_n) * kTile + tx;
    const int64_t nk = (K + kTile - 1) / kTile;
    if (s == 0) {
      sh.acc[th.thread] = T(0);
    } else if (s <= 2 * nk) {
      const int64_t k0 = ((s - 1) / 2) * kTile;
      if (s % 2 == 1) {  // load: thread (ty, tx) brings op(A)[m, k0+tx] and op(B)[k0+ty, n]
        const int64_t ka = k0 + tx, kb = k0 + ty;
        sh.a[ty][tx] = (m < M && ka < K) ? (transA ? A[ka * lda + m] : A[m * lda + ka]) : T(0);
        sh.b[ty][tx] = (kb < K && n < N) ? (transB ? Bm[n * ldb + kb] : Bm[kb * ldb + n]) : T(0);
      } else {  // multiply: the row of the A tile by the column of the B tile (zeros pad the edge)
        T sum = sh.acc[th.thread];
        for (int64_t kk = 0; kk < kTile; ++kk) sum += sh.a[ty][kk] * sh.b[kk][tx];
        sh.acc[th.thread] = sum;
      }
    } else if (m < M && n < N) {  // epilogue
      T v = alpha * sh.acc[th.thread];
      if (beta != T(0)) v += beta * C[m * ldc + n];
      if (bias) v += bias[n];
      if (act.kind == Act::linear) {
        C[m * ldc + n] = v;
      } else {
        if (z) z[m * ldc + n] = v;
        C[m * ldc + n] = ew::act_forward(act, v);
      }
    }
  }
};

template <typename T>
inline ew::ActSpec<T> no_act() {
  return ew::ActSpec<T>{Act::linear, T(0), T(0), T(0), T(1), false};
}

// After a BLAS product in C (M,N): C += bias[n], then (act not linear) z = C, C = act(C), as
// Gemm's epilogue. Thread per element.
template <typename T>
struct Epilogue {
  T* C;
  int64_t ldc;
  const T* bias;
  T* z;
  ew::ActSpec<T> act;
  int64_t M, N;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= M * N) return;
    const int64_t i = (e / N) * ldc + e % N;
    const T v = bias ? C[i] + bias[e % N] : C[i];
    if (act.kind == Act::linear) {
      C[i] = v;
    } else {
      if (z) z[i] = v;
      C[i] = ew::act_forward(act, v);
    }
  }
};

// g through the executor's BLAS (ex.blas(), K > 0) and the Epilogue where g has a bias or an
// activation; else the tiled body (K = 0 writes beta C + bias, activated).
template <class Exec, typename T>
void gemm(Exec& ex, const Gemm<T>& g) {
  if (g.M <= 0 || g.N <= 0 || g.batch <= 0) return;
  if (ex.blas() && g.K > 0) {
    for (int64_t b = 0; b < g.batch; ++b) {  // a batched product (Dot): one BLAS call per product
      T* C = g.C + b * g.sC;
      ex.gemm(blas::RowGemm<T>{g.transA, g.transB, g.M, g.N, g.K, g.alpha, g.A + b * g.sA, g.lda,
                               g.Bm + b * g.sB, g.ldb, g.beta, C, g.ldc});
      if (g.bias || g.act.kind != Act::linear)
        ex.launch(cover(g.M * g.N, kBlock),
                  Epilogue<T>{C, g.ldc, g.bias, g.z ? g.z + b * g.sC : nullptr, g.act, g.M, g.N});
    }
    return;
  }
  ex.launch_shared(Geometry{g.batch * ceil_div(g.M, kTile) * ceil_div(g.N, kTile), kBlock}, g.steps(), g);
}

// dy (B,OUT) -> db (OUT), db[o] = sum_b dy[b,o] in row order (the CPU's order). Thread per
// column: adjacent threads read adjacent addresses of a row.
template <typename T>
struct ColumnSums {
  T* db;
  const T* dy;
  int64_t B, OUT;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t o = th.global();
    if (o >= OUT) return;
    T s = 0;
    for (int64_t b = 0; b < B; ++b) s += dy[b * OUT + o];
    db[o] = s;
  }
};

// x (B,IN), W (IN,OUT), bias (OUT) or nullptr -> y (B,OUT) = act(x W + bias), z (B,OUT) the
// pre-activation or nullptr (ignored for linear).
template <class Exec, typename T>
void forward(Exec& ex, T* y, T* z, const T* x, const T* W, const T* bias, int64_t B, int64_t IN, int64_t OUT,
             const ew::ActSpec<T>& act) {
  gemm(ex, Gemm<T>{B, OUT, IN, x, IN, false, W, OUT, false, y, OUT, T(1), T(0), bias, z, act});
}

// dy (B,OUT) the gradient of the pre-activation, x (B,IN), W (IN,OUT) -> dx (B,IN), dW (IN,OUT),
// db (OUT); a nullptr skips that gradient. K = 0 (B = 0 for dW) gives zeros, as the CPU.
template <class Exec, typename T>
void backward(Exec& ex, T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t B, int64_t IN,
              int64_t OUT, int64_t block) {
  if (dx) gemm(ex, Gemm<T>{B, IN, OUT, dy, OUT, false, W, OUT, true, dx, IN, T(1), T(0), nullptr, nullptr,
                           no_act<T>()});
  if (dW) gemm(ex, Gemm<T>{IN, OUT, B, x, IN, true, dy, OUT, false, dW, OUT, T(1), T(0), nullptr, nullptr,
                           no_act<T>()});
  if (db) ex.launch(cover(OUT, block), ColumnSums<T>{db, dy, B, OUT});
}

}  // namespace faltung::cuda::dense
