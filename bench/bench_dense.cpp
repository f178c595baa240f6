// Dense forward / backward timings. B batch, IN input features, OUT units.
// Reports the rate counter "GFLOP" (shown as GFLOP=x/s, i.e. GFLOP/s): forward 2*B*IN*OUT flops (+ B*OUT bias adds),
// backward (dinp, dweight, dbias) 4*B*IN*OUT + B*OUT.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "faltung/dense.hpp"

extern "C" void scipy_openblas_set_num_threads(int);

namespace {

std::vector<float> random_vec(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// inp (B,IN), weight (IN,OUT), bias (OUT) -> out (B,OUT)
void BM_dense_forward(benchmark::State& st) {
  scipy_openblas_set_num_threads(1);  // as faltung._core does: faltung splits GEMMs itself
  const int64_t B = st.range(0), IN = st.range(1), OUT = st.range(2);
  auto inp = random_vec(B * IN, 1), w = random_vec(IN * OUT, 2), b = random_vec(OUT, 3);
  std::vector<float> out(B * OUT);
  for (auto _ : st) {
    faltung::dense_forward<float>(out.data(), inp.data(), w.data(), b.data(), B, IN, OUT);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP"] = benchmark::Counter(double(2 * B * IN * OUT + B * OUT) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// dout (B,OUT), inp (B,IN), weight (IN,OUT) -> dinp (B,IN), dweight (IN,OUT), dbias (OUT)
void BM_dense_backward(benchmark::State& st) {
  scipy_openblas_set_num_threads(1);
  const int64_t B = st.range(0), IN = st.range(1), OUT = st.range(2);
  auto inp = random_vec(B * IN, 1), w = random_vec(IN * OUT, 2), dout = random_vec(B * OUT, 4);
  std::vector<float> dinp(B * IN), dw(IN * OUT), db(OUT);
  for (auto _ : st) {
    faltung::dense_backward<float>(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(),
                                   w.data(), B, IN, OUT);
    benchmark::DoNotOptimize(dw.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP"] = benchmark::Counter(double(4 * B * IN * OUT + B * OUT) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "IN", "OUT"});
  for (int64_t B : {32, 128, 1024})
    for (auto io : {std::pair<int64_t, int64_t>{784, 100}, {100, 50}, {1024, 1024}})
      b->Args({B, io.first, io.second});
  b->UseRealTime();
}

}  // namespace

BENCHMARK(BM_dense_forward)->Apply(shapes);
BENCHMARK(BM_dense_backward)->Apply(shapes);
BENCHMARK_MAIN();
