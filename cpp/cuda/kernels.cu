// The device instantiations of every kernel family's launch sequence (kernels.hpp): the same
// bodies and geometry faltung._cuda_host runs on the CPU, launched by DeviceExec.
#include "exec_device.cuh"
#include "kernels_impl.hpp"

namespace faltung::cuda {

template bool Kernels<DeviceExec>::blas();
FALTUNG_CUDA_INSTANTIATE(DeviceExec, float)
FALTUNG_CUDA_INSTANTIATE(DeviceExec, double)
FALTUNG_CUDA_INSTANTIATE_CONV(DeviceExec, float)  // convolution and resampling
FALTUNG_CUDA_INSTANTIATE_CONV(DeviceExec, double)
FALTUNG_CUDA_INSTANTIATE_LAYERS(DeviceExec, float)  // the device-resident layers
FALTUNG_CUDA_INSTANTIATE_LAYERS(DeviceExec, double)

}  // namespace faltung::cuda
