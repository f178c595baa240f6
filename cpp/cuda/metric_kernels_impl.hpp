// cpp/cuda/metric_kernels_impl.hpp — the definitions of MetricKernels<Exec> (metric_kernels.hpp),
// included where Exec is complete: host_harness.cpp (HostExec) and metrics.cu (DeviceExec).
#pragma once
#include "metric_kernels.hpp"

namespace faltung::cuda {

template <class Exec> template <typename T>
void MetricKernels<Exec>::row_stats(double* out, const metric::RowStats<T>& body, int64_t block) {
  Exec ex;
  metric::row_stats(ex, out, body, block);
}

#define FALTUNG_CUDA_INSTANTIATE_METRICS(Exec, T) \
  template void MetricKernels<Exec>::row_stats<T>(double*, const metric::RowStats<T>&, int64_t);

}  // namespace faltung::cuda
