// simd.hpp — private to cpp/src: one AVX2 register of T as a GCC vector (8 floats or
// 4 doubles), so kernels are written once for float and double; the same code with V = T
// serves channel remainders.
#pragma once
#include <immintrin.h>

#include <cstring>

namespace faltung::simd {

template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int width = 32 / sizeof(T);
};

template <class V, class T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
// v by value: with a reference GCC keeps a caller's accumulator array in memory.
template <class V, class T>
inline void store(T* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// One value in every lane, straight from memory (a load-port op; `V{} + x` would cost an
// add and a shuffle on the FMA ports).
inline Vec<float>::type bcast(const float* p) { return _mm256_broadcast_ss(p); }
inline Vec<double>::type bcast(const double* p) { return _mm256_broadcast_sd(p); }

}  // namespace faltung::simd
