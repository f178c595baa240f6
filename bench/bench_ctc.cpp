// CTC loss (forward, forward+gradient) and beam-search decoding timings.
// B batch, T steps, C classes, S label length (every sample full length). Reports the rate
// counter "cells" (shown as cells=x/s): the B*T*(2S+1) alpha cells of the loss, or the
// B*T*beam_width*C prefix extensions a beam search considers.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "faltung/ctc.hpp"

namespace {

std::vector<float> random_logits(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.f, 2.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// args: T, B, C, S, with_grad
void BM_ctc_loss(benchmark::State& st) {
  faltung::CtcConfig c;
  c.T = st.range(0);
  c.B = st.range(1);
  c.C = st.range(2);
  c.S = st.range(3);
  const bool with_grad = st.range(4) != 0;
  auto x = random_logits(c.B * c.T * c.C, 1);
  std::mt19937 gen(2);
  std::uniform_int_distribution<int32_t> label(1, int32_t(c.C - 1));
  std::vector<int32_t> labels(c.B * c.S), label_len(c.B, int32_t(c.S)), input_len(c.B, int32_t(c.T));
  for (auto& l : labels) l = label(gen);
  std::vector<float> loss(c.B), grad(with_grad ? c.B * c.T * c.C : 0);
  std::vector<float> ws(faltung::ctc_workspace_size(c, with_grad));
  for (auto _ : st) {
    faltung::ctc_loss<float>(c, x.data(), labels.data(), label_len.data(), input_len.data(),
                             loss.data(), with_grad ? grad.data() : nullptr, ws.data());
    benchmark::DoNotOptimize(loss.data());
    benchmark::ClobberMemory();
  }
  st.counters["cells"] = benchmark::Counter(double(c.B * c.T * (2 * c.S + 1)),
                                            benchmark::Counter::kIsIterationInvariantRate);
}

// args: B, T, C, beam_width
void BM_ctc_beam_search(benchmark::State& st) {
  const int64_t B = st.range(0), T = st.range(1), C = st.range(2), W = st.range(3);
  auto x = random_logits(B * T * C, 3);
  std::vector<int32_t> lengths(B, int32_t(T)), decoded(B * T);
  std::vector<float> log_prob(B);
  for (auto _ : st) {
    faltung::ctc_beam_search_decode<float>(x.data(), lengths.data(), B, T, C, 0, W, 1,
                                           decoded.data(), log_prob.data());
    benchmark::DoNotOptimize(decoded.data());
  }
  st.counters["cells"] = benchmark::Counter(double(B * T * W * C),
                                            benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_ctc_loss)
    ->ArgNames({"T", "B", "C", "S", "grad"})
    ->Args({100, 32, 28, 20, 0})->Args({100, 32, 28, 20, 1})
    ->Args({500, 16, 100, 100, 0})->Args({500, 16, 100, 100, 1})
    ->Args({1000, 8, 5000, 50, 0})->Args({1000, 8, 5000, 50, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ctc_beam_search)
    ->ArgNames({"B", "T", "C", "beam"})
    ->Args({16, 150, 28, 100})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
