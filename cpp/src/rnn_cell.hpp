// Internal to rnn_lanes.cpp: the LSTM cell with Keras's default activations (recurrent sigmoid,
// tanh) on GCC vectors of float. (rnn.cpp's lstm_cell is the scalar loop GCC vectorizes, for
// the packed-panel forward.)
#pragma once
#include <cmath>
#include <cstdint>

#include "simd.hpp"

namespace faltung::rnn_detail {

// Explicit vector code: the caller runs the cells of a register tile straight from its
// accumulators. Fewer operations than lstm_cell's formulation, at float32 rounding (a few ulp):
//   tanh(|z|) = -m / (2 + m) with m = expm1(-2|z|) in (-1, 0]: accurate relatively near 0
//   without a series and a blend (expm1 keeps exp's reduction and polynomial: for n = 0 it is
//   r q(r), exact to rounding, where 1 - exp loses the digits);
//   the four gates' denominators (1 + e and 2 + m, each in (1, 2]) still share one reciprocal;
//   reciprocals as rcp14 and one Newton step at AVX-512 (a division is 3 uops and 16 cycles
//   of the one divider there), exact divisions elsewhere;
//   2^n p by vscalefps at AVX-512, by the exponent bits elsewhere;
//   NaN: c is NaN if z_i, z_f or z_g is (or c_{t-1} was), h if c or z_o is, checked once.
namespace vcell {
template <class V>
struct IntVec {
  typedef int32_t type __attribute__((vector_size(sizeof(V))));
};
template <class V>
using IntOf = typename IntVec<V>::type;
constexpr int32_t kSign = int32_t(0x80000000u);
template <class V>
inline V splat(float x) {
  return V{} + x;
}
template <class V>
inline V vabs(V x) {
  return (V)((IntOf<V>)x & ~kSign);
}
template <class V>
inline V neg_abs(V x) {  // -|x|
  return (V)((IntOf<V>)x | kSign);
}
template <class V>
inline V with_sign(V m, V s) {  // |m| with the sign of s
  return (V)(((IntOf<V>)m & ~kSign) | ((IntOf<V>)s & kSign));
}
// 2^n p, n an integral float in [-126, 0]
template <class V>
inline V scale2(V p, V n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(V) == 64) return _mm512_scalef_ps(p, n);
#endif
  return p * (V)((__builtin_convertvector(n, IntOf<V>) + 127) << 23);
}
// 1 / d for d in [1, 16]
template <class V>
inline V recip(V d) {
#if defined(__AVX512F__)
  if constexpr (sizeof(V) == 64) {
    const V r = _mm512_rcp14_ps(d);  // relative error < 2^-14
    return r + r * (1.f - d * r);    // < 2^-27 after one Newton step
  }
#endif
  return 1.f / d;
}
// x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2, for x clamped to [-87.3, 0]; e^r =
// 1 + r q(r), q from the Taylor series to r^7 (elementwise::exp_le0_f's reduction and terms).
template <class V>
struct Reduced {
  V n, r, q;
};
template <class V>
inline Reduced<V> reduce(V x) {
  const V lo = splat<V>(-87.3f);
  const V xc = lo < x ? x : lo;  // NaN becomes -87.3 (the callers check NaN themselves)
  const V n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;
  const V r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  const V q = 1.f + r * (0.5f + r * (1.f / 6 + r * (1.f / 24 + r * (1.f / 120 + r * (1.f / 720 + r * (1.f / 5040))))));
  return {n, r, q};
}
template <class V>
inline V exp_le0(V x) {  // exp(x), x <= 0
  const Reduced<V> e = reduce(x);
  return scale2(1.f + e.r * e.q, e.n);
}
template <class V>
inline V expm1_le0(V x) {  // exp(x) - 1, x <= 0
  const Reduced<V> e = reduce(x);
  return scale2(e.r * e.q, e.n) + (scale2(splat<V>(1), e.n) - 1.f);
}
}  // namespace vcell

template <class V>
struct LstmVec {
  V c, h;
};
template <class V>
inline LstmVec<V> lstm_vec(V ai, V af, V ag, V ao, V c_prev) {
  using namespace vcell;
  const V one = splat<V>(1), zero = splat<V>(0);
  const V ei = exp_le0(neg_abs(ai)), ef = exp_le0(neg_abs(af)), eo = exp_le0(neg_abs(ao));
  const V mg = expm1_le0(2.f * neg_abs(ag));
  const V di = one + ei, df = one + ef, dq = one + eo, dg = 2.f + mg;
  const V pif = di * df, pgo = dg * dq, inv = recip(pif * pgo);
  const V ipgo = inv * pgo, ipif = inv * pif;
  const V i = (ai >= zero ? one : ei) * (ipgo * df);
  const V f = (af >= zero ? one : ef) * (ipgo * di);
  const V o = (ao >= zero ? one : eo) * (ipif * dg);
  const V g = with_sign(mg * (ipif * dq), ag);
  const V nan_c = (ai != ai) | (af != af) | (ag != ag) ? ai + af + ag : zero;  // NaN or 0
  const V cn = nan_c + (f * c_prev + i * g);
  const V mc = expm1_le0(2.f * neg_abs(cn));
  const V a = cn != cn ? cn : with_sign(mc * recip(2.f + mc), cn);
  const V h = o * a;
  return {cn, ao != ao ? ao : h};
}
}  // namespace faltung::rnn_detail
