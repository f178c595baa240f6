// cpp/cuda/hd.cuh — what every CUDA kernel file shares: the __host__ __device__ qualifier
// that vanishes under g++, the launch geometry, and the executors' contract.
//
// Design (issue 14). Every kernel is a *body*: a small struct whose operator()(Thread) does
// one thread's work, FALTUNG_HD-qualified so that nvcc compiles it for the device and g++
// compiles the same text for the host. A family's launch sequence (which bodies, with which
// geometry, in which order) is written once, as a template over an executor:
//   HostExec   (exec_host.hpp)    runs a launch over the whole grid x block index space on the
//                                 CPU, block by block, thread by thread: the test harness;
//   DeviceExec (exec_device.cuh)  launches the same body as a __global__ kernel (nvcc only).
// So the index arithmetic, bounds and reductions the device runs are the ones the host
// harness checks against the CPU kernels (the oracles), on every CI run, without a GPU.
//
// Two launch shapes, the only two a body may assume:
//   launch(grid, block, body)           independent threads: body(Thread) once per thread;
//   launch_steps(grid, block, n, body)  a block-synchronous loop: for step in [0, n): every
//                                       thread of a block runs body.step(step, Thread), then the
//                                       block waits at a barrier (__syncthreads on the device);
//                                       blocks never talk to each other.
//   launch_shared(grid, block, n, body) launch_steps with the block's shared memory: body.step
//                                       (step, Thread, Body::Shared&), one Shared per block
//                                       (__shared__ on the device); a thread's state that must
//                                       outlive a step lives there too, in its own slot.
// A body therefore never holds a barrier itself, and the host order (threads in sequence)
// is one legal schedule of the device's. It is not every schedule: a thread reading what
// another thread of the same launch (or step) writes would race on the device yet could pass
// on the host, so no body does that: each launch reads only what earlier launches (or steps)
// wrote, e.g. step t of a recursion reads row t -+ 1 and writes row t.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FALTUNG_HD __host__ __device__
#else
#define FALTUNG_HD
#endif

namespace faltung::cuda {

// One-dimensional grids and blocks are all the families here need; sizes in int64_t on the
// host, the index arithmetic inside a body in int64_t too (no int products).
struct Geometry {
  int64_t grid = 1, block = 1;
};

// The thread a body runs as: its block, its index in the block, and the block size.
struct Thread {
  int64_t block, thread, block_dim;
  FALTUNG_HD int64_t global() const { return block * block_dim + thread; }
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// n independent items, `block` threads per block: enough blocks to give each item a thread.
inline Geometry cover(int64_t n, int64_t block) {
  return Geometry{n > 0 ? ceil_div(n, block) : 0, block};
}

// Threads per block for a block that loops over `n` slots: a multiple of a warp (32), at least
// one warp, at most `max_block`; the body strides over the rest.
inline int64_t block_for(int64_t n, int64_t max_block) {
  const int64_t b = ceil_div(n > 0 ? n : 1, 32) * 32;
  return b < max_block ? b : max_block;
}

// Math used by the bodies, one overload per precision, the same names on host and device.
FALTUNG_HD inline float hd_exp(float x) { return expf(x); }
FALTUNG_HD inline double hd_exp(double x) { return exp(x); }
FALTUNG_HD inline float hd_log(float x) { return logf(x); }
FALTUNG_HD inline double hd_log(double x) { return log(x); }
FALTUNG_HD inline float hd_sqrt(float x) { return sqrtf(x); }
FALTUNG_HD inline double hd_sqrt(double x) { return sqrt(x); }
template <typename T> FALTUNG_HD inline T hd_max(T a, T b) { return a > b ? a : b; }

}  // namespace faltung::cuda
