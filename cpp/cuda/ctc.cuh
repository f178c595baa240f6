// cpp/cuda/ctc.cuh — CTC loss (alpha/beta in log space, parallel over the extended label) and
// greedy decoding as kernel bodies plus their launch sequences (see hd.cuh for the design).
// Oracles: cpp/src/ctc.cpp (ctc_loss) and cpp/src/ctc_decode.cpp (ctc_greedy_decode), whose
// definitions faltung/ctc.hpp states; this file follows them step for step.
//
// B batch, T steps, C classes, S label slots, Lp = 2S+1 extended-label slots (a sample uses
// L_b = 2 S_b + 1 of them). x (B,T,C), labels (B,S), label_len (B), input_len (B) int32,
// loss (B), grad (B,T,C).
//
// "log 0" is the finite kLogZero, as in ctc.cpp, so that log-sum-exp of absent terms is 0 and
// never NaN; an infeasible sample keeps logp = kLogZero (loss +inf or 0, gradient 0).
//
// Launches (g = the grid a launch covers):
//   1 setup      thread per (b, s)    ext[b, s] = l'_s; thread s = 0 also: feasible -> logp 0/kLogZero
//   2 normalise  thread per (b, t)    lse of row (b, t), ylab row, grad row = y (or 0)
//   3 alpha      block per b, steps t = 0..T-1, threads stride over s (barrier per step)
//   4 gamma      block per b, steps t = T-1..0 (gradient only; independent of alpha)
//   5 logp       thread per b         log P = lse(alpha_{T_b-1}(L_b-1), alpha_{T_b-1}(L_b-2))
//   6 occupancy  thread per (b, t, c) grad -= sum over slots s with l'_s = c of the occupancy
//   7 loss       thread per b
// Alpha and gamma are one launch each: a sample's recursion is one block's loop over t, so a
// step costs a barrier, not a kernel launch. Each step writes row t from row t -+ 1 only.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::ctc {

template <typename Real> struct LogZero { static constexpr Real value = Real(-1e30); };
template <> struct LogZero<double> { static constexpr double value = -1e300; };

// log(e^a + e^b + e^c) and log(e^a + e^b)
template <typename Real>
FALTUNG_HD inline Real lse3(Real a, Real b, Real c) {
  const Real m = hd_max(hd_max(a, b), c);
  return m + hd_log(hd_exp(a - m) + hd_exp(b - m) + hd_exp(c - m));
}
template <typename Real>
FALTUNG_HD inline Real lse2(Real a, Real b) {
  const Real m = hd_max(a, b);
  return m + hd_log(hd_exp(a - m) + hd_exp(b - m));
}

template <typename Real>
struct Args {
  int64_t B, T, C, S, blank;
  bool log_probs, zero_infinity;
  const Real* x;
  const int32_t *labels, *label_len, *input_len;
  Real *loss, *grad;  // grad (B,T,C) or nullptr: loss only
  Real* ws;           // workspace_size(...) Reals, laid out by Layout
  int32_t* iws;       // int_workspace_size(...) int32: ext (B, Lp)
};

// The workspace layout, here and nowhere else.
struct Layout {
  int64_t Lp, lse, ylab, alpha, gamma, logp, total;
  Layout(int64_t B, int64_t T, int64_t S, bool with_grad) {
    Lp = 2 * S + 1;
    const int64_t rows = B * T;
    lse = 0;                                       // (B,T)    log-normaliser of each row of x
    ylab = lse + rows;                             // (B,T,Lp) log y_t(l'_s)
    alpha = ylab + rows * Lp;                      // (B,T,Lp)
    gamma = alpha + rows * Lp;                     // (B,T,Lp) gradient only
    logp = gamma + (with_grad ? rows * Lp : 0);    // (B)      log P, kLogZero if infeasible
    total = logp + B;
  }
};
inline int64_t workspace_size(int64_t B, int64_t T, int64_t S, bool with_grad) {
  return Layout(B, T, S, with_grad).total;
}
inline int64_t int_workspace_size(int64_t B, int64_t S) { return B * (2 * S + 1); }

// What every body reads: the arguments, the layout and a few named slices.
template <typename Real>
struct View {
  Args<Real> a;
  Layout lay;
  FALTUNG_HD int64_t L(int64_t b) const { return 2 * int64_t(a.label_len[b]) + 1; }
  FALTUNG_HD const int32_t* ext(int64_t b) const { return a.iws + b * lay.Lp; }
  FALTUNG_HD Real* row(int64_t off, int64_t b, int64_t t) const {
    return a.ws + off + (b * a.T + t) * lay.Lp;
  }
  FALTUNG_HD Real& logp(int64_t b) const { return a.ws[lay.logp + b]; }
  FALTUNG_HD bool feasible(int64_t b) const { return logp(b) == Real(0); }
  // After alpha: infeasible samples kept kLogZero; a NaN log P counts as feasible (propagates).
  FALTUNG_HD bool feasible_after(int64_t b) const { return !(logp(b) <= LogZero<Real>::value / 2); }
  // skip(s): slot s holds a label different from slot s - 2's (so s - 2 -> s is allowed)
  FALTUNG_HD bool skip(int64_t b, int64_t s) const {
    return (s & 1) && s >= 3 && ext(b)[s] != ext(b)[s - 2];
  }
};

// 1: thread per (b, s) of the B x Lp extended labels.
template <typename Real>
struct Setup {
  View<Real> v;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<Real>& a = v.a;
    const int64_t i = th.global();
    if (i >= a.B * v.lay.Lp) return;
    const int64_t b = i / v.lay.Lp, s = i % v.lay.Lp;
    const int64_t Sb = a.label_len[b];
    const int32_t* lab = a.labels + b * a.S;
    a.iws[i] = (s & 1) && s / 2 < Sb ? lab[s / 2] : int32_t(a.blank);
    if (s != 0) return;
    int64_t needed = Sb;  // one step per label, one more between equal neighbours
    for (int64_t k = 1; k < Sb; ++k) needed += lab[k] == lab[k - 1];
    v.logp(b) = needed <= a.input_len[b] ? Real(0) : LogZero<Real>::value;
  }
};

// 2: thread per row (b, t) of x.
template <typename Real>
struct Normalise {
  View<Real> v;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<Real>& a = v.a;
    const int64_t r = th.global();
    if (r >= a.B * a.T) return;
    const int64_t b = r / a.T, t = r % a.T, C = a.C;
    const Real* xr = a.x + r * C;
    Real* g = a.grad ? a.grad + r * C : nullptr;
    if (t >= a.input_len[b] || !v.feasible(b)) {
      if (g)
        for (int64_t k = 0; k < C; ++k) g[k] = Real(0);
      return;
    }
    Real lse = 0;
    if (!a.log_probs) {
      Real m = xr[0];
      for (int64_t k = 1; k < C; ++k) m = hd_max(m, xr[k]);
      Real sum = 0;
      for (int64_t k = 0; k < C; ++k) sum += hd_exp(xr[k] - m);
      lse = m + hd_log(sum);
      if (g)
        for (int64_t k = 0; k < C; ++k) g[k] = hd_exp(xr[k] - m) / sum;
    } else if (g) {
      for (int64_t k = 0; k < C; ++k) g[k] = Real(0);
    }
    a.ws[v.lay.lse + r] = lse;
    Real* yl = v.row(v.lay.ylab, b, t);
    const int32_t* e = v.ext(b);
    for (int64_t s = 0; s < v.L(b); ++s) yl[s] = hd_max(xr[e[s]] - lse, LogZero<Real>::value);
  }
};

// 3: block b, step t: alpha_t(s) for the slots s this thread strides over.
template <typename Real>
struct Alpha {
  View<Real> v;
  FALTUNG_HD void step(int64_t t, Thread th) const {
    const int64_t b = th.block, Lb = v.L(b);
    if (t >= v.a.input_len[b] || !v.feasible(b)) return;
    const Real Z = LogZero<Real>::value;
    const Real* yl = v.row(v.lay.ylab, b, t);
    Real* at = v.row(v.lay.alpha, b, t);
    for (int64_t s = th.thread; s < Lb; s += th.block_dim) {
      if (t == 0) {
        at[s] = s < 2 ? yl[s] : Z;
        continue;
      }
      const Real* ap = v.row(v.lay.alpha, b, t - 1);
      at[s] = lse3(ap[s], s >= 1 ? ap[s - 1] : Z, v.skip(b, s) ? ap[s - 2] : Z) + yl[s];
    }
  }
};

// 4: block b, step k (t = T - 1 - k, only t < T_b run): gamma_t(s).
template <typename Real>
struct Gamma {
  View<Real> v;
  FALTUNG_HD void step(int64_t k, Thread th) const {
    const int64_t b = th.block, Lb = v.L(b), Tb = v.a.input_len[b];
    const int64_t t = v.a.T - 1 - k;
    if (t >= Tb || !v.feasible(b)) return;
    const Real Z = LogZero<Real>::value;
    const Real* yl = v.row(v.lay.ylab, b, t);
    Real* gt = v.row(v.lay.gamma, b, t);
    for (int64_t s = th.thread; s < Lb; s += th.block_dim) {
      if (t == Tb - 1) {
        gt[s] = s >= Lb - 2 ? yl[s] : Z;
        continue;
      }
      const Real* gn = v.row(v.lay.gamma, b, t + 1);
      gt[s] = lse3(gn[s], s + 1 < Lb ? gn[s + 1] : Z, s + 2 < Lb && v.skip(b, s + 2) ? gn[s + 2] : Z) +
              yl[s];
    }
  }
};

// 5: thread per sample.
template <typename Real>
struct LogP {
  View<Real> v;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t b = th.global();
    if (b >= v.a.B) return;
    const int64_t Tb = v.a.input_len[b], Lb = v.L(b);
    if (Tb == 0 || !v.feasible(b)) return;
    const Real* al = v.row(v.lay.alpha, b, Tb - 1);
    v.logp(b) = Lb > 1 ? lse2(al[Lb - 1], al[Lb - 2]) : al[0];
  }
};

// 6: thread per (b, t, c): grad -= the occupancy of the slots holding class c.
template <typename Real>
struct Occupancy {
  View<Real> v;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<Real>& a = v.a;
    const int64_t i = th.global();
    if (i >= a.B * a.T * a.C) return;
    const int64_t c = i % a.C, r = i / a.C, b = r / a.T, t = r % a.T;
    if (t >= a.input_len[b] || !v.feasible_after(b)) return;
    const Real* al = v.row(v.lay.alpha, b, t);
    const Real* gm = v.row(v.lay.gamma, b, t);
    const Real* yl = v.row(v.lay.ylab, b, t);
    const int32_t* e = v.ext(b);
    const Real lp = v.logp(b);
    Real occ = 0;
    for (int64_t s = 0; s < v.L(b); ++s)
      if (e[s] == c) occ += hd_exp(al[s] + gm[s] - yl[s] - lp);
    a.grad[i] -= occ;
  }
};

// 7: thread per sample.
template <typename Real>
struct Loss {
  View<Real> v;
  FALTUNG_HD void operator()(Thread th) const {
    const Args<Real>& a = v.a;
    const int64_t b = th.global();
    if (b >= a.B) return;
    const Real inf = Real(1) / Real(0);
    if (a.input_len[b] == 0 && a.label_len[b] == 0) a.loss[b] = 0;
    else if (v.feasible_after(b) && a.input_len[b] > 0) a.loss[b] = -v.logp(b);
    else a.loss[b] = a.zero_infinity ? Real(0) : inf;
  }
};

// The launch sequence, the same for HostExec and DeviceExec. `block` is the threads per block
// of the per-item launches; the alpha/gamma blocks take block_for(Lp, block) threads.
// Arguments must have passed faltung::ctc_check (the CPU's validation).
template <class Exec, typename Real>
void loss(Exec& ex, const Args<Real>& a, int64_t block) {
  const View<Real> v{a, Layout(a.B, a.T, a.S, a.grad != nullptr)};
  ex.launch(cover(a.B * v.lay.Lp, block), Setup<Real>{v});
  ex.launch(cover(a.B * a.T, block), Normalise<Real>{v});
  const Geometry per_sample{a.B, block_for(v.lay.Lp, block)};
  ex.launch_steps(per_sample, a.T, Alpha<Real>{v});
  if (a.grad) ex.launch_steps(per_sample, a.T, Gamma<Real>{v});
  ex.launch(cover(a.B, block), LogP<Real>{v});  // after it, logp is log P: feasible() no longer holds
  if (a.grad) ex.launch(cover(a.B * a.T * a.C, block), Occupancy<Real>{v});
  ex.launch(cover(a.B, block), Loss<Real>{v});
}

// ---- greedy decoding (oracle: ctc_greedy_decode) -------------------------------------------
// x (B,T,C), lengths (B) -> decoded (B,T) labels then -1, score (B) = -sum_{t < T_b} max_c x.
// best (B,T) int32 scratch.
template <typename Real>
struct GreedyArgs {
  int64_t B, T, C, blank;
  bool merge_repeated;
  const Real* x;
  const int32_t* lengths;
  int32_t *decoded, *best;
  Real* score;
};

// thread per (b, t): the first maximum of row (b, t)
template <typename Real>
struct Argmax {
  GreedyArgs<Real> a;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= a.B * a.T) return;
    const Real* xr = a.x + r * a.C;
    int64_t k = 0;
    for (int64_t c = 1; c < a.C; ++c)
      if (xr[c] > xr[k]) k = c;
    a.best[r] = int32_t(k);
  }
};

// thread per sample: merge, drop blanks, pad with -1, score in double as the CPU sums it.
template <typename Real>
struct Collapse {
  GreedyArgs<Real> a;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t b = th.global();
    if (b >= a.B) return;
    int32_t* out = a.decoded + b * a.T;
    const int32_t* best = a.best + b * a.T;
    double total = 0;
    int64_t n = 0, prev = -1;
    for (int64_t t = 0; t < a.lengths[b]; ++t) {
      const int64_t k = best[t];
      total += double(a.x[(b * a.T + t) * a.C + k]);
      if (k != a.blank && !(a.merge_repeated && k == prev)) out[n++] = int32_t(k);
      prev = k;
    }
    for (; n < a.T; ++n) out[n] = -1;
    a.score[b] = Real(-total);
  }
};

template <class Exec, typename Real>
void greedy_decode(Exec& ex, const GreedyArgs<Real>& a, int64_t block) {
  ex.launch(cover(a.B * a.T, block), Argmax<Real>{a});
  ex.launch(cover(a.B, block), Collapse<Real>{a});
}

}  // namespace faltung::cuda::ctc
