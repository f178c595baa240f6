// faltung/embedding.hpp — the embedding lookup: rows of a table picked by integer index.
//
// N number of indices (every axis of the index array flattened), V input_dim (rows of the
// table, the vocabulary size), D output_dim. Layouts as Keras: table (V,D), indices (N)
// int32, out (N,D) (reshaped by the caller to indices.shape + (D,)).
// Every index must lie in [0, V): both kernels check all of them before touching memory
// and throw std::invalid_argument naming the first bad one (pybind11: ValueError).
#pragma once
#include <cstdint>

namespace faltung {

// Throws std::invalid_argument ("embedding: index 12 at position 5 of `indices` is outside
// [0, input_dim=10)") unless every idx[i] lies in [0, V). `op` prefixes the message.
void embedding_check_indices(const int32_t* idx, int64_t N, int64_t V, const char* op);

// table (V,D), idx (N) -> out (N,D): out[i,:] = table[idx[i],:]. Overwrites out.
template <typename T>
void embedding_forward(T* out, const int32_t* idx, const T* table, int64_t N, int64_t V,
                       int64_t D);

// dout (N,D), idx (N) -> dtable (V,D): dtable[v,:] = sum of dout[i,:] over i with idx[i] == v
// (rows never indexed are 0; duplicated indices accumulate). Overwrites dtable.
// The sum for each row runs in index order i = 0..N-1 whatever the thread count, so the
// result is the same to the bit on 1 or n threads.
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* idx, int64_t N, int64_t V,
                        int64_t D);

// Single-threaded loop oracles of the two above (tests); same contracts.
template <typename T>
void embedding_forward_naive(T* out, const int32_t* idx, const T* table, int64_t N, int64_t V,
                             int64_t D);
template <typename T>
void embedding_backward_naive(T* dtable, const T* dout, const int32_t* idx, int64_t N,
                              int64_t V, int64_t D);

}  // namespace faltung
