// The device instantiations of metrics.cuh (metric_kernels.hpp): the bodies faltung._cuda_host
// runs on the CPU, launched by DeviceExec.
#include "exec_device.cuh"
#include "metric_kernels_impl.hpp"

namespace faltung::cuda {

FALTUNG_CUDA_INSTANTIATE_METRICS(DeviceExec, float)
FALTUNG_CUDA_INSTANTIATE_METRICS(DeviceExec, double)

}  // namespace faltung::cuda
