// CTC decoding: greedy (best path) and prefix beam search (see faltung/ctc.hpp).
//
// Beam search keeps, for each prefix in the beam, the log-probability of the paths that
// collapse to it and end in a blank (pb) or in its last label (pnb). One step with log y_t:
//   prefix p stays:     pb(p)  += (pb + pnb)(p) y_t(blank)      (a blank)
//                       pnb(p) += pnb(p) y_t(last(p))           (its last label repeated)
//   p extends by c:     pnb(p+c) += (c == last(p) ? pb(p) : (pb + pnb)(p)) y_t(c)
// (sums in log space). Prefixes are nodes of a trie (parent, label), created only when a new
// prefix enters the beam; an extension p+c that already is a node (it was in an earlier beam)
// accumulates onto that node, so two routes to one prefix always merge. A new extension is a
// prefix reached exactly once this step (p and c are unique), so it needs no merging: it is
// only a candidate, and it is skipped at once if it cannot beat the beam_width-th best of the
// prefixes that stay (a lower bound of the final threshold).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "faltung/common.hpp"
#include "faltung/ctc.hpp"

namespace faltung {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

inline double lse2(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  const double m = std::max(a, b);
  return m + std::log1p(std::exp(-std::abs(a - b)));
}

// The one thread's state while it decodes one sample (reused across samples).
struct BeamSearch {
  // trie
  std::vector<int32_t> parent, label, first_child, next_sibling;
  // per node accumulators of the current step, valid where stamp == step
  std::vector<double> pb, pnb;
  std::vector<int64_t> stamp;
  std::vector<int32_t> beam, touched, child_of;  // child_of: (C) scratch, -1 where no child
  std::vector<double> lp;                        // (C) log y_t
  struct Cand {
    double score;
    int32_t node;   // existing node, or the parent of a new extension
    int32_t label;  // -1 for an existing node, else the label of the new extension
  };
  std::vector<Cand> cands;

  int32_t new_node(int32_t par, int32_t lab) {
    const int32_t id = int32_t(parent.size());
    parent.push_back(par);
    label.push_back(lab);
    first_child.push_back(-1);
    next_sibling.push_back(-1);
    pb.push_back(kNegInf);
    pnb.push_back(kNegInf);
    stamp.push_back(-1);
    if (par >= 0) {
      next_sibling[id] = first_child[par];
      first_child[par] = id;
    }
    return id;
  }

  // accumulate into node n's step accumulators (first touch resets them)
  void add(int32_t n, int64_t step, double to_pb, double to_pnb) {
    if (stamp[n] != step) {
      stamp[n] = step;
      pb[n] = pnb[n] = kNegInf;
      touched.push_back(n);
    }
    pb[n] = lse2(pb[n], to_pb);
    pnb[n] = lse2(pnb[n], to_pnb);
  }

  template <typename Real>
  void decode(const Real* x, int64_t Tb, int64_t T, int64_t C, int64_t blank, int64_t width,
              int64_t top_paths, int32_t* decoded, int64_t dstride, Real* log_prob) {
    parent.clear(); label.clear(); first_child.clear(); next_sibling.clear();
    pb.clear(); pnb.clear(); stamp.clear();
    child_of.assign(size_t(C), -1);
    lp.resize(size_t(C));
    const int32_t root = new_node(-1, -1);
    pb[root] = 0;  // the empty prefix, before any step: probability 1
    stamp[root] = 0;
    beam.assign(1, root);
    for (int64_t t = 0; t < Tb; ++t) {
      const int64_t step = t + 1;
      // log y_t = log_softmax(x_t)
      const Real* xr = x + t * C;
      double m = kNegInf, sum = 0;
      for (int64_t k = 0; k < C; ++k) m = std::max(m, double(xr[k]));
      for (int64_t k = 0; k < C; ++k) sum += std::exp(double(xr[k]) - m);
      const double lz = m + std::log(sum);
      for (int64_t k = 0; k < C; ++k) lp[k] = double(xr[k]) - lz;

      touched.clear();
      cands.clear();
      // the staying prefixes first: they give the lower bound for new extensions
      std::vector<double> prev_total(beam.size());
      std::vector<double> prev_pb(beam.size()), prev_pnb(beam.size());
      for (size_t i = 0; i < beam.size(); ++i) {
        const int32_t p = beam[i];
        prev_pb[i] = pb[p];
        prev_pnb[i] = pnb[p];
        prev_total[i] = lse2(pb[p], pnb[p]);
      }
      for (size_t i = 0; i < beam.size(); ++i) {
        const int32_t p = beam[i];
        add(p, step, prev_total[i] + lp[blank],
            label[p] >= 0 ? prev_pnb[i] + lp[label[p]] : kNegInf);
      }
      // extensions onto existing nodes
      for (size_t i = 0; i < beam.size(); ++i) {
        const int32_t p = beam[i];
        for (int32_t q = first_child[p]; q >= 0; q = next_sibling[q]) {
          const double from = label[q] == label[p] ? prev_pb[i] : prev_total[i];
          add(q, step, kNegInf, from + lp[label[q]]);
        }
      }
      double bound = kNegInf;  // the width-th best total among the touched nodes
      if (int64_t(touched.size()) >= width) {
        std::vector<double> tot(touched.size());
        for (size_t i = 0; i < touched.size(); ++i) tot[i] = lse2(pb[touched[i]], pnb[touched[i]]);
        std::nth_element(tot.begin(), tot.begin() + (width - 1), tot.end(), std::greater<double>());
        bound = tot[size_t(width - 1)];
      }
      for (int32_t n : touched) cands.push_back({lse2(pb[n], pnb[n]), n, -1});
      // new extensions
      for (size_t i = 0; i < beam.size(); ++i) {
        const int32_t p = beam[i];
        for (int32_t q = first_child[p]; q >= 0; q = next_sibling[q]) child_of[label[q]] = q;
        for (int64_t k = 0; k < C; ++k) {
          if (k == blank || child_of[k] >= 0) continue;
          const double score = (k == label[p] ? prev_pb[i] : prev_total[i]) + lp[k];
          if (score > bound && score > kNegInf) cands.push_back({score, p, int32_t(k)});
        }
        for (int32_t q = first_child[p]; q >= 0; q = next_sibling[q]) child_of[label[q]] = -1;
      }
      // keep the best `width` (nth_element: the same input gives the same choice on ties)
      auto better = [](const Cand& a, const Cand& b) { return a.score > b.score; };
      if (int64_t(cands.size()) > width) {
        std::nth_element(cands.begin(), cands.begin() + (width - 1), cands.end(), better);
        cands.resize(size_t(width));
      }
      beam.clear();
      for (const Cand& cd : cands) {
        if (cd.label < 0) {
          beam.push_back(cd.node);
        } else {
          const int32_t n = new_node(cd.node, cd.label);
          stamp[n] = step;
          pb[n] = kNegInf;
          pnb[n] = cd.score;
          beam.push_back(n);
        }
      }
    }
    // the best top_paths prefixes, best first
    std::vector<std::pair<double, int32_t>> ranked;
    for (int32_t n : beam) ranked.push_back({lse2(pb[n], pnb[n]), n});
    std::stable_sort(ranked.begin(), ranked.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<int32_t> path;
    for (int64_t k = 0; k < top_paths; ++k) {
      int32_t* out = decoded + k * dstride;
      std::fill(out, out + T, -1);
      if (k >= int64_t(ranked.size())) {
        log_prob[k] = Real(kNegInf);
        continue;
      }
      path.clear();
      for (int32_t n = ranked[k].second; n != root; n = parent[n]) path.push_back(label[n]);
      std::reverse(path.begin(), path.end());
      std::copy(path.begin(), path.end(), out);
      log_prob[k] = Real(ranked[k].first);
    }
  }
};

void check_decode_args(const int32_t* lengths, int64_t B, int64_t T, int64_t C, int64_t blank) {
  FALTUNG_CHECK(B >= 0 && T >= 0 && C >= 1,
                "ctc_decode: expected non-negative sizes and at least one class, received "
                "inputs.shape=" + shape_str({B, T, C}));
  FALTUNG_CHECK(blank >= 0 && blank < C, "ctc_decode: the blank index (mask_index) " +
                                             std::to_string(blank) + " is outside [0, " +
                                             std::to_string(C) + ")");
  for (int64_t b = 0; b < B; ++b)
    FALTUNG_CHECK(lengths[b] >= 0 && lengths[b] <= T,
                  "ctc_decode: sequence_lengths[" + std::to_string(b) + "] = " +
                      std::to_string(lengths[b]) + " is outside [0, " + std::to_string(T) +
                      "] (the time axis of `inputs`)");
}

}  // namespace

template <typename Real>
void ctc_greedy_decode(const Real* x, const int32_t* lengths, int64_t B, int64_t T, int64_t C,
                       int64_t blank, bool merge_repeated, int32_t* decoded, Real* score) {
  check_decode_args(lengths, B, T, C, blank);
#pragma omp parallel for schedule(static) num_threads(B * T * C < (1 << 15) ? 1 : get_num_threads())
  for (int64_t b = 0; b < B; ++b) {
    int32_t* out = decoded + b * T;
    std::fill(out, out + T, -1);
    double total = 0;
    int64_t n = 0, prev = -1;
    for (int64_t t = 0; t < lengths[b]; ++t) {
      const Real* xr = x + (b * T + t) * C;
      const int64_t best = std::max_element(xr, xr + C) - xr;  // first maximum
      total += double(xr[best]);
      if (best != blank && !(merge_repeated && best == prev)) out[n++] = int32_t(best);
      prev = best;
    }
    score[b] = Real(-total);
  }
}

template <typename Real>
void ctc_beam_search_decode(const Real* x, const int32_t* lengths, int64_t B, int64_t T,
                            int64_t C, int64_t blank, int64_t beam_width, int64_t top_paths,
                            int32_t* decoded, Real* log_prob) {
  check_decode_args(lengths, B, T, C, blank);
  FALTUNG_CHECK(beam_width >= 1, "ctc_decode: expected beam_width >= 1, received " +
                                     std::to_string(beam_width));
  FALTUNG_CHECK(top_paths >= 1 && top_paths <= beam_width,
                "ctc_decode: expected 1 <= top_paths <= beam_width=" +
                    std::to_string(beam_width) + ", received top_paths=" +
                    std::to_string(top_paths));
  const int nt = B > 1 && B * T * C * beam_width >= (1 << 16) ? get_num_threads() : 1;
#pragma omp parallel num_threads(nt)
  {
    BeamSearch bs;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b)
      bs.decode(x + b * T * C, lengths[b], T, C, blank, beam_width, top_paths, decoded + b * T,
                B * T, log_prob + b * top_paths);
  }
}

#define FALTUNG_INSTANTIATE(Real)                                                          \
  template void ctc_greedy_decode<Real>(const Real*, const int32_t*, int64_t, int64_t,     \
                                        int64_t, int64_t, bool, int32_t*, Real*);          \
  template void ctc_beam_search_decode<Real>(const Real*, const int32_t*, int64_t, int64_t, \
                                             int64_t, int64_t, int64_t, int64_t, int32_t*,  \
                                             Real*);
FALTUNG_INSTANTIATE(float)
FALTUNG_INSTANTIATE(double)
#undef FALTUNG_INSTANTIATE

}  // namespace faltung
