// faltung/rnn.hpp — recurrent kernels: SimpleRNN, LSTM, GRU, forward and backward.
//
// B batch, T time steps, F input features, U units, G gates (SimpleRNN 1, LSTM 4, GRU 3),
// GU = G*U gate columns, N packed rows (see RnnPlan), s a processing step, t an input time
// (t = s, or T-1-s when go_backwards), p a sample's position in the plan's sorted order.
// Real is float or double.
//
// Layouts as Keras 3: x (B,T,F), kernel W (F,GU), recurrent kernel R (U,GU), gate blocks of
// U columns in Keras's order (LSTM i, f, c, o; GRU z, r, h); bias (GU), or (2,GU) for a GRU
// with reset_after (row 0 input bias, row 1 recurrent bias); h0, c0, h_T, c_T (B,U);
// outputs hs (B,T,U) in processing order (hs[:, s] follows input time t(s), as Keras returns
// them); mask (B,T) bytes (0 = masked) in input time; recurrent mask (B,U).
//
// Equations (a = activation, ra = recurrent_activation, m = recurrent mask, 1 if none):
//   SimpleRNN  h_t = a(x_t W + b + (h_{t-1} m) R)
//   LSTM       z = x_t W + b + (h_{t-1} m) R;  i, f, o = ra(z_i, z_f, z_o);  g = a(z_c)
//              c_t = f c_{t-1} + i g;  h_t = o a(c_t)
//   GRU        z, r = ra(x_{z,r} + b_{z,r} + (h_{t-1} m) R_{z,r} + rb_{z,r})
//              reset_after:     hh = a(x_h + b_h + r ((h_{t-1} m) R_h + rb_h))
//              not reset_after: hh = a(x_h + b_h + (r h_{t-1} m) R_h)
//              h_t = z h_{t-1} + (1 - z) hh
// Mask (Keras): at a masked step the states are carried unchanged and the output is the
// carried h, or zeros with zero_output_for_mask.
//
// Algorithm. The plan sorts the samples by their interval of unmasked steps (first, last+1
// in processing order) so that at each step the samples with work form one range [lo, hi) of
// sorted positions (exactly, for right- or left-padded masks; a bounding range otherwise).
// Every per-step array is packed time-major: step s owns rows off[s] .. off[s+1] (one per
// position in [lo, hi)), so padded steps take no rows, no GEMM and no gate math. Forward:
// x is gathered into the packed order and projected by one GEMM (N x F x GU); per step one
// recurrent product onto that block, then bias, gates and state update on the block (GRU
// without reset_after: the h-gate product is a second one after r). Backward: per step the
// recurrent product back, dW = Xp^T dZ, dR = Hm^T dZ, dx = dZ W^T as single GEMMs over all
// N rows after the loop. The per-step products run against the recurrent kernel packed once
// per call into panels (cpp/src/rnn_gemm.hpp, a register-tiled kernel), not OpenBLAS. One
// OpenMP parallel region per call; per step the team splits each gate's columns by units
// (whole panel blocks) when there is a block per thread, else the range [lo, hi) by rows,
// and meets at one barrier per step (a second one inside the step in the unit split).
// The GEMMs over all rows: the input projection and dx run the same register tiles against W
// (or W^T) packed once per call while it fits a core's L2, the weight gradients (and larger
// W) single-threaded OpenBLAS (faltung::gemm) in each thread.
//
// Memory (the warp-ctc pattern): the caller asks rnn_plan for the plan, rnn_saved_size and
// rnn_*_workspace_size for the buffer sizes, and passes the buffers. Forward with training
// fills the `saved` buffer; backward reads it (it never recomputes the forward).
#pragma once
#include <cstdint>
#include <vector>

#include "faltung/activations.hpp"

namespace faltung {

enum class RnnCell { simple_rnn, lstm, gru };

// The hyperparameters and sizes of one call. Validated by rnn_check.
struct RnnConfig {
  RnnCell cell = RnnCell::lstm;
  int64_t B = 0, T = 0, F = 0, U = 0;
  bool has_bias = false;           // bias given
  bool reset_after = true;         // GRU only
  bool go_backwards = false;
  bool zero_output_for_mask = false;
  bool has_recurrent_mask = false;
  Act act = Act::tanh, rec_act = Act::sigmoid;  // rec_act unused by SimpleRNN
  ActParams act_params, rec_act_params;
  int64_t gates() const { return cell == RnnCell::simple_rnn ? 1 : cell == RnnCell::lstm ? 4 : 3; }
  int64_t GU() const { return gates() * U; }
};

// Throws std::invalid_argument naming the op if a size is negative or U == 0.
void rnn_check(const RnnConfig& c);

// The team splits a step's rows (instead of its units) when the packed recurrent kernel is at
// most this many bytes: by default half the L2 of a core (sysconf), 256 KB where unknown. For
// tests and tuning: rnn_set_row_split_bytes(0) restores the default.
void rnn_set_row_split_bytes(int64_t bytes);
int64_t rnn_get_row_split_bytes();

// The packed schedule of a call, from the mask (nullptr: every step of every sample).
struct RnnPlan {
  int64_t N = 0;                    // packed rows = sum over steps of (hi[s] - lo[s])
  std::vector<int64_t> perm;        // (B) sorted position p -> batch index b
  std::vector<int64_t> lo, hi;      // (T) step s works on sorted positions [lo[s], hi[s])
  std::vector<int64_t> off;         // (T+1) step s owns packed rows [off[s], off[s+1])
  std::vector<uint8_t> active;      // (N) packed row unmasked; empty when every row is
};
// mask (B,T) in input time or nullptr.
RnnPlan rnn_plan(const RnnConfig& c, const uint8_t* mask);

// Elements (of Real) of the buffer forward(training) fills and backward reads.
int64_t rnn_saved_size(const RnnConfig& c, const RnnPlan& plan);
// Bytes of scratch forward / backward need (Real = float: 4-byte elements, double: 8). The
// backward's depends on faltung's thread count (per-thread partial sums of the weight and bias
// gradients): ask for it under the same set_num_threads as the call that uses it.
template <typename Real>
int64_t rnn_forward_workspace_size(const RnnConfig& c, const RnnPlan& plan, bool training);
template <typename Real>
int64_t rnn_backward_workspace_size(const RnnConfig& c, const RnnPlan& plan, bool need_dx,
                                    bool need_dweights);

template <typename Real>
struct RnnWeights {
  const Real* kernel = nullptr;            // W (F,GU)
  const Real* recurrent_kernel = nullptr;  // R (U,GU)
  const Real* bias = nullptr;              // (GU), (2,GU) GRU reset_after, or nullptr
  const Real* recurrent_mask = nullptr;    // m (B,U) or nullptr
};

// x (B,T,F), h0/c0 (B,U) or nullptr (zeros) -> hs (B,T,U), h_T (B,U), c_T (B,U) (LSTM; else
// ignored). saved (rnn_saved_size elements) or nullptr when not training; workspace of
// rnn_forward_workspace_size(c, plan, saved != nullptr) bytes. Overwrites the outputs.
template <typename Real>
void rnn_forward(const RnnConfig& c, const RnnPlan& plan, const RnnWeights<Real>& w,
                 const Real* x, const Real* h0, const Real* c0, Real* hs, Real* h_T, Real* c_T,
                 Real* saved, void* workspace);

// dhs (B,T,U), dh_T, dc_T (B,U) or nullptr (zeros); x and w as in the forward that filled
// saved -> dx (B,T,F), dW (F,GU), dR (U,GU), db (shape of bias), dh0, dc0 (B,U); a nullptr
// skips that gradient (dW, dR and db are computed together: pass all three or none, db
// nullptr when there is no bias). Overwrites the gradients.
template <typename Real>
void rnn_backward(const RnnConfig& c, const RnnPlan& plan, const RnnWeights<Real>& w,
                  const Real* x, const Real* saved, const Real* dhs, const Real* dh_T,
                  const Real* dc_T, Real* dx, Real* dW, Real* dR, Real* db, Real* dh0,
                  Real* dc0, void* workspace);

// Whether rnn_forward runs the LSTM inference forward with the batch in the vector lanes
// (rnn_lanes.cpp) for this call: for tests, which must reach both forwards.
template <typename Real>
bool rnn_forward_in_lanes(const RnnConfig& c, const RnnPlan& plan, bool training);

// Naive oracles (rnn_reference.cpp): one sample and one step at a time, plain loops, no plan.
// The backward reruns the forward itself and needs no saved buffer. Same outputs as above.
template <typename Real>
void rnn_forward_reference(const RnnConfig& c, const RnnWeights<Real>& w, const Real* x,
                           const uint8_t* mask, const Real* h0, const Real* c0, Real* hs,
                           Real* h_T, Real* c_T);
template <typename Real>
void rnn_backward_reference(const RnnConfig& c, const RnnWeights<Real>& w, const Real* x,
                            const uint8_t* mask, const Real* h0, const Real* c0,
                            const Real* dhs, const Real* dh_T, const Real* dc_T, Real* dx,
                            Real* dW, Real* dR, Real* db, Real* dh0, Real* dc0);

}  // namespace faltung
