// simd.hpp — private to cpp/src: one vector register of T as a GCC vector, so kernels are
// written once for float and double and for every CPU level; the same code with V = T serves
// channel remainders.
//
// The register width follows the instruction set the file is compiled for (CMakeLists.txt
// builds the core once per CPU level and faltung._core picks one at import):
//   AVX-512F (x86-64-v4)   64 bytes: 16 floats / 8 doubles, 32 registers
//   AVX (x86-64-v3)        32 bytes:  8 floats / 4 doubles, 16 registers
//   otherwise              16 bytes:  4 floats / 2 doubles (SSE2 on the x86-64 baseline,
//                          NEON on aarch64, or plain scalar code GCC splits the vector into)
// A 32-byte vector on SSE2 would compile too, but every operation would take two registers,
// and the direct convolution's 12-accumulator block would no longer fit in 16 registers.
#pragma once
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

namespace faltung::simd {

#if defined(__AVX512F__)
constexpr int kBytes = 64;
#elif defined(__AVX__)
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;
#endif

template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(kBytes)));
  static constexpr int width = kBytes / sizeof(T);
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
#if defined(__AVX512F__)
inline Vec<float>::type bcast(const float* p) { return _mm512_set1_ps(*p); }    // vbroadcastss zmm, m32
inline Vec<double>::type bcast(const double* p) { return _mm512_set1_pd(*p); }  // vbroadcastsd zmm, m64
#elif defined(__AVX__)
inline Vec<float>::type bcast(const float* p) { return _mm256_broadcast_ss(p); }
inline Vec<double>::type bcast(const double* p) { return _mm256_broadcast_sd(p); }
#elif defined(__SSE2__)
inline Vec<float>::type bcast(const float* p) { return _mm_load1_ps(p); }
inline Vec<double>::type bcast(const double* p) { return _mm_load1_pd(p); }
#elif defined(__aarch64__)
inline Vec<float>::type bcast(const float* p) { return vld1q_dup_f32(p); }
inline Vec<double>::type bcast(const double* p) { return vld1q_dup_f64(p); }
#else
template <class T>
inline typename Vec<T>::type bcast(const T* p) {
  typename Vec<T>::type v;
  for (int j = 0; j < Vec<T>::width; ++j) v[j] = *p;
  return v;
}
#endif

// A store that bypasses the caches (movntps: no read-for-ownership, no eviction of what the
// kernel keeps in cache) to p aligned to the vector's size; stream_fence() orders such stores
// before what follows. Elsewhere a plain store.
#if defined(__AVX512F__)
inline void stream(float* p, Vec<float>::type v) { _mm512_stream_ps(p, v); }
#elif defined(__AVX__)
inline void stream(float* p, Vec<float>::type v) { _mm256_stream_ps(p, v); }
#elif defined(__SSE2__)
inline void stream(float* p, Vec<float>::type v) { _mm_stream_ps(p, v); }
#endif
#if defined(__SSE2__)
inline void stream_fence() { _mm_sfence(); }
#else
inline void stream(float* p, Vec<float>::type v) { store(p, v); }
inline void stream_fence() {}
#endif
inline void stream(double* p, Vec<double>::type v) { store(p, v); }

// Whether an output of `rows` rows of `row_bytes` each at p goes out with streaming stores: above
// 8 MB, its rows whole 64-byte lines from a 64-byte boundary. Smaller outputs stay in the caches
// for whoever reads them next: streaming them cost 1.16-1.48 of a depthwise training step (1-8
// MB), while above it saved up to 28% (conv_depthwise.cpp, conv.cpp's 1x1, rnn.cpp's input
// projection, the transposed conv's phases: each caller's comment has its figures).
inline bool stream_rows(int64_t rows, int64_t row_bytes, const void* p) {
  return rows * row_bytes > (int64_t(8) << 20) && row_bytes % 64 == 0 && reinterpret_cast<uintptr_t>(p) % 64 == 0;
}

// Lane-wise square root of a float vector (GCC vectorizes std::sqrt only under
// -fno-math-errno, and GCC vectors have no sqrt operator).
#if defined(__AVX512F__)
inline Vec<float>::type sqrt(Vec<float>::type v) { return _mm512_sqrt_ps(v); }
#elif defined(__AVX__)
inline Vec<float>::type sqrt(Vec<float>::type v) { return _mm256_sqrt_ps(v); }
#elif defined(__SSE2__)
inline Vec<float>::type sqrt(Vec<float>::type v) { return _mm_sqrt_ps(v); }
#elif defined(__aarch64__)
inline Vec<float>::type sqrt(Vec<float>::type v) { return vsqrtq_f32(v); }
#else
inline Vec<float>::type sqrt(Vec<float>::type v) {
  for (int j = 0; j < Vec<float>::width; ++j) v[j] = std::sqrt(v[j]);
  return v;
}
#endif

// The sum / max of a vector's lanes as a pairwise tree over the lanes: depth log2(width) (4 ops
// at 16 floats) instead of a chain of width - 1 dependent ops, whose latency costs more than
// the FMAs of a short reduction. (Halving the vector register itself measured 4% slower in
// the CTC row pass.) hmax compares as std::max (a NaN in the right operand is dropped).
template <class T, int W, class Op>
inline T reduce_lanes(const T* t, Op op) {
  if constexpr (W == 1) return t[0];
  else return op(reduce_lanes<T, W / 2>(t, op), reduce_lanes<T, W / 2>(t + W / 2, op));
}
template <class T>
inline T hsum(typename Vec<T>::type v) {
  T lanes[Vec<T>::width];
  std::memcpy(lanes, &v, sizeof(v));
  return reduce_lanes<T, Vec<T>::width>(lanes, [](T a, T b) { return a + b; });
}
template <class T>
inline T hmax(typename Vec<T>::type v) {
  T lanes[Vec<T>::width];
  std::memcpy(lanes, &v, sizeof(v));
  return reduce_lanes<T, Vec<T>::width>(lanes, [](T a, T b) { return a < b ? b : a; });
}

// Transposes the width x width block held in r[0 .. width) (row i in r[i]) in place: log2(width)
// rounds of two-input shuffles (4 x 16 of them for 16 floats) instead of width^2 scalar moves.
// Round h pairs rows i and i + h (i mod 2h < h): each 2h-lane group of the new row i takes h
// lanes of row i then h of row i + h from the group's first half, the new row i + h the same
// from its second half; after h = width/2, ..., 1 row i holds column i.
template <class T>
struct ShuffleMask {
  using Int = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef Int type __attribute__((vector_size(kBytes)));
};
constexpr int transpose_lane(int W, int h, bool high, int j) {
  const int q = j % (2 * h), base = j - q;
  return high ? (q < h ? base + h + q : W + base + q) : (q < h ? base + q : W + base + q - h);
}
template <class T, int h, int... J>
inline void transpose_round(typename Vec<T>::type* r, std::integer_sequence<int, J...>) {
  constexpr int W = Vec<T>::width;
  using M = typename ShuffleMask<T>::type;
  constexpr M lo = {transpose_lane(W, h, false, J)...}, hi = {transpose_lane(W, h, true, J)...};
  for (int i = 0; i < W; ++i)
    if (i % (2 * h) < h) {
      const typename Vec<T>::type a = r[i], b = r[i + h];
      r[i] = __builtin_shuffle(a, b, lo);
      r[i + h] = __builtin_shuffle(a, b, hi);
    }
  if constexpr (h > 1) transpose_round<T, h / 2>(r, std::integer_sequence<int, J...>{});
}
template <class T>
inline void transpose(typename Vec<T>::type* r) {
  constexpr int W = Vec<T>::width;
  if constexpr (W > 1) transpose_round<T, W / 2>(r, std::make_integer_sequence<int, W>{});
}

}  // namespace faltung::simd
