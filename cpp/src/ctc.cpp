// CTC loss forward and backward (see faltung/ctc.hpp for the definitions).
//
// Per sample b with input length T_b and extended label length L_b = 2 S_b + 1:
//   ylab_t(s)  = log y_t(l'_s)                                   (T_b x L_b, gathered once)
//   alpha_0(0) = ylab_0(0), alpha_0(1) = ylab_0(1)
//   alpha_t(s) = lse(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2) if skip(s)) + ylab_t(s)
//   gamma_{T_b-1}(L_b-1) = ylab, gamma_{T_b-1}(L_b-2) = ylab
//   gamma_t(s) = lse(gamma_{t+1}(s), gamma_{t+1}(s+1), gamma_{t+1}(s+2) if skip(s+2)) + ylab_t(s)
//   log P      = lse(alpha_{T_b-1}(L_b-1), alpha_{T_b-1}(L_b-2))
//   occupancy  = exp(alpha_t(s) + gamma_t(s) - ylab_t(s) - log P)
// skip(s): slot s holds a label (s odd) different from slot s-2's label.
//
// "log 0" is a large finite negative (kLogZero), not -inf: the recursions are branch-free
// vector loops over s, and -inf - -inf would make NaN where log-sum-exp needs 0. A sum of two or
// three kLogZero stays finite and exp() of it is 0. Genuine NaN inputs still propagate.
// The pragma: see activations.cpp (lets GCC vectorize the clamps and blends).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "faltung/ctc.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "elementwise.hpp"
#include "simd.hpp"

namespace faltung {

using elementwise::vexp;
using elementwise::vexp_le0;

namespace {

template <typename Real> constexpr Real kLogZero = Real(-1e30);
template <> constexpr double kLogZero<double> = -1e300;

// log(x) for x >= 1 (the argument of every log-sum-exp below lies in [1, 3]): x = 2^e m with
// m in [sqrt(1/2), sqrt(2)), log m = f - f^2/2 + f^3 P(f), f = m - 1, with the minimax
// polynomial P of Cephes' logf (error < 1e-7 relative on [1, 3], checked against libm over
// every float there). No division: a vector division costs as much as the rest of the log.
// Branch-free, so loops over it vectorize; double keeps libm.
inline float log_ge1_f(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  int32_t e = (bits >> 23) - 127;
  int32_t mbits = (bits & 0x007fffff) | 0x3f800000;  // m in [1, 2)
  float m;
  std::memcpy(&m, &mbits, sizeof(m));
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1 : e;
  const float f = m - 1.f, z = f * f;
  const float p = 3.3333331174e-1f + f * (-2.4999993993e-1f + f * (2.0000714765e-1f +
                  f * (-1.6668057665e-1f + f * (1.4249322787e-1f + f * (-1.2420140846e-1f +
                  f * (1.1676998740e-1f + f * (-1.1514610310e-1f + f * 7.0376836292e-2f)))))));
  return (f + (f * z * p - 0.5f * z)) + float(e) * 0.693147180559945309f;
}
template <typename Real> inline Real vlog_ge1(Real x) { return std::log(x); }
template <> inline float vlog_ge1<float>(float x) { return log_ge1_f(x); }

// log(e^a + e^b + e^c) = m + log(1 + e^(mid-m) + e^(low-m)) with m, mid, low the sorted
// arguments: two exps, not three. The sort (min/max) drops a NaN in b or c, so (b + c) * 0 (0
// for the finite arguments the recursions pass, NaN otherwise) carries it into the result;
// a NaN in a reaches m.
template <typename Real>
inline Real lse3(Real a, Real b, Real c) {
  const Real hi = std::max(a, b), lo = std::min(a, b);
  const Real m = std::max(hi, c), mid = std::max(lo, std::min(hi, c)), low = std::min(lo, c);
  return m + vlog_ge1(Real(1) + vexp_le0(mid - m) + vexp_le0(low - m)) + (b + c) * Real(0);
}
template <typename Real>
inline Real lse2(Real a, Real b) {
  const Real m = std::max(a, b);  // a NaN in a reaches m; one in b, the (a + b) * 0
  return m + vlog_ge1(vexp_le0(a - m) + vexp_le0(b - m)) + (a + b) * Real(0);
}

// A row's sum_k exp(x[k] - m) (its max: elementwise.hpp's max_of). Whole vectors only: a row
// that is no multiple of the vector width (28 classes: 16 + 12 at AVX-512) takes its last
// vector at C - W, overlapping the one before; the sum masks the overlap's lanes out. Scalar
// tails cost as much as the vectors at such widths. Rows narrower than a vector go scalar.
// e (C) receives the exps (the exp loops vectorize as they stand), or,
// if null, scratch (C) does. (Summing in registers instead, an omp simd reduction without the
// stores, measured slower at 5000 classes: 13.0 against 12.5 ms.)
// next (C), if not null, is the row the caller reads after this one: at many classes x comes
// from memory, and prefetching the next row a piece at a time beside the exps overlaps the
// two (the max of a row reads it first, at memory speed, then the exps compute from cache).
template <typename Real>
Real row_sumexp(const Real* x, int64_t C, Real m, Real* e, Real* scratch, const Real* next) {
  using V = typename simd::Vec<Real>::type;
  constexpr int W = simd::Vec<Real>::width;
  if (!e) e = scratch;
  if (C < W) {
    Real sum = 0;
    for (int64_t k = 0; k < C; ++k) sum += (e[k] = vexp(x[k] - m));
    return sum;
  }
  const int64_t full = C / W * W, tail = C - W;  // [0, full) whole vectors; [tail, C) the last
  constexpr int64_t kPiece = 1024 / sizeof(Real);  // 16 cache lines
  if (next) {
    for (int64_t k0 = 0; k0 < full; k0 += kPiece) {
      for (int64_t k = k0; k < std::min(C, k0 + kPiece); k += 64 / sizeof(Real))
        __builtin_prefetch(next + k);
      for (int64_t k = k0; k < std::min(full, k0 + kPiece); ++k) e[k] = vexp(x[k] - m);
    }
  } else {
    for (int64_t k = 0; k < full; ++k) e[k] = vexp(x[k] - m);
  }
  V vs = V{};
  for (int64_t k = 0; k < full; k += W) vs += simd::load<V>(e + k);
  if (full < C) {
#pragma omp simd
    for (int j = 0; j < W; ++j) e[tail + j] = vexp(x[tail + j] - m);
    V last = simd::load<V>(e + tail);
    for (int j = 0; j < W; ++j)  // lanes of [tail, full) are in vs already
      if (tail + j < full) last[j] = 0;
    vs += last;
  }
  return simd::hsum<Real>(vs);
}

// log(sum) for the row's sum of exps, which is >= 1 (the max contributes exp(0)) unless the row
// holds a NaN or an infinity: log_ge1_f then, libm otherwise (and for double).
template <typename Real> inline Real log_row_sum(Real sum) { return std::log(sum); }
template <> inline float log_row_sum<float>(float sum) {
  return sum >= 1.f && sum < std::numeric_limits<float>::infinity() ? log_ge1_f(sum) : std::log(sum);
}

// The recursions run over whole vectors of slots: a sample's 2 S_b + 1 slots rounded up to
// kSlotBlock (the widest vector, 16 floats), so that no scalar remainder loop runs (at 41 slots
// and 16 lanes it would cost as much as the vectors). Slots past 2 S_b hold kLogZero-level
// values that no real slot reads as more than 0.
constexpr int64_t kSlotBlock = 16;
// The most samples whose recursions one thread runs in lock-step (Ctc::run_alpha).
constexpr int kMaxGroup = 4;
// The most rows of x that Ctc::normalise_rows takes through its steps as one block.
constexpr int64_t kRowBlock = 64;
int64_t padded_slots(int64_t L) { return (L + kSlotBlock - 1) / kSlotBlock * kSlotBlock; }

// The workspace layout, computed here and nowhere else. Lp = 2S+1 slots rounded up to
// kSlotBlock, plus two pads (alpha rows keep two kLogZero pads in front, gamma rows two behind,
// so that s-2 and s+2 are valid).
struct CtcLayout {
  int64_t Lp, lse, ylab, alpha, gamma, skip, logp, total;
  CtcLayout(const CtcConfig& c, bool with_grad) {
    Lp = padded_slots(2 * c.S + 1) + 2;
    const int64_t rows = c.B * c.T;
    lse = 0;                                   // (B,T)    log-normaliser of each row of x
    ylab = lse + rows;                         // (B,T,Lp) log y_t(l'_s)
    alpha = ylab + rows * Lp;                  // (B,T,Lp) alpha_t(s) at s + 2
    gamma = alpha + rows * Lp;                 // (B,T,Lp) gamma_t(s) at s (gradient only)
    skip = gamma + (with_grad ? rows * Lp : 0);  // (B,Lp) skip table, see Ctc::setup
    logp = skip + c.B * Lp;                    // (B)      log P(l|x), kLogZero if infeasible
    total = logp + c.B;
  }
};

std::string arg_error(const char* what, int64_t b, int64_t value, const std::string& range) {
  return "ctc: " + std::string(what) + "[" + std::to_string(b) + "] = " + std::to_string(value) +
         " is outside " + range;
}

template <typename Real>
struct Ctc {
  const CtcConfig& c;
  const Real* x;
  const int32_t *labels, *label_len, *input_len;
  Real *loss, *grad, *ws;
  CtcLayout lay;

  int64_t L(int64_t b) const { return 2 * int64_t(label_len[b]) + 1; }
  int64_t Lpad(int64_t b) const { return padded_slots(L(b)); }
  std::vector<int32_t> ext_;  // (B, Lp) the extended labels l'_s, filled by setup
  int32_t ext(int64_t b, int64_t s) const { return ext_[b * lay.Lp + s]; }
  Real* row(int64_t off, int64_t b, int64_t t) const { return ws + off + (b * c.T + t) * lay.Lp; }
  bool feasible(int64_t b) const { return ws[lay.logp + b] == Real(0); }

  // Steps a label needs: one per label, plus a blank between equal neighbours.
  int64_t needed_steps(int64_t b) const {
    int64_t n = label_len[b];
    for (int64_t k = 1; k < label_len[b]; ++k) n += labels[b * c.S + k] == labels[b * c.S + k - 1];
    return n;
  }

  // Serial setup (B x Lp work): the extended labels, feasibility (logp 0 = feasible,
  // kLogZero = not) and the skip table sk[s] = 0 if slot s may be entered from slot s - 2, else
  // kLogZero (alpha reads sk[s], gamma sk[s + 2]; the entries past L_b stay kLogZero, so that
  // gamma's s + 2 reads nothing).
  void setup() {
    ext_.assign(size_t(c.B * lay.Lp), int32_t(c.blank));
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t k = 0; k < label_len[b]; ++k) ext_[b * lay.Lp + 2 * k + 1] = labels[b * c.S + k];
    for (int64_t b = 0; b < c.B; ++b) {
      ws[lay.logp + b] = needed_steps(b) <= input_len[b] ? Real(0) : kLogZero<Real>;
      Real* sk = ws + lay.skip + b * lay.Lp;
      std::fill(sk, sk + lay.Lp, kLogZero<Real>);
      for (int64_t s = 3; s < L(b); s += 2)
        if (ext(b, s) != ext(b, s - 2)) sk[s] = Real(0);
    }
  }

  // Rows t in [t0, t1) of sample b: the log-normaliser of each, its gathered ylab row and, with
  // grad, y_t (or 0) into grad. The rows go in blocks, each step over the whole block before the
  // next (the maxes, then the sums of exps, then the logs, ...): a row's steps form a chain
  // (max -> exps -> sum -> log -> gather) that leaves the core latency-bound at few classes,
  // while the block's rows are independent. A block's rows of x stay in cache between the
  // steps. scratch: C elements for the exps when there is no grad row to hold them.
  void normalise_rows(int64_t b, int64_t t0, int64_t t1, Real* scratch) {
    const int64_t C = c.C;
    const int64_t live = feasible(b) ? std::clamp<int64_t>(input_len[b], t0, t1) : t0;
    if (grad) std::fill(grad + (b * c.T + live) * C, grad + (b * c.T + t1) * C, Real(0));
    const int64_t block =
        std::clamp<int64_t>((int64_t(256) << 10) / (C * int64_t(sizeof(Real))), 1, kRowBlock);
    Real m[kRowBlock], sum[kRowBlock];
    for (int64_t tb = t0; tb < live; tb += block) {
      const int64_t n = std::min(block, live - tb);
      const Real* xb = x + (b * c.T + tb) * C;
      Real* gb = grad ? grad + (b * c.T + tb) * C : nullptr;
      Real* lse = ws + lay.lse + b * c.T + tb;
      if (c.log_probs) {
        std::fill(lse, lse + n, Real(0));
        if (gb) std::fill(gb, gb + n * C, Real(0));
      } else {
        for (int64_t i = 0; i < n; ++i) m[i] = elementwise::max_of(xb + i * C, C);
        // the next block's rows are prefetched beside this block's exps when they come from
        // memory (blocks of fewer than kRowBlock rows: more than 4 KB per row)
        const int64_t next_n = block < kRowBlock ? std::min(block, live - tb - n) : 0;
        for (int64_t i = 0; i < n; ++i)
          sum[i] = row_sumexp(xb + i * C, C, m[i], gb ? gb + i * C : nullptr, scratch,
                              i < next_n ? xb + (n + i) * C : nullptr);
        for (int64_t i = 0; i < n; ++i) lse[i] = m[i] + log_row_sum(sum[i]);
        if (gb)
          for (int64_t i = 0; i < n; ++i) {
            const Real inv = Real(1) / sum[i];
            Real* g = gb + i * C;
            for (int64_t k = 0; k < C; ++k) g[k] *= inv;
          }
      }
      for (int64_t i = 0; i < n; ++i) gather_labels(b, tb + i, xb + i * C, lse[i]);
    }
  }
  // ylab row (b, t) = the row's log-probabilities of the label classes. Whole vectors (the
  // padded slots index the blank) and an explicit simd loop, so that the gather becomes vector
  // code: the scalar loop cost a fifth of the loss at 28 classes.
  void gather_labels(int64_t b, int64_t t, const Real* xr, Real lse) {
    Real* yl = row(lay.ylab, b, t);
    const int64_t Lb = L(b), Ln = Lpad(b);
    const int32_t* e = ext_.data() + b * lay.Lp;
#pragma omp simd
    for (int64_t s = 0; s < Ln; ++s) {
      const Real v = std::max(xr[e[s]] - lse, kLogZero<Real>);
      yl[s] = s < Lb ? v : kLogZero<Real>;
    }
  }

  // A recursion's new cell, floored at kLogZero (x < floor, not max: a NaN passes through).
  // Without the floor, the slots past L_b, which add a kLogZero ylab at every step, would sink
  // towards -inf over very long inputs.
  static Real floored(Real x) { return x < kLogZero<Real> ? kLogZero<Real> : x; }

  // The slots [lo, hi) of row t that both recursions compute: a path can be in slot s at step t
  // only if s <= 2t + 1 (reachable from the start) and s >= L_b - 2 (T_b - t) (the end still
  // reachable), widened to whole kSlotBlocks. A cell inside the exact band reads only cells
  // inside the previous row's exact band, so log P and every occupancy are unchanged; the rest
  // of the row is kLogZero (fill_outside). At S close to T this skips half the cells.
  std::pair<int64_t, int64_t> band(int64_t b, int64_t t) const {
    const int64_t lo = std::max<int64_t>(0, L(b) - 2 * (int64_t(input_len[b]) - t));
    return {lo / kSlotBlock * kSlotBlock, std::min(Lpad(b), padded_slots(2 * t + 2))};
  }
  void fill_outside(Real* r, int64_t lo, int64_t hi, int64_t Ln) const {
    std::fill(r, r + lo, kLogZero<Real>);
    std::fill(r + std::max(lo, hi), r + Ln, kLogZero<Real>);
  }

  // The recursions are chains over t: a step's few vectors of slots wait for the previous
  // step's (two exps and a log deep), so one sample leaves the core mostly idle. They run for a
  // group of samples in lock-step instead: at each t, every sample of the group takes its step,
  // and the out-of-order core overlaps the group's independent chains. bs: the group's samples,
  // each feasible with input_len > 0.
  void alpha_init(int64_t b) {
    Real* a = row(lay.alpha, b, 0);
    std::fill(a, a + lay.Lp, kLogZero<Real>);
    const Real* y0 = row(lay.ylab, b, 0);
    a[2] = y0[0];
    if (L(b) > 1) a[3] = y0[1];
  }
  void alpha_step(int64_t b, int64_t t) {
    const Real* sk = ws + lay.skip + b * lay.Lp;
    const Real* ap = row(lay.alpha, b, t - 1) + 2;
    Real* at = row(lay.alpha, b, t) + 2;
    const Real* yl = row(lay.ylab, b, t);
    at[-2] = at[-1] = kLogZero<Real>;
    const auto [lo, hi] = band(b, t);
    fill_outside(at, lo, hi, Lpad(b));
    for (int64_t s = lo; s < hi; ++s)
      at[s] = floored(lse3(ap[s], ap[s - 1], ap[s - 2] + sk[s]) + yl[s]);
  }
  void run_alpha(const int64_t* bs, int n) {
    int64_t Tmax = 0;
    for (int i = 0; i < n; ++i) {
      alpha_init(bs[i]);
      Tmax = std::max<int64_t>(Tmax, input_len[bs[i]]);
    }
    for (int64_t t = 1; t < Tmax; ++t)
      for (int i = 0; i < n; ++i)
        if (t < input_len[bs[i]]) alpha_step(bs[i], t);
    for (int i = 0; i < n; ++i) {
      const int64_t b = bs[i], Lb = L(b);
      const Real* al = row(lay.alpha, b, input_len[b] - 1) + 2;
      ws[lay.logp + b] = Lb > 1 ? lse2(al[Lb - 1], al[Lb - 2]) : al[0];
    }
  }

  void gamma_init(int64_t b) {
    const int64_t Lb = L(b), Tb = input_len[b];
    Real* g = row(lay.gamma, b, Tb - 1);
    std::fill(g, g + lay.Lp, kLogZero<Real>);
    const Real* yT = row(lay.ylab, b, Tb - 1);
    g[Lb - 1] = yT[Lb - 1];
    if (Lb > 1) g[Lb - 2] = yT[Lb - 2];
  }
  void gamma_step(int64_t b, int64_t t) {
    const int64_t Ln = Lpad(b);
    const Real* sk = ws + lay.skip + b * lay.Lp + 2;  // sk[s] = skip table at s + 2
    const Real* gn = row(lay.gamma, b, t + 1);
    Real* gt = row(lay.gamma, b, t);
    const Real* yl = row(lay.ylab, b, t);
    gt[Ln] = gt[Ln + 1] = kLogZero<Real>;
    const auto [lo, hi] = band(b, t);
    fill_outside(gt, lo, hi, Ln);
    for (int64_t s = lo; s < hi; ++s)
      gt[s] = floored(lse3(gn[s], gn[s + 1], gn[s + 2] + sk[s]) + yl[s]);
  }
  // Steps t = T_b - 2 .. 0 of each sample; samples of different lengths join as t reaches them.
  void run_gamma(const int64_t* bs, int n) {
    int64_t Tmax = 0;
    for (int i = 0; i < n; ++i) {
      gamma_init(bs[i]);
      Tmax = std::max<int64_t>(Tmax, input_len[bs[i]]);
    }
    for (int64_t t = Tmax - 2; t >= 0; --t)
      for (int i = 0; i < n; ++i)
        if (t <= input_len[bs[i]] - 2) gamma_step(bs[i], t);
  }

  // grad row (b, t) -= occupancy of each slot, scattered to its class.
  void occupancy_row(int64_t b, int64_t t, Real* occ) {
    if (t >= input_len[b] || !feasible_after(b)) return;
    const int64_t Lb = L(b);
    const Real* a = row(lay.alpha, b, t) + 2;
    const Real* gm = row(lay.gamma, b, t);
    const Real* yl = row(lay.ylab, b, t);
    const Real lp = ws[lay.logp + b];
    for (int64_t s = 0; s < Lb; ++s) occ[s] = vexp(a[s] + gm[s] - yl[s] - lp);
    Real* g = grad + (b * c.T + t) * c.C;
    for (int64_t s = 0; s < Lb; ++s) g[ext(b, s)] -= occ[s];
  }
  // After run_alpha, logp holds log P; an infeasible sample kept kLogZero (and a feasible one
  // can underflow to it only if P < e^-1e30, i.e. never for finite inputs).
  // (Written as a negation so that a NaN log P, from NaN inputs, counts as feasible: the loss
  // and the gradient then propagate the NaN.)
  bool feasible_after(int64_t b) const { return !(ws[lay.logp + b] <= kLogZero<Real> / 2); }

  // Everything for the samples [b0, b1) on the calling thread, the recursions as one group.
  void run_samples(int64_t b0, int64_t b1, Real* occ, Real* scratch) {
    int64_t bs[kMaxGroup];
    int n = 0;
    for (int64_t b = b0; b < b1; ++b) {
      normalise_rows(b, 0, c.T, scratch);
      if (feasible(b) && input_len[b] > 0) bs[n++] = b;
    }
    if (n == 0) return;
    run_alpha(bs, n);
    if (!grad) return;
    run_gamma(bs, n);
    for (int i = 0; i < n; ++i)
      for (int64_t t = 0; t < input_len[bs[i]]; ++t) occupancy_row(bs[i], t, occ);
  }

  // Two schedules. With at least two samples per thread, each sample runs start to end on one
  // thread (dynamic schedule, no barrier, its rows stay in cache). With fewer (batch 1, or a
  // few long sequences) the work runs in three phases split over the team: the rows of x, then
  // the alpha and gamma recursions as independent tasks (so alpha and gamma of one sample run
  // at once), then the gradient rows.
  void run() {
    setup();
    const int64_t rows = c.B * c.T;
    const int64_t work = rows * (c.C + lay.Lp);
    const int nt = work < (1 << 14) ? 1 : get_num_threads();
    // per thread: an occupancy row (Lp) and, for the loss alone, a row of exp(x - max) (C)
    const int64_t per_thread = lay.Lp + (grad ? 0 : c.C);
    std::vector<Real> thread_buf(size_t(nt * per_thread));
    auto occ_of = [&](int i) { return thread_buf.data() + i * per_thread; };
    if (c.B >= 2 * nt) {
      // groups of up to kMaxGroup samples, at least two groups per thread
      const int64_t group = std::clamp<int64_t>(c.B / (2 * nt), 1, kMaxGroup);
      const int64_t ngroups = (c.B + group - 1) / group;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
      for (int64_t k = 0; k < ngroups; ++k) {
        Real* occ = occ_of(omp_get_thread_num());
        run_samples(k * group, std::min(c.B, (k + 1) * group), occ, occ + lay.Lp);
      }
    } else {
      std::vector<int64_t> tasks;  // 2b: alpha of sample b, 2b+1: its gamma
      for (int64_t b = 0; b < c.B; ++b) {
        if (!feasible(b) || input_len[b] == 0) continue;
        tasks.push_back(2 * b);
        if (grad) tasks.push_back(2 * b + 1);
      }
      const int64_t ntasks = int64_t(tasks.size());
      const int64_t blocks = (c.T + kRowBlock - 1) / kRowBlock;
#pragma omp parallel num_threads(nt)
      {
        Real* occ = occ_of(omp_get_thread_num());
#pragma omp for schedule(static)
        for (int64_t k = 0; k < c.B * blocks; ++k) {  // blocks of kRowBlock rows of a sample
          const int64_t b = k / blocks, t0 = k % blocks * kRowBlock;
          normalise_rows(b, t0, std::min(c.T, t0 + kRowBlock), occ + lay.Lp);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < ntasks; ++k) {
          const int64_t b = tasks[k] / 2;
          if (tasks[k] & 1) run_gamma(&b, 1);
          else run_alpha(&b, 1);
        }
        if (grad) {
#pragma omp for schedule(static)
          for (int64_t r = 0; r < rows; ++r) occupancy_row(r / c.T, r % c.T, occ);
        }
      }
    }
    for (int64_t b = 0; b < c.B; ++b) {
      if (input_len[b] == 0 && label_len[b] == 0) { loss[b] = 0; continue; }
      if (feasible_after(b) && input_len[b] > 0) loss[b] = -ws[lay.logp + b];
      else loss[b] = c.zero_infinity ? Real(0) : std::numeric_limits<Real>::infinity();
    }
  }
};

}  // namespace

void ctc_check(const CtcConfig& c, const int32_t* labels, const int32_t* label_lengths,
               const int32_t* input_lengths) {
  FALTUNG_CHECK(c.B >= 0 && c.T >= 0 && c.S >= 0 && c.C >= 1,
                "ctc: expected non-negative sizes and at least one class, received B=" +
                    std::to_string(c.B) + ", T=" + std::to_string(c.T) + ", C=" +
                    std::to_string(c.C) + ", S=" + std::to_string(c.S));
  FALTUNG_CHECK(c.blank >= 0 && c.blank < c.C,
                "ctc: the blank index (mask_index) " + std::to_string(c.blank) +
                    " is outside [0, " + std::to_string(c.C) + ")");
  for (int64_t b = 0; b < c.B; ++b) {
    FALTUNG_CHECK(input_lengths[b] >= 0 && input_lengths[b] <= c.T,
                  arg_error("output_length", b, input_lengths[b],
                            "[0, " + std::to_string(c.T) + "] (the time axis of `output`)"));
    FALTUNG_CHECK(label_lengths[b] >= 0 && label_lengths[b] <= c.S,
                  arg_error("target_length", b, label_lengths[b],
                            "[0, " + std::to_string(c.S) + "] (the label axis of `target`)"));
    FALTUNG_CHECK(label_lengths[b] <= c.T,
                  "ctc: target_length[" + std::to_string(b) + "] = " +
                      std::to_string(label_lengths[b]) + " exceeds the time axis of `output` (" +
                      std::to_string(c.T) + " steps): no alignment can exist; the model's "
                      "output sequence is shorter than its labels");
    for (int64_t k = 0; k < label_lengths[b]; ++k) {
      const int64_t v = labels[b * c.S + k];
      FALTUNG_CHECK(v >= 0 && v < c.C && v != c.blank,
                    "ctc: target[" + std::to_string(b) + ", " + std::to_string(k) + "] = " +
                        std::to_string(v) + " is not a label: labels lie in [0, " +
                        std::to_string(c.C) + ") and differ from the blank index " +
                        std::to_string(c.blank));
    }
  }
}

int64_t ctc_workspace_size(const CtcConfig& c, bool with_grad) {
  return CtcLayout(c, with_grad).total;
}

template <typename Real>
void ctc_loss(const CtcConfig& c, const Real* x, const int32_t* labels,
              const int32_t* label_lengths, const int32_t* input_lengths, Real* loss, Real* grad,
              Real* workspace) {
  ctc_check(c, labels, label_lengths, input_lengths);
  Ctc<Real>{c, x, labels, label_lengths, input_lengths, loss, grad, workspace,
            CtcLayout(c, grad != nullptr)}
      .run();
}

#define FALTUNG_INSTANTIATE(Real)                                                            \
  template void ctc_loss<Real>(const CtcConfig&, const Real*, const int32_t*, const int32_t*, \
                               const int32_t*, Real*, Real*, Real*);
FALTUNG_INSTANTIATE(float)
FALTUNG_INSTANTIATE(double)
#undef FALTUNG_INSTANTIATE

}  // namespace faltung
