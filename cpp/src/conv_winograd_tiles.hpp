// conv_winograd_tiles.hpp — private to conv_winograd*.cpp: the 1D Winograd transforms of
// F(2,3), F(4,3) and F(3,2) and the per-tile 2D transforms, vectorized across channels.
//
// Dimension legend: M output tile size (2 or 4 for a 3x3 kernel, 3 for a 2x2 kernel: Tf<M> is
// keyed by M alone), R kernel size, A = M + R - 1 input tile size, P = A*A transform positions,
// C in-channels, K out-channels, TB tiles per block.
// Transform matrices (Lavin & Gray, interpolation points 0, +-1, +-2, inf for F(4,3)):
//   forward:  Y = A^T [ (G g G^T) (.) (B^T d B) ] A
//   filter gradient: dg = G^T [ sum_tiles (B^T d B) (.) (A dY A^T) ] G
// The value type V is either a scalar T or a GCC vector of T (one register, simd.hpp: 8 floats
// at the AVX2 level); the same code serves both, so channel remainders use the scalar path.
#pragma once
#include <cstdint>

#include "simd.hpp"

namespace faltung::wino {

template <class T>
using VecOf = simd::Vec<T>;
using simd::load;
using simd::store;

template <int M>
struct Tf;

// F(2x2, 3x3): A = 4.
template <>
struct Tf<2> {
  static constexpr int A = 4, R = 3;
  // r = B^T d  (4 -> 4)
  template <class V>
  static inline void in(const V* d, int ds, V* r, int rs) {
    r[0] = d[0] - d[2 * ds];
    r[rs] = d[ds] + d[2 * ds];
    r[2 * rs] = d[2 * ds] - d[ds];
    r[3 * rs] = d[ds] - d[3 * ds];
  }
  // y = A^T m  (4 -> 2)
  template <class V>
  static inline void out(const V* m, int ms, V* y, int ys) {
    y[0] = m[0] + m[ms] + m[2 * ms];
    y[ys] = m[ms] - m[2 * ms] - m[3 * ms];
  }
  // u = G g  (3 -> 4)
  template <class V, class T>
  static inline void wt(const V* g, int gs, V* u, int us) {
    const T h = T(0.5);
    u[0] = g[0];
    u[us] = (g[0] + g[gs] + g[2 * gs]) * h;
    u[2 * us] = (g[0] - g[gs] + g[2 * gs]) * h;
    u[3 * us] = g[2 * gs];
  }
  // g = G^T u  (4 -> 3)
  template <class V, class T>
  static inline void wt_t(const V* u, int us, V* g, int gs) {
    const T h = T(0.5);
    g[0] = u[0] + (u[us] + u[2 * us]) * h;
    g[gs] = (u[us] - u[2 * us]) * h;
    g[2 * gs] = (u[us] + u[2 * us]) * h + u[3 * us];
  }
  // z = A y  (2 -> 4)
  template <class V>
  static inline void out_t(const V* y, int ys, V* z, int zs) {
    z[0] = y[0];
    z[zs] = y[0] + y[ys];
    z[2 * zs] = y[0] - y[ys];
    z[3 * zs] = -y[ys];
  }
};

// F(4x4, 3x3): A = 6.
template <>
struct Tf<4> {
  static constexpr int A = 6, R = 3;
  template <class V>
  static inline void in(const V* d, int ds, V* r, int rs) {
    const V d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
    const V a = d4 - d2 * 4, b = d3 - d1 * 4;  // r1 = a + b, r2 = a - b
    const V c = d4 - d2, e = (d3 - d1) * 2;     // r3 = c + e, r4 = c - e
    r[0] = d0 * 4 - d2 * 5 + d4;
    r[rs] = a + b;
    r[2 * rs] = a - b;
    r[3 * rs] = c + e;
    r[4 * rs] = c - e;
    r[5 * rs] = d1 * 4 - d3 * 5 + d5;
  }
  template <class V>
  static inline void out(const V* m, int ms, V* y, int ys) {
    const V m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms];
    const V s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
    y[0] = m[0] + s12 + s34;
    y[ys] = d12 + d34 * 2;
    y[2 * ys] = s12 + s34 * 4;
    y[3 * ys] = d12 + d34 * 8 + m[5 * ms];
  }
  template <class V, class T>
  static inline void wt(const V* g, int gs, V* u, int us) {
    const V g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
    const V s = g0 + g2;
    u[0] = g0 * T(0.25);
    u[us] = (s + g1) * T(-1.0 / 6);
    u[2 * us] = (s - g1) * T(-1.0 / 6);
    const V p = g0 * T(1.0 / 24) + g2 * T(1.0 / 6), q = g1 * T(1.0 / 12);
    u[3 * us] = p + q;
    u[4 * us] = p - q;
    u[5 * us] = g2;
  }
  template <class V, class T>
  static inline void wt_t(const V* u, int us, V* g, int gs) {
    const V u1 = u[us], u2 = u[2 * us], u3 = u[3 * us], u4 = u[4 * us];
    const V s12 = (u1 + u2) * T(-1.0 / 6), s34 = u3 + u4;
    g[0] = u[0] * T(0.25) + s12 + s34 * T(1.0 / 24);
    g[gs] = (u2 - u1) * T(1.0 / 6) + (u3 - u4) * T(1.0 / 12);
    g[2 * gs] = s12 + s34 * T(1.0 / 6) + u[5 * us];
  }
  template <class V>
  static inline void out_t(const V* y, int ys, V* z, int zs) {
    const V y0 = y[0], y1 = y[ys], y2 = y[2 * ys], y3 = y[3 * ys];
    const V e = y0 + y2, o = y1 + y3, e4 = y0 + y2 * 4, o8 = y1 * 2 + y3 * 8;
    z[0] = y0;
    z[zs] = e + o;
    z[2 * zs] = e - o;
    z[3 * zs] = e4 + o8;
    z[4 * zs] = e4 - o8;
    z[5 * zs] = y3;
  }
};

// F(3x3, 2x2): A = 4, forward only (the stride phases of a transposed conv with kernel =
// 2 * stride). By the transposition principle it is F(2,3) with the roles of output and
// filter swapped: the same input transform B^T, filter transform A (of F(2,3)) and output
// transform G^T, the 1/2 of G moved into the filter transform so that the output transform
// only adds:  u = (g0, (g0+g1)/2, (g0-g1)/2, -g1),  y = (m0+m1+m2, m1-m2, m1+m2+m3).
template <>
struct Tf<3> {
  static constexpr int A = 4, R = 2;
  template <class V>
  static inline void in(const V* d, int ds, V* r, int rs) {
    Tf<2>::in(d, ds, r, rs);
  }
  // y = G^T m  (4 -> 3)
  template <class V>
  static inline void out(const V* m, int ms, V* y, int ys) {
    const V s12 = m[ms] + m[2 * ms];
    y[0] = m[0] + s12;
    y[ys] = m[ms] - m[2 * ms];
    y[2 * ys] = s12 + m[3 * ms];
  }
  // u = A g  (2 -> 4), rows 1 and 2 halved
  template <class V, class T>
  static inline void wt(const V* g, int gs, V* u, int us) {
    const T h = T(0.5);
    u[0] = g[0];
    u[us] = (g[0] + g[gs]) * h;
    u[2 * us] = (g[0] - g[gs]) * h;
    u[3 * us] = -g[gs];
  }
};

// Where one output tile sits: image n, top-left output pixel (oh0, ow0).
struct TileGrid {
  int64_t TH, TW;  // tiles per image along H and W
  int64_t M;
  void locate(int64_t t, int64_t& n, int64_t& oh0, int64_t& ow0) const {
    n = t / (TH * TW);
    const int64_t r = t - n * TH * TW;
    oh0 = (r / TW) * M;
    ow0 = (r % TW) * M;
  }
};

// One input tile, channels [c0, c0 + width(V)) -> v[p*ldv] for the P positions.
// src (H,W,C) of one image; tile origin (ih0, iw0) may hang over the border (zeros there).
template <int M, class V, class T>
inline void input_tile(const T* src, int64_t H, int64_t W, int64_t C, int64_t ih0, int64_t iw0,
                       int64_t c0, T* v, int64_t ldv) {
  constexpr int A = Tf<M>::A;
  V d[A * A], t[A * A];
  const bool inside = ih0 >= 0 && iw0 >= 0 && ih0 + A <= H && iw0 + A <= W;
  for (int a = 0; a < A; ++a)
    for (int b = 0; b < A; ++b) {
      const int64_t ih = ih0 + a, iw = iw0 + b;
      if (inside || (ih >= 0 && ih < H && iw >= 0 && iw < W))
        d[a * A + b] = load<V>(src + (ih * W + iw) * C + c0);
      else
        d[a * A + b] = V{};
    }
  for (int b = 0; b < A; ++b) Tf<M>::in(d + b, A, t + b, A);          // columns
  for (int i = 0; i < A; ++i) Tf<M>::in(t + i * A, 1, d + i * A, 1);  // rows
  for (int p = 0; p < A * A; ++p) store(v + p * ldv + c0, d[p]);
}

// One output tile from m[p*ldm + k] (P positions), channels [k0, k0 + width(V)): adds bias,
// applies max(x, 0) if relu (NaN stays NaN), writes the pixels (oh, ow) inside [0,OH) x [0,OW) of
// one image's output dst at dst + oh * row_stride + ow * px_stride (contiguous (OH,OW,K): OW*K
// and K); the tile origin (oh0, ow0) may lie outside.
template <int M, class V, class T>
inline void output_tile(const T* m, int64_t ldm, const T* bias, bool relu, int64_t k0, T* dst,
                        int64_t OH, int64_t OW, int64_t row_stride, int64_t px_stride, int64_t oh0,
                        int64_t ow0) {
  constexpr int A = Tf<M>::A;
  V x[A * A], t[M * A], y[M * M];
  for (int p = 0; p < A * A; ++p) x[p] = load<V>(m + p * ldm + k0);
  for (int b = 0; b < A; ++b) Tf<M>::out(x + b, A, t + b, A);          // columns
  for (int i = 0; i < M; ++i) Tf<M>::out(t + i * A, 1, y + i * M, 1);  // rows
  const V bv = bias ? load<V>(bias + k0) : V{};
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < M; ++j) {
      if (oh0 + i < 0 || oh0 + i >= OH || ow0 + j < 0 || ow0 + j >= OW) continue;
      V r = y[i * M + j] + bv;
      if (relu) r = r < V{} ? V{} : r;
      store(dst + (oh0 + i) * row_stride + (ow0 + j) * px_stride + k0, r);
    }
}

// One output-gradient tile dY (M x M, zeros outside OH x OW), channels [k0, ..) -> z = A dY A^T
// at z[p*ldz + k].
template <int M, class V, class T>
inline void dout_tile(const T* src, int64_t OH, int64_t OW, int64_t K, int64_t oh0, int64_t ow0,
                      int64_t k0, T* z, int64_t ldz) {
  constexpr int A = Tf<M>::A;
  V y[M * M], t[A * M], r[A * A];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < M; ++j)
      y[i * M + j] = (oh0 + i < OH && ow0 + j < OW) ? load<V>(src + ((oh0 + i) * OW + ow0 + j) * K + k0) : V{};
  for (int j = 0; j < M; ++j) Tf<M>::out_t(y + j, M, t + j, M);          // columns: t (A x M)
  for (int i = 0; i < A; ++i) Tf<M>::out_t(t + i * M, 1, r + i * A, 1);  // rows: r (A x A)
  for (int p = 0; p < A * A; ++p) store(z + p * ldz + k0, r[p]);
}

}  // namespace faltung::wino
