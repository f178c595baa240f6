// faltung/ctc.hpp — connectionist temporal classification: the loss -log P(l|x) with its
// gradient (alpha/beta recursions in log space), and greedy and prefix-beam-search decoding.
//
// B batch, T time steps (padded), C classes (blank included), S label slots (padded), L = 2S+1
// extended-label slots. Real is float or double.
// Layouts as Keras (batch-major, not PyTorch's time-major): x (B,T,C) logits or
// log-probabilities, labels (B,S) int32 (slots past a sample's label length are ignored),
// label_lengths (B) and input_lengths (B) int32, loss (B), grad (B,T,C).
//
// Definitions. y_t = softmax(x_t) (or exp(x_t) for log-probabilities). For sample b with input
// length T_b and label l of length S_b, the extended label l' = (blank, l1, blank, l2, ...,
// blank) has 2 S_b + 1 slots; P(l|x) is the sum over every path of length T_b that collapses
// to l (merge repeats, then drop blanks), i.e. over paths through l' that move 0, 1 or 2 slots
// per step (2 only onto a label different from the one two slots back).
//   log alpha_t(s) = log sum of the path prefixes x_0..x_t ending in slot s (emissions 0..t)
//   log gamma_t(s) = log sum of the path suffixes x_t..x_{T_b-1} starting in slot s (t..T_b-1)
// so alpha_t(s) gamma_t(s) / y_t(l'_s) is the mass of the paths through slot s at time t and
// sums to P(l|x) over s at every t. loss = -log P(l|x).
// Gradient with respect to the logits: y_tc - (1/P) sum_{s: l'_s = c} alpha_t(s) gamma_t(s) /
// y_t(l'_s); with respect to log-probabilities the second term alone, negated (x is then not
// renormalised; PyTorch's ctc_loss returns exp(x) minus that term instead, which equals the
// logits gradient only when a log_softmax precedes it). Steps t >= T_b get a zero gradient.
//
// Infeasible alignments: a label needs S_b + (number of adjacent equal pairs) steps; with fewer
// (T_b too short) the loss is +inf and the gradient 0, never NaN; zero_infinity turns that loss
// into 0. An empty label has P = prod_t y_t(blank) (P = 1 when T_b = 0).
//
// Memory (the warp-ctc pattern): ctc_workspace_size(config) is the number of Real elements the
// loss needs; the caller passes a buffer of that size. Its layout is computed in one place
// (ctc.cpp's CtcLayout), never elsewhere. Threads: one OpenMP region per call; the rows (b, t)
// of the softmax and gradient passes are split over the team, and the alpha and gamma
// recursions of every sample are 2B independent tasks, so a single long sequence still uses
// two threads (alpha on one, gamma on the other).
#pragma once
#include <cstdint>

namespace faltung {

struct CtcConfig {
  int64_t B = 0, T = 0, C = 0, S = 0;
  int64_t blank = 0;            // index of the blank class in [0, C) (Keras: mask_index)
  bool log_probs = false;       // x holds log-probabilities (not renormalised) instead of logits
  bool zero_infinity = false;   // infeasible samples: loss 0 instead of +inf (gradient 0 either way)
};

// Throws std::invalid_argument naming the argument for: a negative size, C == 0, blank outside
// [0, C), a length outside [0, T] / [0, S], a label longer than the whole time axis T (no
// sample could align it: the model's output is too short; a label merely too long for its own
// input length is the infeasible case above), a label (within its sample's length) outside
// [0, C) or equal to blank.
void ctc_check(const CtcConfig& c, const int32_t* labels, const int32_t* label_lengths,
               const int32_t* input_lengths);

// Elements of Real the loss kernel needs as workspace (with or without the gradient).
int64_t ctc_workspace_size(const CtcConfig& c, bool with_grad);

// loss (B) = -log P(l_b | x_b); grad (B,T,C) = d loss_b / d x_b, or nullptr for the loss only.
// workspace: ctc_workspace_size(c, grad != nullptr) elements. Validates with ctc_check first.
template <typename Real>
void ctc_loss(const CtcConfig& c, const Real* x, const int32_t* labels,
              const int32_t* label_lengths, const int32_t* input_lengths, Real* loss, Real* grad,
              Real* workspace);

// Greedy (best path) decoding as Keras's ctc_decode(strategy="greedy"): per step the argmax
// of x (the first one on ties; steps t >= lengths[b] count as blank), repeats merged when
// merge_repeated (a class equal to the previous step's becomes blank), blanks dropped.
// decoded (B,T) int32: the labels, then -1 padding. score (B) = -sum_{t < lengths[b]} max_c x_tc.
template <typename Real>
void ctc_greedy_decode(const Real* x, const int32_t* lengths, int64_t B, int64_t T, int64_t C,
                       int64_t blank, bool merge_repeated, int32_t* decoded, Real* score);

// Prefix beam search over y_t = softmax(x_t) as Keras's ctc_decode(strategy="beam_search"):
// at each step every kept prefix is extended by every class (a blank or a repeat of its last
// label keeps it, a repeat after a blank extends it), prefixes reached twice merge by log-sum,
// and the beam_width most probable prefixes are kept. decoded (top_paths, B, T) int32, labels
// then -1 padding; log_prob (B, top_paths), the prefixes' log-probabilities, best first (-inf
// and an empty path where fewer than top_paths prefixes exist).
template <typename Real>
void ctc_beam_search_decode(const Real* x, const int32_t* lengths, int64_t B, int64_t T,
                            int64_t C, int64_t blank, int64_t beam_width, int64_t top_paths,
                            int32_t* decoded, Real* log_prob);

}  // namespace faltung
