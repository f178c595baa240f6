// Naive oracles of the recurrent kernels (faltung/rnn.hpp): one sample, one step, one
// element at a time, no plan, no packing, no threads, no BLAS. The backward reruns the
// forward itself, keeping a tape per step. Used by the tests against rnn.cpp.
// B batch, T steps, F features, U units, G gates, GU = G*U; s processing step, t input time.
#include <algorithm>
#include <vector>

#include "faltung/rnn.hpp"

namespace faltung {

namespace {

template <typename Real>
Real fwd1(Act a, const ActParams& p, Real v) {
  Real y;
  act_forward<Real>(a, &y, &v, 1, p);
  return y;
}
// a'(v)
template <typename Real>
Real der1(Act a, const ActParams& p, Real v) {
  const Real y = fwd1(a, p, v), one = 1;
  Real d;
  act_backward<Real>(a, &d, &one, &v, &y, 1, p);
  return d;
}

// R[u, j]
template <typename Real>
Real rk(const RnnWeights<Real>& w, int64_t GU, int64_t u, int64_t j) {
  return w.recurrent_kernel[u * GU + j];
}

// One step of one sample, with everything the backward needs.
template <typename Real>
struct Tape {
  std::vector<Real> h_prev, c_prev, hm;  // (U) h_{t-1}, c_{t-1}, h_{t-1} * m
  std::vector<Real> pre;                 // (GU) preactivations (GRU: of z, r and hh)
  std::vector<Real> rh;                  // (U) GRU reset_after: hm R_h + rb_h
  std::vector<Real> h, c;                // (U) new states
};

template <typename Real>
struct Ref {
  const RnnConfig& c;
  const RnnWeights<Real>& w;
  int64_t F, U, GU;
  Ref(const RnnConfig& c_, const RnnWeights<Real>& w_) : c(c_), w(w_), F(c_.F), U(c_.U), GU(c_.GU()) {}

  Real W(int64_t f, int64_t j) const { return w.kernel[f * GU + j]; }
  Real R(int64_t u, int64_t j) const { return w.recurrent_kernel[u * GU + j]; }
  // input-side and recurrent-side bias of column j
  Real in_bias(int64_t j) const { return w.bias ? w.bias[j] : Real(0); }
  Real rec_bias(int64_t j) const {
    return w.bias && c.cell == RnnCell::gru && c.reset_after ? w.bias[GU + j] : Real(0);
  }
  Real ra(Real v) const { return fwd1(c.rec_act, c.rec_act_params, v); }
  Real a(Real v) const { return fwd1(c.act, c.act_params, v); }

  // x_t (F), sample b, states -> tape with the new states
  Tape<Real> step(const Real* x_t, int64_t b, const std::vector<Real>& h,
                  const std::vector<Real>& cc) const {
    Tape<Real> tp;
    tp.h_prev = h, tp.c_prev = cc, tp.hm.resize(U), tp.pre.assign(GU, 0), tp.h.resize(U), tp.c = cc;
    for (int64_t u = 0; u < U; ++u)
      tp.hm[u] = h[u] * (w.recurrent_mask ? w.recurrent_mask[b * U + u] : Real(1));
    std::vector<Real> xw(GU), hr(GU);  // x_t W + b, hm R + rb
    for (int64_t j = 0; j < GU; ++j) {
      Real sx = in_bias(j), sh = rec_bias(j);
      for (int64_t f = 0; f < F; ++f) sx += x_t[f] * W(f, j);
      for (int64_t u = 0; u < U; ++u) sh += tp.hm[u] * R(u, j);
      xw[j] = sx, hr[j] = sh;
    }
    if (c.cell == RnnCell::simple_rnn) {
      for (int64_t u = 0; u < U; ++u) {
        tp.pre[u] = xw[u] + hr[u];
        tp.h[u] = a(tp.pre[u]);
      }
    } else if (c.cell == RnnCell::lstm) {
      for (int64_t j = 0; j < GU; ++j) tp.pre[j] = xw[j] + hr[j];
      for (int64_t u = 0; u < U; ++u) {
        const Real i = ra(tp.pre[u]), f = ra(tp.pre[U + u]), g = a(tp.pre[2 * U + u]),
                   o = ra(tp.pre[3 * U + u]);
        tp.c[u] = f * cc[u] + i * g;
        tp.h[u] = o * a(tp.c[u]);
      }
    } else {
      std::vector<Real> r(U);
      for (int64_t u = 0; u < U; ++u) {
        tp.pre[u] = xw[u] + hr[u];
        tp.pre[U + u] = xw[U + u] + hr[U + u];
        r[u] = ra(tp.pre[U + u]);
      }
      if (c.reset_after) {
        tp.rh.resize(U);
        for (int64_t u = 0; u < U; ++u) {
          tp.rh[u] = hr[2 * U + u];
          tp.pre[2 * U + u] = xw[2 * U + u] + r[u] * tp.rh[u];
        }
      } else {
        for (int64_t j = 0; j < U; ++j) {
          Real sq = 0;
          for (int64_t u = 0; u < U; ++u) sq += r[u] * tp.hm[u] * R(u, 2 * U + j);
          tp.pre[2 * U + j] = xw[2 * U + j] + sq;
        }
      }
      for (int64_t u = 0; u < U; ++u) {
        const Real z = ra(tp.pre[u]), hh = a(tp.pre[2 * U + u]);
        tp.h[u] = z * h[u] + (Real(1) - z) * hh;
      }
    }
    return tp;
  }
};

}  // namespace

template <typename Real>
void rnn_forward_reference(const RnnConfig& c, const RnnWeights<Real>& w, const Real* x,
                           const uint8_t* mask, const Real* h0, const Real* c0, Real* hs,
                           Real* h_T, Real* c_T) {
  rnn_check(c);
  const int64_t B = c.B, T = c.T, F = c.F, U = c.U;
  const Ref<Real> ref(c, w);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Real> h(U, 0), cc(U, 0);
    if (h0) std::copy(h0 + b * U, h0 + (b + 1) * U, h.begin());
    if (c0) std::copy(c0 + b * U, c0 + (b + 1) * U, cc.begin());
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = c.go_backwards ? T - 1 - s : s;
      Real* out = hs + (b * T + s) * U;
      if (mask && !mask[b * T + t]) {  // carried states; output the carried h or zeros
        for (int64_t u = 0; u < U; ++u) out[u] = c.zero_output_for_mask ? Real(0) : h[u];
        continue;
      }
      const Tape<Real> tp = ref.step(x + (b * T + t) * F, b, h, cc);
      h = tp.h, cc = tp.c;
      std::copy(h.begin(), h.end(), out);
    }
    std::copy(h.begin(), h.end(), h_T + b * U);
    if (c_T && c.cell == RnnCell::lstm) std::copy(cc.begin(), cc.end(), c_T + b * U);
  }
}

template <typename Real>
void rnn_backward_reference(const RnnConfig& c, const RnnWeights<Real>& w, const Real* x,
                            const uint8_t* mask, const Real* h0, const Real* c0,
                            const Real* dhs, const Real* dh_T, const Real* dc_T, Real* dx,
                            Real* dW, Real* dR, Real* db, Real* dh0, Real* dc0) {
  rnn_check(c);
  const int64_t B = c.B, T = c.T, F = c.F, U = c.U, GU = c.GU();
  const bool gru = c.cell == RnnCell::gru, lstm = c.cell == RnnCell::lstm;
  const Ref<Real> ref(c, w);
  if (dx) std::fill(dx, dx + B * T * F, Real(0));
  if (dW) std::fill(dW, dW + F * GU, Real(0));
  if (dR) std::fill(dR, dR + U * GU, Real(0));
  if (db) std::fill(db, db + (gru && c.reset_after ? 2 : 1) * GU, Real(0));
  for (int64_t b = 0; b < B; ++b) {
    // forward, keeping the tape of the unmasked steps
    std::vector<Real> h(U, 0), cc(U, 0);
    if (h0) std::copy(h0 + b * U, h0 + (b + 1) * U, h.begin());
    if (c0) std::copy(c0 + b * U, c0 + (b + 1) * U, cc.begin());
    std::vector<Tape<Real>> tape(T);
    std::vector<bool> on(T, false);
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = c.go_backwards ? T - 1 - s : s;
      if (mask && !mask[b * T + t]) continue;
      on[s] = true;
      tape[s] = ref.step(x + (b * T + t) * F, b, h, cc);
      h = tape[s].h, cc = tape[s].c;
    }
    // backward
    std::vector<Real> dh(U, 0), dc(U, 0);
    if (dh_T) std::copy(dh_T + b * U, dh_T + (b + 1) * U, dh.begin());
    if (dc_T && lstm) std::copy(dc_T + b * U, dc_T + (b + 1) * U, dc.begin());
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t t = c.go_backwards ? T - 1 - s : s;
      const Real* dout = dhs ? dhs + (b * T + s) * U : nullptr;
      if (!on[s]) {  // out_s = h_{s-1} (or 0), h_s = h_{s-1}, c_s = c_{s-1}
        if (dout && !c.zero_output_for_mask)
          for (int64_t u = 0; u < U; ++u) dh[u] += dout[u];
        continue;
      }
      if (dout)
        for (int64_t u = 0; u < U; ++u) dh[u] += dout[u];
      const Tape<Real>& tp = tape[s];
      // dz_in: gradient of x_t W + b (GU); dz_rec: gradient of hm R + rb (GU), except for a
      // GRU without reset_after, whose h-gate block is the gradient of (r hm) R_h.
      std::vector<Real> dz_in(GU, 0), dz_rec(GU, 0), dh_prev(U, 0), dc_prev(U, 0);
      std::vector<Real> dhm(U, 0);
      if (c.cell == RnnCell::simple_rnn) {
        for (int64_t u = 0; u < U; ++u)
          dz_in[u] = dz_rec[u] = dh[u] * der1(c.act, c.act_params, tp.pre[u]);
      } else if (lstm) {
        for (int64_t u = 0; u < U; ++u) {
          const Real zi = tp.pre[u], zf = tp.pre[U + u], zg = tp.pre[2 * U + u], zo = tp.pre[3 * U + u];
          const Real i = ref.ra(zi), f = ref.ra(zf), g = ref.a(zg), o = ref.ra(zo);
          const Real ac = ref.a(tp.c[u]);
          const Real dct = dc[u] + dh[u] * o * der1(c.act, c.act_params, tp.c[u]);
          dz_in[u] = dct * g * der1(c.rec_act, c.rec_act_params, zi);
          dz_in[U + u] = dct * tp.c_prev[u] * der1(c.rec_act, c.rec_act_params, zf);
          dz_in[2 * U + u] = dct * i * der1(c.act, c.act_params, zg);
          dz_in[3 * U + u] = dh[u] * ac * der1(c.rec_act, c.rec_act_params, zo);
          dc_prev[u] = dct * f;
        }
        dz_rec = dz_in;
      } else {
        std::vector<Real> r(U), dpre_h(U);
        for (int64_t u = 0; u < U; ++u) {
          const Real z = ref.ra(tp.pre[u]), hh = ref.a(tp.pre[2 * U + u]);
          r[u] = ref.ra(tp.pre[U + u]);
          dz_in[u] = dh[u] * (tp.h_prev[u] - hh) * der1(c.rec_act, c.rec_act_params, tp.pre[u]);
          dpre_h[u] = dh[u] * (Real(1) - z) * der1(c.act, c.act_params, tp.pre[2 * U + u]);
          dh_prev[u] = dh[u] * z;  // the direct path
          dz_in[2 * U + u] = dpre_h[u];
        }
        if (c.reset_after) {
          for (int64_t u = 0; u < U; ++u) {
            dz_in[U + u] = dpre_h[u] * tp.rh[u] * der1(c.rec_act, c.rec_act_params, tp.pre[U + u]);
            dz_rec[2 * U + u] = dpre_h[u] * r[u];
          }
        } else {
          for (int64_t u = 0; u < U; ++u) {  // dq = dpre_h R_h^T, q = r hm
            Real dq = 0;
            for (int64_t j = 0; j < U; ++j) dq += dpre_h[j] * rk(w, GU, u, 2 * U + j);
            dz_in[U + u] = dq * tp.hm[u] * der1(c.rec_act, c.rec_act_params, tp.pre[U + u]);
            dhm[u] += dq * r[u];
          }
          for (int64_t j = 0; j < U; ++j) dz_rec[2 * U + j] = dpre_h[j];
        }
        for (int64_t j = 0; j < 2 * U; ++j) dz_rec[j] = dz_in[j];
      }
      // weights and bias
      const Real* x_t = x + (b * T + t) * F;
      if (dW)
        for (int64_t f = 0; f < F; ++f)
          for (int64_t j = 0; j < GU; ++j) dW[f * GU + j] += x_t[f] * dz_in[j];
      if (dR) {
        for (int64_t u = 0; u < U; ++u)
          for (int64_t j = 0; j < GU; ++j) {
            const bool q_input = gru && !c.reset_after && j >= 2 * U;  // (r hm) R_h
            const Real in = q_input ? ref.ra(tp.pre[U + u]) * tp.hm[u] : tp.hm[u];
            dR[u * GU + j] += in * dz_rec[j];
          }
      }
      if (db) {
        for (int64_t j = 0; j < GU; ++j) db[j] += dz_in[j];
        if (gru && c.reset_after)
          for (int64_t j = 0; j < GU; ++j) db[GU + j] += dz_rec[j];
      }
      if (dx)
        for (int64_t f = 0; f < F; ++f) {
          Real acc = 0;
          for (int64_t j = 0; j < GU; ++j) acc += dz_in[j] * w.kernel[f * GU + j];
          dx[(b * T + t) * F + f] = acc;
        }
      // h_{t-1}: through hm R (all but a non-reset GRU's h gate, done above) and the mask
      const int64_t jr = gru && !c.reset_after ? 2 * U : GU;
      for (int64_t u = 0; u < U; ++u) {
        for (int64_t j = 0; j < jr; ++j) dhm[u] += dz_rec[j] * rk(w, GU, u, j);
        dh_prev[u] += dhm[u] * (w.recurrent_mask ? w.recurrent_mask[b * U + u] : Real(1));
      }
      dh = dh_prev;
      if (lstm) dc = dc_prev;
    }
    if (dh0) std::copy(dh.begin(), dh.end(), dh0 + b * U);
    if (dc0 && lstm) std::copy(dc.begin(), dc.end(), dc0 + b * U);
  }
}

#define FALTUNG_RNN_REF_INSTANTIATE(Real)                                                          \
  template void rnn_forward_reference<Real>(const RnnConfig&, const RnnWeights<Real>&,             \
                                            const Real*, const uint8_t*, const Real*, const Real*, \
                                            Real*, Real*, Real*);                                  \
  template void rnn_backward_reference<Real>(const RnnConfig&, const RnnWeights<Real>&,            \
                                             const Real*, const uint8_t*, const Real*,             \
                                             const Real*, const Real*, const Real*, const Real*,   \
                                             Real*, Real*, Real*, Real*, Real*, Real*);
FALTUNG_RNN_REF_INSTANTIATE(float)
FALTUNG_RNN_REF_INSTANTIATE(double)
#undef FALTUNG_RNN_REF_INSTANTIATE

}  // namespace faltung
