// Microbenchmarks of conv_transpose (Google Benchmark). The decoder case: x (64,16,16,64),
// kernel (4,4,32,64), stride 2, "same" -> y (64,32,32,32). Counter GFLOPS counts the
// multiply-adds of the GEMM formulation (2*N*IH*IW*CI*KH*KW*F per pass).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

extern "C" {
#include <cblas.h>
}

#include "faltung/common.hpp"
#include "faltung/conv_transpose.hpp"

namespace {

struct Problem {
  faltung::Conv2dShape s;
  std::vector<float> x, w, b, y, dy, dx, dw, db;
  Problem(int64_t N, int64_t IH, int64_t CI, int64_t F, int64_t k, int64_t stride) {
    s = faltung::conv_transpose2d_shape(N, IH, IH, CI, k, k, F, stride, stride, 1, 1, true, -1, -1);
    std::mt19937 g(0);
    std::normal_distribution<float> nd;
    auto fill = [&](std::vector<float>& v, int64_t n) { v.resize(n); for (auto& e : v) e = nd(g); };
    fill(x, N * IH * IH * CI);
    fill(w, k * k * F * CI);
    fill(b, F);
    fill(dy, N * s.H * s.W * F);
    y.resize(dy.size());
    dx.resize(x.size());
    dw.resize(w.size());
    db.resize(F);
  }
  double flops() const { return 2.0 * s.N * s.OH * s.OW * s.K * s.KH * s.KW * s.C; }
};

void BM_ConvTranspose_Forward(benchmark::State& st) {
  Problem p(st.range(0), 16, 64, 32, 4, 2);
  for (auto _ : st) {
    faltung::conv_transpose2d_forward(p.y.data(), p.x.data(), p.w.data(), p.b.data(), p.s);
    benchmark::DoNotOptimize(p.y.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(p.flops(), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_ConvTranspose_ForwardBackward(benchmark::State& st) {
  Problem p(st.range(0), 16, 64, 32, 4, 2);
  for (auto _ : st) {
    faltung::conv_transpose2d_forward(p.y.data(), p.x.data(), p.w.data(), p.b.data(), p.s);
    faltung::conv_transpose2d_backward(p.dx.data(), p.dw.data(), p.db.data(), p.dy.data(),
                                       p.x.data(), p.w.data(), p.s);
    benchmark::DoNotOptimize(p.dw.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(3 * p.flops(), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_ConvTranspose_Backward(benchmark::State& st) {
  Problem p(st.range(0), 16, 64, 32, 4, 2);
  for (auto _ : st) {
    faltung::conv_transpose2d_backward(p.dx.data(), p.dw.data(), p.db.data(), p.dy.data(),
                                       p.x.data(), p.w.data(), p.s);
    benchmark::DoNotOptimize(p.dw.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(2 * p.flops(), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_ConvTranspose_ForwardReference(benchmark::State& st) {
  Problem p(st.range(0), 16, 64, 32, 4, 2);
  for (auto _ : st) {
    faltung::conv_transpose2d_forward_ref(p.y.data(), p.x.data(), p.w.data(), p.b.data(), p.s);
    benchmark::DoNotOptimize(p.y.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(p.flops(), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

}  // namespace

// Arg = batch; batch 1 runs the banded split (fewer images than 2x the threads).
BENCHMARK(BM_ConvTranspose_Forward)->Arg(64)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ConvTranspose_Backward)->Arg(64)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ConvTranspose_ForwardBackward)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ConvTranspose_ForwardReference)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  scipy_openblas_set_num_threads(1);  // faltung splits GEMMs over its own OpenMP threads
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
