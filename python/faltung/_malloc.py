"""glibc malloc settings for training loops (applied once, at `import faltung`).

A training step allocates the same large arrays every step (activations, gradients: 12.8 MB per
32-channel conv output of a Fashion-MNIST CNN at batch 128) and frees them at its end. glibc's
malloc returns such memory to the OS: blocks above its mmap threshold are unmapped when freed,
and free memory at the top of the heap beyond its trim threshold is trimmed; its dynamic
threshold (at most 32 MB) does not settle for a step that frees several such blocks at once.
The next step then touches fresh pages: a Keras-style CNN (two Conv2D + BatchNormalization +
pooling blocks, batch 128) took 4,200 page faults per step, 3.6 s per 100 steps against 2.4 s
with the settings below; a Keras seq2seq epoch 450,000 page faults in its first epoch (2.1 s
against 1.4 s). Not every model hits the pattern: the README's main job faults rarely either
way. Frameworks with their own tensors keep such memory in a caching allocator; faltung's
tensors are numpy arrays, so it asks malloc to keep it instead:

  M_MMAP_THRESHOLD 32 MB (glibc's largest): blocks up to 32 MB come from the heap;
  M_MMAP_MAX 0: larger blocks too (glibc mmaps them otherwise, and each call of a layer whose
  output passes 32 MB faulted in fresh pages: SeparableConv2D 64->128 on (64, 32, 32, 64), a
  33.5 MB output, forward 17.4 ms, 6.7-8.8 ms with this; forward+backward 31.8 -> 25-26 ms; a
  CIFAR-size activation of 64 channels at batch 128 is 33.5 MB too). glibc still falls back to
  mmap when the heap cannot grow;
  M_TRIM_THRESHOLD 1 GB: up to 1 GB of free memory stays at the top of the heap. A step that
  needs more than the threshold at its peak and frees it at its end is trimmed back every step:
  with 256 MB, a DenseNet-BC block's training step (batch 32, ~500 MB at its peak) faulted in
  ~18,000 pages per step (315 ms per step; 263 ms with 1 GB, and 286 ms without any settings).

The cost: a process keeps up to 1 GB it freed (more if fragmented: a large block freed below a
live one stays in the heap for reuse) instead of returning it, and np.zeros of a large array
writes its zeros at once instead of mapping zero pages lazily.
A user's own malloc settings win (MALLOC_*_ environment variables, GLIBC_TUNABLES with
glibc.malloc, a preloaded allocator such as jemalloc or tcmalloc, a sanitizer's runtime), and
FALTUNG_MALLOC_TUNING=0 turns this off. Other C libraries (musl) are left alone.
"""
import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

_state = {"applied": False, "reason": "not configured yet"}


def _skip_reason(env):
    if env.get("FALTUNG_MALLOC_TUNING", "1") == "0":
        return "FALTUNG_MALLOC_TUNING=0"
    user = [k for k in env if k.startswith("MALLOC_") and k.endswith("_")]
    if user:
        return f"the user's {user[0]}"
    if "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        return "the user's GLIBC_TUNABLES"
    return preloaded_allocator(env)


def preloaded_allocator(env):
    """Why a preloaded library replaces glibc's malloc (an allocator, or a sanitizer's runtime,
    which brings its own), or None."""
    preload = env.get("LD_PRELOAD", "")
    for alloc in ("jemalloc", "tcmalloc", "mimalloc", "libasan", "libtsan", "libmsan", "libhwasan"):
        if alloc in preload:
            return f"a preloaded {alloc}"
    return None


def configure(env):
    """Applies the settings unless `env` (os.environ) says otherwise; returns whether it did."""
    reason = _skip_reason(env)
    if reason is None:
        try:
            libc = ctypes.CDLL(None)
            libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing useful
        except (OSError, AttributeError):
            reason = "not glibc"
    if reason is None:
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and ok
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
        reason = None if ok else "mallopt refused"
    _state.update(applied=reason is None, reason=reason or "applied")
    return _state["applied"]


def status():
    """(applied, reason): whether the settings are in force, and why not."""
    return _state["applied"], _state["reason"]
