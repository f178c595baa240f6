// Embedding forward (gather) / backward (zero the table, scatter-add) timings.
// N indices, V input_dim (vocabulary), D output_dim. Reports the rate counter "GB" (shown as
// GB=x/s): bytes moved, forward N*D reads + N*D writes, backward V*D zeroing + N*D reads +
// N*D read-modify-writes of table rows. skewed=1 makes 70% of the indices 0, as a
// padded batch with mask_zero has (the case the backward's column split is for).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "faltung/embedding.hpp"

namespace {

std::vector<float> random_vec(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// N indices in [0, V); with skewed = true, 70% of them are 0 (padding).
std::vector<int32_t> random_indices(int64_t N, int64_t V, bool skewed, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(V - 1));
  std::bernoulli_distribution pad(0.7);
  std::vector<int32_t> idx(N);
  for (auto& i : idx) i = skewed && pad(gen) ? 0 : any(gen);
  return idx;
}

// table (V,D), idx (N) -> out (N,D)
void BM_embedding_forward(benchmark::State& st) {
  const int64_t N = st.range(0), V = st.range(1), D = st.range(2);
  auto table = random_vec(V * D, 1);
  auto idx = random_indices(N, V, st.range(3) != 0, 2);
  std::vector<float> out(N * D);
  for (auto _ : st) {
    faltung::embedding_forward<float>(out.data(), idx.data(), table.data(), N, V, D);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.counters["GB"] = benchmark::Counter(double(2 * N * D * sizeof(float)) * 1e-9,
                                         benchmark::Counter::kIsIterationInvariantRate);
}

// dout (N,D), idx (N) -> dtable (V,D)
void BM_embedding_backward(benchmark::State& st) {
  const int64_t N = st.range(0), V = st.range(1), D = st.range(2);
  auto dout = random_vec(N * D, 3);
  auto idx = random_indices(N, V, st.range(3) != 0, 4);
  std::vector<float> dtable(V * D);
  for (auto _ : st) {
    faltung::embedding_backward<float>(dtable.data(), dout.data(), idx.data(), N, V, D);
    benchmark::DoNotOptimize(dtable.data());
    benchmark::ClobberMemory();
  }
  st.counters["GB"] = benchmark::Counter(double((V * D + 3 * N * D) * sizeof(float)) * 1e-9,
                                         benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "V", "D", "skewed"});
  // a batch of 32 sequences of 100 tokens; small and IMDB-sized vocabularies
  for (int64_t V : {1000, 20000})
    for (int64_t D : {16, 128})
      for (int64_t skewed : {0, 1}) b->Args({3200, V, D, skewed});
  b->UseRealTime();
}

}  // namespace

BENCHMARK(BM_embedding_forward)->Apply(shapes);
BENCHMARK(BM_embedding_backward)->Apply(shapes);
BENCHMARK_MAIN();
