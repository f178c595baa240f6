// Recurrent kernel timings (SimpleRNN, LSTM, GRU forward / backward).
// B batch, T steps, F features, U units, G gates, GU = G*U, N packed rows (B*T unmasked).
// Reports the rate counter "GFLOP" (shown as GFLOP=x/s): the GEMM flops, forward
// 2*N*GU*(F+U), backward 4*N*GU*(F+U) (dx, dW; dh, dR); gate math not counted.
// "pad" benchmarks give half the samples a quarter of the steps (right padding): the packed
// kernels skip the padded steps, so their flops count only the real steps.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "faltung/common.hpp"
#include "faltung/rnn.hpp"

extern "C" void scipy_openblas_set_num_threads(int);

namespace {

using faltung::RnnCell;

std::vector<float> random_vec(int64_t n, unsigned seed, float scale = 1.f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

struct Problem {
  faltung::RnnConfig c;
  std::vector<float> x, W, R, b, hs, hT, cT, dhs, dx, dW, dR, db, dh0, dc0;
  std::vector<uint8_t> mask;
  faltung::RnnPlan plan;
  faltung::RnnWeights<float> w;

  Problem(RnnCell cell, int64_t B, int64_t T, int64_t F, int64_t U, bool pad) {
    c.cell = cell, c.B = B, c.T = T, c.F = F, c.U = U, c.has_bias = true;
    const int64_t GU = c.GU(), bias_size = cell == RnnCell::gru ? 2 * GU : GU;  // GRU reset_after
    x = random_vec(B * T * F, 1), W = random_vec(F * GU, 2, 0.1f), R = random_vec(U * GU, 3, 0.1f);
    b = random_vec(bias_size, 4, 0.1f), dhs = random_vec(B * T * U, 5);
    hs.resize(B * T * U), hT.resize(B * U), cT.resize(B * U), dx.resize(B * T * F);
    dW.resize(F * GU), dR.resize(U * GU), db.resize(bias_size), dh0.resize(B * U), dc0.resize(B * U);
    if (pad) {  // right padding: half the samples have T/4 steps
      mask.assign(B * T, 1);
      for (int64_t i = 0; i < B; i += 2)
        for (int64_t t = T / 4; t < T; ++t) mask[i * T + t] = 0;
    }
    plan = faltung::rnn_plan(c, pad ? mask.data() : nullptr);
    w.kernel = W.data(), w.recurrent_kernel = R.data(), w.bias = b.data();
  }
  double flops() const { return 2.0 * plan.N * c.GU() * (c.F + c.U); }
};

std::unique_ptr<unsigned char[]> buffer(int64_t bytes) {
  return std::unique_ptr<unsigned char[]>(new unsigned char[bytes]);
}

// x (B,T,F) -> hs (B,T,U), h_T, c_T; training = range(5) fills the saved buffer
void BM_rnn_forward(benchmark::State& st) {
  scipy_openblas_set_num_threads(1);  // as faltung._core does: faltung splits GEMMs itself
  Problem p(RnnCell(st.range(0)), st.range(1), st.range(2), st.range(3), st.range(4), st.range(6));
  const bool training = st.range(5);
  std::vector<float> saved(training ? faltung::rnn_saved_size(p.c, p.plan) : 0);
  auto ws = buffer(faltung::rnn_forward_workspace_size<float>(p.c, p.plan, training));
  for (auto _ : st) {
    faltung::rnn_forward<float>(p.c, p.plan, p.w, p.x.data(), nullptr, nullptr, p.hs.data(),
                                p.hT.data(), p.cT.data(), training ? saved.data() : nullptr,
                                ws.get());
    benchmark::DoNotOptimize(p.hs.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP"] = benchmark::Counter(p.flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// dhs (B,T,U) -> dx, dW, dR, db, dh0, dc0 (after one forward with training)
void BM_rnn_backward(benchmark::State& st) {
  scipy_openblas_set_num_threads(1);
  Problem p(RnnCell(st.range(0)), st.range(1), st.range(2), st.range(3), st.range(4), st.range(6));
  std::vector<float> saved(faltung::rnn_saved_size(p.c, p.plan));
  auto fws = buffer(faltung::rnn_forward_workspace_size<float>(p.c, p.plan, true));
  faltung::rnn_forward<float>(p.c, p.plan, p.w, p.x.data(), nullptr, nullptr, p.hs.data(),
                              p.hT.data(), p.cT.data(), saved.data(), fws.get());
  auto ws = buffer(faltung::rnn_backward_workspace_size<float>(p.c, p.plan, true, true));
  for (auto _ : st) {
    faltung::rnn_backward<float>(p.c, p.plan, p.w, p.x.data(), saved.data(), p.dhs.data(),
                                 nullptr, nullptr, p.dx.data(), p.dW.data(), p.dR.data(),
                                 p.db.data(), p.dh0.data(), p.dc0.data(), ws.get());
    benchmark::DoNotOptimize(p.dW.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP"] = benchmark::Counter(2 * p.flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The GEMM bound: only the matrix products of one forward (train = 0) or one backward
// (train = 1) call, on zeroed scratch with faltung::gemm (single-threaded OpenBLAS), no gate
// math: forward Xp W (N x F x GU) and per step h R (B x U x GU); backward per step dZ R^T
// (B x GU x U), then dx = dZ W^T, dW = Xp^T dZ, dR = H^T dZ over all N rows. Run with
// OMP_NUM_THREADS=1 beside BM_rnn_forward/backward: the ratio of the times is how close the
// kernel gets to the time OpenBLAS needs for its products.
void BM_rnn_gemm_bound(benchmark::State& st) {
  scipy_openblas_set_num_threads(1);
  Problem p(RnnCell(st.range(0)), st.range(1), st.range(2), st.range(3), st.range(4), false);
  const bool backward = st.range(5);
  const int64_t B = p.c.B, T = p.c.T, F = p.c.F, U = p.c.U, GU = p.c.GU(), N = B * T;
  std::vector<float> Z(N * GU), H(N * U), X(N * F);
  for (auto _ : st) {
    if (!backward) {
      faltung::gemm<float>(false, false, N, GU, F, 1.f, p.x.data(), F, p.W.data(), GU, 0.f, Z.data(), GU);
      for (int64_t t = 0; t < T; ++t)
        faltung::gemm<float>(false, false, B, GU, U, 1.f, H.data() + t * B * U, U, p.R.data(), GU,
                             1.f, Z.data() + t * B * GU, GU);
    } else {
      for (int64_t t = 0; t < T; ++t)
        faltung::gemm<float>(false, true, B, U, GU, 1.f, Z.data() + t * B * GU, GU, p.R.data(), GU,
                             1.f, H.data() + t * B * U, U);
      faltung::gemm<float>(false, true, N, F, GU, 1.f, Z.data(), GU, p.W.data(), GU, 0.f, X.data(), F);
      faltung::gemm<float>(true, false, F, GU, N, 1.f, p.x.data(), F, Z.data(), GU, 0.f, p.dW.data(), GU);
      faltung::gemm<float>(true, false, U, GU, N, 1.f, H.data(), U, Z.data(), GU, 0.f, p.dR.data(), GU);
    }
    benchmark::DoNotOptimize(Z.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP"] = benchmark::Counter((backward ? 2 : 1) * p.flops() * 1e-9,
                                            benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b, bool with_training) {
  b->ArgNames({"cell", "B", "T", "F", "U", "train", "pad"});
  const int64_t lstm = int64_t(RnnCell::lstm), gru = int64_t(RnnCell::gru),
                simple = int64_t(RnnCell::simple_rnn);
  for (int64_t train : with_training ? std::vector<int64_t>{0, 1} : std::vector<int64_t>{1}) {
    for (int64_t cell : {lstm, gru, simple}) {  // the (and compare_torch's) two sizes
      b->Args({cell, 32, 100, 128, 256, train, 0});
      b->Args({cell, 64, 50, 64, 128, train, 0});
    }
    b->Args({lstm, 32, 100, 64, 128, train, 0});
    b->Args({lstm, 64, 50, 128, 256, train, 0});
    b->Args({lstm, 8, 100, 64, 256, train, 0});  // few samples: the team splits units
    b->Args({lstm, 64, 100, 64, 128, train, 1});
    b->Args({gru, 32, 100, 64, 128, train, 0});
    b->Args({simple, 32, 100, 64, 128, train, 0});
  }
  b->UseRealTime();
}

}  // namespace

BENCHMARK(BM_rnn_forward)->Apply([](benchmark::internal::Benchmark* b) { shapes(b, true); });
BENCHMARK(BM_rnn_gemm_bound)->Apply([](benchmark::internal::Benchmark* b) {
  b->ArgNames({"cell", "B", "T", "F", "U", "backward"});
  for (int64_t cell : {int64_t(RnnCell::lstm), int64_t(RnnCell::gru), int64_t(RnnCell::simple_rnn)})
    for (int64_t bwd : {0, 1}) {
      b->Args({cell, 32, 100, 128, 256, bwd});
      b->Args({cell, 64, 50, 64, 128, bwd});
    }
  b->UseRealTime();
});
BENCHMARK(BM_rnn_backward)->Apply([](benchmark::internal::Benchmark* b) { shapes(b, false); });
BENCHMARK_MAIN();
