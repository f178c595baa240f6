// faltung/dense.hpp — the fully connected layer: out = inp @ weight + bias.
//
// B batch (all leading axes of a rank > 2 input flattened), IN input features,
// OUT output features (units). Layouts as Keras: weight (IN,OUT), bias (OUT).
// GEMM goes through faltung::parallel_gemm (OpenBLAS, split over faltung's threads).
#pragma once
#include <cstdint>

namespace faltung {

// inp (B,IN), weight (IN,OUT), bias (OUT) or nullptr -> out (B,OUT). Overwrites out.
// The bias is written into out first and the GEMM accumulates onto it (beta = 1), so the
// bias add costs no second pass over out.
template <typename T>
void dense_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t B, int64_t IN,
                   int64_t OUT);

// dout (B,OUT), inp (B,IN), weight (IN,OUT) -> dinp (B,IN) = dout @ weight^T,
// dweight (IN,OUT) = inp^T @ dout, dbias (OUT) = column sums of dout.
// Overwrites the gradients; a nullptr skips that gradient.
template <typename T>
void dense_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                    int64_t B, int64_t IN, int64_t OUT);

// Naive triple-loop oracles of the two above (tests, fallback); same contracts.
template <typename T>
void dense_forward_naive(T* out, const T* inp, const T* weight, const T* bias, int64_t B,
                         int64_t IN, int64_t OUT);
template <typename T>
void dense_backward_naive(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                          const T* weight, int64_t B, int64_t IN, int64_t OUT);

}  // namespace faltung
