// The device instantiations of losses.cuh's launch sequences (loss_kernels.hpp): the bodies
// faltung._cuda_host runs on the CPU, launched by DeviceExec.
#include "exec_device.cuh"
#include "kernels.hpp"
#include "loss_kernels_impl.hpp"

namespace faltung::cuda {

FALTUNG_CUDA_INSTANTIATE_LOSSES(DeviceExec, float)
FALTUNG_CUDA_INSTANTIATE_LOSSES(DeviceExec, double)

}  // namespace faltung::cuda
