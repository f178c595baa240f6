// Microbenchmarks of the conv family (Google Benchmark). GFLOP/s counts 2*N*OH*OW*K*KH*KW*C/G
// multiply-adds per pass (the same for forward, backward-data and backward-filter).
//
// Shapes: NHWC input (N,H,W,C), weight (KH,KW,C/G,K). Run e.g.
//   ./bench_conv --benchmark_filter=Fwd --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "faltung/conv.hpp"

extern "C" {
#include <cblas.h>
}

using faltung::Conv2dShape;
using faltung::ConvAlgo;

namespace {

// N, H(=W), C, K, k (kernel), stride, dilation, groups; "same" padding.
Conv2dShape make(int64_t N, int64_t H, int64_t C, int64_t K, int64_t k, int64_t stride, int64_t dil,
                 int64_t groups) {
  const int64_t ek = (k - 1) * dil + 1, OH = (H + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((OH - 1) * stride + ek - H, 0);
  return Conv2dShape{N, H, H, C, K, k, k, OH, OH, stride, stride, dil, dil, total / 2, total / 2, groups};
}

std::vector<float> random_vec(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  std::mt19937 g(42);
  std::normal_distribution<float> d;
  for (auto& x : v) x = d(g);
  return v;
}

double flops(const Conv2dShape& s) {
  return 2.0 * s.N * s.OH * s.OW * s.K * s.KH * s.KW * (s.C / s.groups);
}

// pass: 0 forward, 1 backward-data, 2 backward-filter
void run(benchmark::State& state, Conv2dShape s, ConvAlgo algo, int pass, bool tile_parallel = true) {
  faltung::conv_set_im2col_tuning(0, tile_parallel);
  auto x = random_vec(s.N * s.H * s.W * s.C), w = random_vec(s.KH * s.KW * (s.C / s.groups) * s.K);
  auto b = random_vec(s.K), y = random_vec(s.N * s.OH * s.OW * s.K);
  std::vector<float> dx(x.size()), dw(w.size());
  for (auto _ : state) {
    if (pass == 0) faltung::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s, algo);
    if (pass == 1) faltung::conv2d_backward<float>(dx.data(), nullptr, nullptr, y.data(), x.data(), w.data(), s, algo);
    if (pass == 2) faltung::conv2d_backward<float>(nullptr, dw.data(), nullptr, y.data(), x.data(), w.data(), s, algo);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(flops(s) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  faltung::conv_set_im2col_tuning(0, true);
}

// Tile-size sweep of the im2col forward on the headline shape (state.range(0) rows per tile).
void tile_sweep(benchmark::State& state, Conv2dShape s) {
  faltung::conv_set_im2col_tuning(state.range(0), true);
  auto x = random_vec(s.N * s.H * s.W * s.C), w = random_vec(s.KH * s.KW * s.C * s.K);
  std::vector<float> y(static_cast<size_t>(s.N * s.OH * s.OW * s.K));
  for (auto _ : state) faltung::conv2d_forward<float>(y.data(), x.data(), w.data(), nullptr, s, ConvAlgo::Im2col);
  state.counters["GFLOP/s"] = benchmark::Counter(flops(s) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  faltung::conv_set_im2col_tuning(0, true);
}

// The headline shape: 3x3, 32 -> 32 channels, 32x32, batch 64.
const Conv2dShape k3c32 = make(64, 32, 32, 32, 3, 1, 1, 1);

}  // namespace

BENCHMARK_CAPTURE(run, Fwd_3x3_32to32_32px_b64_im2col, k3c32, ConvAlgo::Im2col, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_3x3_32to32_32px_b64_im2col_pargemm, k3c32, ConvAlgo::Im2col, 0, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(tile_sweep, TileRows_3x3_32to32_32px_b64, k3c32)->RangeMultiplier(2)->Range(32, 2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, BwdData_3x3_32to32_32px_b64_im2col, k3c32, ConvAlgo::Im2col, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, BwdFilter_3x3_32to32_32px_b64_im2col, k3c32, ConvAlgo::Im2col, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_3x3_32to32_32px_b64_reference, make(8, 32, 32, 32, 3, 1, 1, 1), ConvAlgo::Reference, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_3x3_64to128_s2_32px_b32_im2col, make(32, 32, 64, 128, 3, 2, 1, 1), ConvAlgo::Im2col, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_5x5_3to32_32px_b64_im2col, make(64, 32, 3, 32, 5, 1, 1, 1), ConvAlgo::Im2col, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_3x3_d2_32to32_32px_b32_im2col, make(32, 32, 32, 32, 3, 1, 2, 1), ConvAlgo::Im2col, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
// Direct kernels vs im2col on the shapes they were written for: the CIFAR first layer
// (3 channels) and a stride-2 3x3 conv.
const Conv2dShape k3c3 = make(64, 32, 3, 32, 3, 1, 1, 1);
const Conv2dShape k3s2 = make(64, 32, 64, 64, 3, 2, 1, 1);
BENCHMARK_CAPTURE(run, Fwd_3x3_3to32_32px_b64_direct, k3c3, ConvAlgo::Direct, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_3x3_3to32_32px_b64_im2col, k3c3, ConvAlgo::Im2col, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, BwdData_3x3_3to32_32px_b64_direct, k3c3, ConvAlgo::Direct, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, BwdFilter_3x3_3to32_32px_b64_direct, k3c3, ConvAlgo::Direct, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_3x3_s2_64to64_32px_b64_direct, k3s2, ConvAlgo::Direct, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_3x3_s2_64to64_32px_b64_im2col, k3s2, ConvAlgo::Im2col, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, BwdFilter_3x3_s2_64to64_32px_b64_direct, k3s2, ConvAlgo::Direct, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, BwdFilter_3x3_s2_64to64_32px_b64_im2col, k3s2, ConvAlgo::Im2col, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_1x1_64to64_32px_b32_gemm1x1, make(32, 32, 64, 64, 1, 1, 1, 1), ConvAlgo::Gemm1x1, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, Fwd_3x3_dw64_32px_b32_depthwise, make(32, 32, 64, 64, 3, 1, 1, 64), ConvAlgo::Depthwise, 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, BwdData_3x3_dw64_32px_b32_depthwise, make(32, 32, 64, 64, 3, 1, 1, 64), ConvAlgo::Depthwise, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, BwdFilter_3x3_dw64_32px_b32_depthwise, make(32, 32, 64, 64, 3, 1, 1, 64), ConvAlgo::Depthwise, 2)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  scipy_openblas_set_num_threads(1);  // faltung splits work over its own OpenMP threads
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
