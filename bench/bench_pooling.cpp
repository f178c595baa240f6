// Microbenchmarks of the pooling, batch-norm and resampling kernels (Google Benchmark).
// Shapes: NHWC (64, 32, 32, 32) float32, the brief's reference size.
// Build: -DFALTUNG_BENCH=ON (bench/CMakeLists.txt globs bench_*.cpp), run bench_pooling.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "faltung/normalization.hpp"
#include "faltung/pooling.hpp"
#include "faltung/resampling.hpp"

namespace {
constexpr int64_t N = 64, H = 32, W = 32, C = 32;

std::vector<float> random_vec(int64_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

const int64_t kSize = N * H * W * C;

void set_bytes(benchmark::State& st, int64_t floats) {
  st.SetBytesProcessed(int64_t(st.iterations()) * floats * int64_t(sizeof(float)));
}

void BM_MaxPool2x2_Forward(benchmark::State& st) {
  const auto s = faltung::pool2d_shape(N, H, W, C, 2, 2, 2, 2, "valid", "bench");
  auto x = random_vec(kSize, 1);
  std::vector<float> y(s.N * s.OH * s.OW * C);
  std::vector<int32_t> arg(y.size());
  const bool with_arg = st.range(0);
  for (auto _ : st) {
    faltung::max_pool2d_forward<float>(y.data(), with_arg ? arg.data() : nullptr, x.data(), s);
    benchmark::ClobberMemory();
  }
  set_bytes(st, kSize);
}
BENCHMARK(BM_MaxPool2x2_Forward)->Arg(0)->Arg(1)->ArgName("argmax")->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_MaxPool2x2_Backward(benchmark::State& st) {
  const auto s = faltung::pool2d_shape(N, H, W, C, 2, 2, 2, 2, "valid", "bench");
  auto x = random_vec(kSize, 1);
  std::vector<float> y(s.N * s.OH * s.OW * C), dx(kSize);
  std::vector<int32_t> arg(y.size());
  faltung::max_pool2d_forward<float>(y.data(), arg.data(), x.data(), s);
  for (auto _ : st) {
    faltung::max_pool2d_scatter<float>(dx.data(), y.data(), arg.data(), s);
    benchmark::ClobberMemory();
  }
  set_bytes(st, kSize);
}
BENCHMARK(BM_MaxPool2x2_Backward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_MaxPool2x2_Forward_Naive(benchmark::State& st) {
  const auto s = faltung::pool2d_shape(N, H, W, C, 2, 2, 2, 2, "valid", "bench");
  auto x = random_vec(kSize, 1);
  std::vector<float> y(s.N * s.OH * s.OW * C);
  std::vector<int32_t> arg(y.size());
  for (auto _ : st) {
    faltung::max_pool2d_forward_ref<float>(y.data(), arg.data(), x.data(), s);
    benchmark::ClobberMemory();
  }
  set_bytes(st, kSize);
}
BENCHMARK(BM_MaxPool2x2_Forward_Naive)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_AvgPool2x2_Forward(benchmark::State& st) {
  const auto s = faltung::pool2d_shape(N, H, W, C, 2, 2, 2, 2, "valid", "bench");
  auto x = random_vec(kSize, 1);
  std::vector<float> y(s.N * s.OH * s.OW * C);
  for (auto _ : st) {
    faltung::avg_pool2d_forward<float>(y.data(), x.data(), s);
    benchmark::ClobberMemory();
  }
  set_bytes(st, kSize);
}
BENCHMARK(BM_AvgPool2x2_Forward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_BatchNorm_TrainForward(benchmark::State& st) {
  auto x = random_vec(kSize, 2), g = random_vec(C, 3), b = random_vec(C, 4);
  std::vector<float> y(kSize), mean(C), var(C), inv(C);
  for (auto _ : st) {
    faltung::batch_norm_moments<float>(mean.data(), var.data(), x.data(), N * H * W, C);
    faltung::batch_norm_forward<float>(y.data(), inv.data(), x.data(), mean.data(), var.data(), g.data(),
                                       b.data(), 1e-3f, N * H * W, C);
    benchmark::ClobberMemory();
  }
  set_bytes(st, kSize);
}
BENCHMARK(BM_BatchNorm_TrainForward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_BatchNorm_Backward(benchmark::State& st) {
  auto x = random_vec(kSize, 2), dy = random_vec(kSize, 5), g = random_vec(C, 3), b = random_vec(C, 4);
  std::vector<float> y(kSize), dx(kSize), mean(C), var(C), inv(C), dg(C), db(C);
  faltung::batch_norm_moments<float>(mean.data(), var.data(), x.data(), N * H * W, C);
  faltung::batch_norm_forward<float>(y.data(), inv.data(), x.data(), mean.data(), var.data(), g.data(), b.data(),
                                     1e-3f, N * H * W, C);
  for (auto _ : st) {
    faltung::batch_norm_backward<float>(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(),
                                        inv.data(), g.data(), N * H * W, C);
    benchmark::ClobberMemory();
  }
  set_bytes(st, kSize);
}
BENCHMARK(BM_BatchNorm_Backward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_BatchNorm_Backward_Naive(benchmark::State& st) {
  auto x = random_vec(kSize, 2), dy = random_vec(kSize, 5), g = random_vec(C, 3);
  std::vector<float> dx(kSize), mean(C, 0.f), inv(C, 1.f), dg(C), db(C);
  for (auto _ : st) {
    faltung::batch_norm_backward_ref<float>(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(),
                                            inv.data(), g.data(), N * H * W, C);
    benchmark::ClobberMemory();
  }
  set_bytes(st, kSize);
}
BENCHMARK(BM_BatchNorm_Backward_Naive)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_UpsampleBilinear2x(benchmark::State& st) {
  auto x = random_vec(kSize, 6);
  std::vector<float> y(kSize * 4);
  for (auto _ : st) {
    faltung::resize_bilinear2d_forward<float>(y.data(), x.data(), N, H, W, C, 2 * H, 2 * W);
    benchmark::ClobberMemory();
  }
  set_bytes(st, kSize);
}
BENCHMARK(BM_UpsampleBilinear2x)->UseRealTime()->Unit(benchmark::kMicrosecond);
}  // namespace

BENCHMARK_MAIN();
