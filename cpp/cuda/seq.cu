// The device instantiations of seq.cuh's launch sequences (seq_kernels.hpp): the bodies
// faltung._cuda_host runs on the CPU, launched by DeviceExec.
#include "exec_device.cuh"
#include "seq_kernels_impl.hpp"

namespace faltung::cuda {

FALTUNG_CUDA_INSTANTIATE_SEQ(DeviceExec, float)
FALTUNG_CUDA_INSTANTIATE_SEQ(DeviceExec, double)
FALTUNG_CUDA_INSTANTIATE_SEQ_ONCE(DeviceExec)

}  // namespace faltung::cuda
