// faltung/common.hpp — what every kernel family shares: argument checks, threads, GEMM.
//
// Conventions (see DESIGN.md): row-major, channels-last, int64_t for every size and
// offset, validation before any kernel runs (an exception cannot leave an OpenMP
// region), std::invalid_argument for bad input (pybind11 maps it to ValueError).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace faltung {

// Throws std::invalid_argument(msg) unless cond holds. A macro so that msg is only built on
// failure: the messages format shapes with ostreams, and building them eagerly made a
// 1x4x4x3 conv call take 94 us instead of 4 (far more than its kernel).
#define FALTUNG_CHECK(cond, ...)                          \
  do {                                                    \
    if (!(cond)) throw std::invalid_argument(__VA_ARGS__); \
  } while (0)

// "(2, 3, 4)" for error messages.
std::string shape_str(const std::vector<int64_t>& shape);

// Size arithmetic for shape computations. A size is an element count or extent that memory
// could hold: 0 <= size <= kMaxSize (2^48 elements, 1 PiB of float32). size_mul / size_add
// return a * b / a + b, or throw std::invalid_argument "<op>: <what> ... beyond what memory
// could hold" when the result (or a wrap-around of int64) would exceed kMaxSize, so a huge
// argument is refused before anything is allocated instead of wrapping to a small number.
// Operands may be negative (an offset, a padding); only the result is checked.
constexpr int64_t kMaxSize = int64_t(1) << 48;
int64_t size_mul(int64_t a, int64_t b, const char* op, const char* what);
int64_t size_add(int64_t a, int64_t b, const char* op, const char* what);

// OpenMP thread count used by faltung kernels (the process' one pool).
void set_num_threads(int n);
int get_num_threads();

// C (M,N) = alpha * op(A) @ op(B) + beta * C, row-major, single-threaded OpenBLAS call.
// op(A) is (M,K): A is (M,K) with lda >= K, or (K,M) with lda >= M if trans_a.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Same contract as gemm, but splits the rows of C (or, if M is small, the columns)
// across faltung's OpenMP threads, each calling single-threaded OpenBLAS.
// Call it from outside a parallel region.
template <typename T>
void parallel_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                   const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// ---- Workspaces ------------------------------------------------------------------------
// A workspace is a growing scratch buffer owned by one thread (thread_local); kernels take
// scratch from it instead of allocating on the hot path. It keeps its largest size until
// release_workspaces(). Each thread has kWorkspaceSlots float buffers and as many double
// buffers, named by WorkspaceSlot below.
//
// Why named slots rather than warp-ctc's "state the size, receive the buffer" (DESIGN.md's rule
// for new families): the conv kernels take most of their scratch per OpenMP thread, inside their
// parallel regions (an im2col tile, a partial weight gradient, a Winograd tile block), sized by
// a team size and block sizes each kernel decides itself (conv_threads, tile_rows, block_tiles,
// winograd_set_tile). A caller-owned buffer would need those sizes computed a second time outside
// the kernel and added up through the nested calls (phased -> Winograd, transposed -> direct or
// Winograd 2x2, conv backward -> transposed): warp-ctc's layout computed in several places that
// drift apart. So the size stays where the buffer is used, and this one enum owns the names: a
// kernel takes a named slot, never a number, and the comment of each slot lists every user.
// A new family that needs one buffer per call (RNN, CTC) follows DESIGN.md instead and gets no
// slot here.
//
// Why two users of a slot never collide:
//  1. Buffers are per thread, so threads never share one: each OpenMP thread's per-thread use
//     is its own, and kernels called at the same time from different threads are independent.
//  2. A buffer a thread takes inside a parallel region is used only inside that region (other
//     threads of the team may read it there, e.g. to sum partials). So an OpenMP thread's
//     buffers are in use only while it runs a region, and a calling thread's only while it runs
//     a kernel: a thread that frees its own buffers (release_workspaces) frees none in use.
//  3. In one thread, a kernel holds a slot while it calls another kernel only if that callee,
//     and all it calls, never take that slot. The holders across calls are:
//       conv_phased.cpp       PhaseInput, PhaseOutput, PhaseGradOutput, PhaseGradInput (0-3)
//                             around the Winograd kernels, which take only slots 4-7;
//       conv_transpose.cpp    SubKernels (1) around the direct conv (2-4) and Winograd 2x2 (5-7);
//       conv_winograd.cpp     WinogradScratch, WinogradWeights (4, 5) around its own tile
//                             loops (6, 7).
//     Every other use ends before its kernel calls another kernel or returns.
// Aliases (two names, one slot) name the users that share a slot under rule 3.
enum class WorkspaceSlot : int {
  // 0. Columns: conv.cpp's im2col / col2im tile and conv_transpose.cpp's column block (per
  //    thread); conv.cpp's packed 1x1 weights and bias (calling thread, read by its team).
  //    PhaseInput: conv_phased.cpp's gathered phase input (calling thread; no other slot-0
  //    user runs inside Winograd). NormPartials: batch norm's per-thread sums (double).
  Columns = 0,
  PhaseInput = 0,
  NormPartials = 0,
  // 1. Partials: per-thread partial weight gradients (conv.cpp, conv_transpose.cpp backward:
  //    threads > 0, conv.cpp's one-pass 1x1 backward with its bias partials; conv_direct.cpp
  //    and conv_depthwise.cpp filter (and bias) gradients: every thread).
  //    PhaseOutput: conv_phased.cpp forward. SubKernels: conv_transpose.cpp's flipped sub-kernels
  //    of the stride phases, held around the direct conv and Winograd 2x2 (which never take 1).
  //    NormSums: batch norm's summed moments (double).
  Partials = 1,
  PhaseOutput = 1,
  SubKernels = 1,
  NormSums = 1,
  // 2. Vectors: short vectors of one call: conv2d_bias_backward's per-thread sums,
  //    conv_transpose.cpp's bias partials, conv_direct.cpp's zero row and K-padded dout row.
  //    PhaseGradOutput: conv_phased.cpp backward. NormScale: batch norm's per-channel factors.
  Vectors = 2,
  PhaseGradOutput = 2,
  NormScale = 2,
  // 3. PackedWeights: conv_direct.cpp's packed weights and bias (calling thread).
  //    PhaseGradInput: conv_phased.cpp backward data.
  PackedWeights = 3,
  PhaseGradInput = 3,
  // 4. WinogradScratch: conv_winograd.cpp's rotated weights (backward data) and the filter
  //    gradient partials of threads > 0 (both Winograd filter algorithms). PaddedInput:
  //    conv_direct.cpp's zero-padded copy of a few-channel input. Direct and Winograd never
  //    call each other.
  WinogradScratch = 4,
  PaddedInput = 4,
  // 5. WinogradWeights: the transformed weights U, or their gradient dU (calling thread).
  WinogradWeights = 5,
  // 6. WinogradTiles: transformed input tiles V of one tile block, or the filter-im2col column
  //    block (per thread). WindowCopies: conv_direct.cpp forward's copies of border pixels'
  //    windows (per thread; Direct and Winograd never call each other).
  WinogradTiles = 6,
  WindowCopies = 6,
  // 7. WinogradProducts: the transform-domain products M, or transformed output gradients Z,
  //    of one tile block (per thread).
  WinogradProducts = 7,
};
constexpr int kWorkspaceSlots = 8;

// At least n elements of this thread's buffer in `slot` (contents unspecified).
float* workspace_f32(int64_t n_floats, WorkspaceSlot slot);
double* workspace_f64(int64_t n_doubles, WorkspaceSlot slot);
template <typename T> T* workspace(int64_t n, WorkspaceSlot slot);
template <> inline float* workspace<float>(int64_t n, WorkspaceSlot slot) { return workspace_f32(n, slot); }
template <> inline double* workspace<double>(int64_t n, WorkspaceSlot slot) { return workspace_f64(n, slot); }

// Frees the workspaces of the calling thread and of the OpenMP threads of its team, every
// thread its own (so, by rule 2, none that a kernel running in another thread uses). Workspaces of other threads
// that called kernels (e.g. other Python threads) are freed when those threads exit, or when
// they call this themselves. Call it from outside a parallel region.
void release_workspaces();
// Bytes held by the workspaces of all threads.
int64_t workspace_bytes();

}  // namespace faltung
