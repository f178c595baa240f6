// Winograd 3x3 convolution vs im2col + OpenBLAS GEMM, in one run.
//
// N batch, H/W input size (= output size, "same" padding), C in-channels, K filters.
// Effective GFLOP/s = 2*N*OH*OW*K*C*9 / time for forward (3x that for forward+backward:
// forward, backward-data and backward-filter), whatever the algorithm really computes.
// Build: cmake -S . -B build/bench -DFALTUNG_BENCH=ON -DPython_EXECUTABLE=$(which python)
//          -Dpybind11_DIR=$(python -m pybind11 --cmakedir) && cmake --build build/bench
// Run:   OMP_NUM_THREADS=2 build/bench/bench/bench_conv_winograd --benchmark_repetitions=5
//          --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "faltung/common.hpp"
#include "faltung/conv_winograd.hpp"

extern "C" {
#include <cblas.h>
}

namespace {

using faltung::Conv2dShape;

// OpenBLAS single-threaded, as faltung._core sets it: faltung splits work over OpenMP.
const int kBlasThreads = (scipy_openblas_set_num_threads(1), 1);

struct Layer {
  int64_t N, H, W, C, K;
};
// CIFAR model layers at batch 64, then a VGG-like layer at batch 8.
const Layer kLayers[] = {{64, 32, 32, 3, 32},  {64, 32, 32, 32, 32}, {64, 16, 16, 32, 64},
                         {64, 16, 16, 64, 64}, {64, 8, 8, 64, 128},  {64, 8, 8, 128, 128},
                         {8, 56, 56, 256, 256}};

Conv2dShape shape_of(const Layer& l) {
  return Conv2dShape{l.N, l.H, l.W, l.C, l.K, 3, 3, l.H, l.W, 1, 1, 1, 1, 1, 1, 1};
}

std::vector<float> random_vec(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

struct Data {
  Conv2dShape s;
  std::vector<float> x, w, b, y, dy, dx, dw, col;
  explicit Data(const Layer& l) : s(shape_of(l)) {
    x = random_vec(s.N * s.H * s.W * s.C, 1);
    w = random_vec(9 * s.C * s.K, 2);
    b = random_vec(s.K, 3);
    dy = random_vec(s.N * s.OH * s.OW * s.K, 4);
    y.resize(dy.size());
    dx.resize(x.size());
    dw.resize(w.size());
  }
  double flops() const { return 2.0 * s.N * s.OH * s.OW * s.K * s.C * 9; }
};

// inp (N,H,W,C) -> col (N*OH*OW, 9C), rows in pixel order, columns (kh, kw, c).
void im2col(float* col, const float* inp, const Conv2dShape& s) {
  const int64_t C9 = 9 * s.C, rows = s.N * s.OH * s.OW;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / (s.OH * s.OW), oh = (r / s.OW) % s.OH, ow = r % s.OW;
    for (int64_t kh = 0; kh < 3; ++kh)
      for (int64_t kw = 0; kw < 3; ++kw) {
        const int64_t ih = oh - s.pad_top + kh, iw = ow - s.pad_left + kw;
        float* dst = col + r * C9 + (kh * 3 + kw) * s.C;
        if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W)
          std::fill(dst, dst + s.C, 0.f);
        else
          std::copy_n(inp + ((n * s.H + ih) * s.W + iw) * s.C, s.C, dst);
      }
  }
}

// col (N*OH*OW, 9C) -> dinp (N,H,W,C), summing overlapping taps (one thread per image).
void col2im(float* dinp, const float* col, const Conv2dShape& s) {
  const int64_t C9 = 9 * s.C;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n) {
    float* d = dinp + n * s.H * s.W * s.C;
    std::fill(d, d + s.H * s.W * s.C, 0.f);
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const float* c_row = col + ((n * s.OH + oh) * s.OW + ow) * C9;
        for (int64_t kh = 0; kh < 3; ++kh)
          for (int64_t kw = 0; kw < 3; ++kw) {
            const int64_t ih = oh - s.pad_top + kh, iw = ow - s.pad_left + kw;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
            float* o = d + (ih * s.W + iw) * s.C;
            const float* src = c_row + (kh * 3 + kw) * s.C;
            for (int64_t c = 0; c < s.C; ++c) o[c] += src[c];
          }
      }
  }
}

void im2col_forward(Data& d) {
  const Conv2dShape& s = d.s;
  const int64_t rows = s.N * s.OH * s.OW;
  d.col.resize(rows * 9 * s.C);
  im2col(d.col.data(), d.x.data(), s);
  faltung::parallel_gemm<float>(false, false, rows, s.K, 9 * s.C, 1.f, d.col.data(), 9 * s.C,
                                d.w.data(), s.K, 0.f, d.y.data(), s.K);
}

void im2col_backward(Data& d) {
  const Conv2dShape& s = d.s;
  const int64_t rows = s.N * s.OH * s.OW, C9 = 9 * s.C;
  // dW (9C,K) = col^T @ dy; col is still the forward's.
  faltung::parallel_gemm<float>(true, false, C9, s.K, rows, 1.f, d.col.data(), C9, d.dy.data(),
                                s.K, 0.f, d.dw.data(), s.K);
  // dcol (rows,9C) = dy @ W^T, then col2im.
  faltung::parallel_gemm<float>(false, true, rows, C9, s.K, 1.f, d.dy.data(), s.K, d.w.data(),
                                s.K, 0.f, d.col.data(), C9);
  col2im(d.dx.data(), d.col.data(), s);
}

void set_rate(benchmark::State& state, double flops) {
  state.counters["GFLOPs"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_winograd_fwd(benchmark::State& state) {
  Data d(kLayers[state.range(0)]);
  faltung::winograd_set_tile(int(state.range(1)));
  for (auto _ : state) {
    faltung::conv2d_winograd_forward<float>(d.y.data(), d.x.data(), d.w.data(), d.b.data(), d.s);
    benchmark::DoNotOptimize(d.y.data());
  }
  faltung::winograd_set_tile(0);
  set_rate(state, d.flops());
}

void BM_im2col_fwd(benchmark::State& state) {
  Data d(kLayers[state.range(0)]);
  for (auto _ : state) {
    im2col_forward(d);
    benchmark::DoNotOptimize(d.y.data());
  }
  set_rate(state, d.flops());
}

void BM_winograd_fwd_bwd(benchmark::State& state) {
  Data d(kLayers[state.range(0)]);
  faltung::winograd_set_tile(int(state.range(1)));
  faltung::winograd_set_filter_algo(int(state.range(2)));
  for (auto _ : state) {
    faltung::conv2d_winograd_forward<float>(d.y.data(), d.x.data(), d.w.data(), d.b.data(), d.s);
    faltung::conv2d_winograd_backward_data<float>(d.dx.data(), d.dy.data(), d.w.data(), d.s);
    faltung::conv2d_winograd_backward_filter<float>(d.dw.data(), d.dy.data(), d.x.data(), d.s);
    benchmark::DoNotOptimize(d.dw.data());
  }
  faltung::winograd_set_tile(0);
  faltung::winograd_set_filter_algo(0);
  set_rate(state, 3 * d.flops());
}

void BM_im2col_fwd_bwd(benchmark::State& state) {
  Data d(kLayers[state.range(0)]);
  for (auto _ : state) {
    im2col_forward(d);
    im2col_backward(d);
    benchmark::DoNotOptimize(d.dw.data());
  }
  set_rate(state, 3 * d.flops());
}

// Parts of the backward pass, to choose algorithms: backward-data alone, backward-filter alone.
void BM_winograd_bwd_data(benchmark::State& state) {
  Data d(kLayers[state.range(0)]);
  faltung::winograd_set_tile(int(state.range(1)));
  for (auto _ : state) {
    faltung::conv2d_winograd_backward_data<float>(d.dx.data(), d.dy.data(), d.w.data(), d.s);
    benchmark::DoNotOptimize(d.dx.data());
  }
  faltung::winograd_set_tile(0);
  set_rate(state, d.flops());
}

void BM_winograd_bwd_filter(benchmark::State& state) {
  Data d(kLayers[state.range(0)]);
  faltung::winograd_set_tile(int(state.range(1)));
  faltung::winograd_set_filter_algo(int(state.range(2)));
  for (auto _ : state) {
    faltung::conv2d_winograd_backward_filter<float>(d.dw.data(), d.dy.data(), d.x.data(), d.s);
    benchmark::DoNotOptimize(d.dw.data());
  }
  faltung::winograd_set_tile(0);
  faltung::winograd_set_filter_algo(0);
  set_rate(state, d.flops());
}

// The machine is shared: the minimum over repetitions is the least disturbed run.
double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

constexpr int kNumLayers = sizeof(kLayers) / sizeof(kLayers[0]);

void layers_tiles(benchmark::internal::Benchmark* b) {
  b->ComputeStatistics("min", min_of);
  b->ArgNames({"layer", "m"});
  for (int l = 0; l < kNumLayers; ++l)
    for (int m : {2, 4}) b->Args({l, m});
}
void layers_tiles_algos(benchmark::internal::Benchmark* b) {
  b->ComputeStatistics("min", min_of);
  b->ArgNames({"layer", "m", "falgo"});
  for (int l = 0; l < kNumLayers; ++l)
    for (int m : {2, 4})
      for (int a : {0, 1}) b->Args({l, m, a});
}
void layers_only(benchmark::internal::Benchmark* b) {
  b->ComputeStatistics("min", min_of);
  b->ArgNames({"layer"});
  for (int l = 0; l < kNumLayers; ++l) b->Args({l});
}

}  // namespace

BENCHMARK(BM_im2col_fwd)->Apply(layers_only)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_winograd_fwd)->Apply(layers_tiles)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_im2col_fwd_bwd)->Apply(layers_only)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_winograd_fwd_bwd)->Apply(layers_tiles_algos)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_winograd_bwd_data)->Apply(layers_tiles)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_winograd_bwd_filter)->Apply(layers_tiles_algos)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
