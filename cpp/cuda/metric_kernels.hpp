// cpp/cuda/metric_kernels.hpp — the entry point of metrics.cuh, templated on the executor as
// LossKernels (loss_kernels.hpp): MetricKernels<HostExec> in host_harness.cpp, MetricKernels<
// DeviceExec> in metrics.cu (nvcc); the bindings (bind_resident_io.hpp) see only this.
#pragma once
#include <cstdint>

#include "metrics.cuh"

namespace faltung::cuda {

template <class Exec>
struct MetricKernels {
  template <typename T> static void row_stats(double* out, const metric::RowStats<T>& body, int64_t block);
};

}  // namespace faltung::cuda
