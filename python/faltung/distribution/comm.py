"""The few MPI collectives data parallelism needs, on numpy buffers (mpi4py's buffer
methods: nothing is pickled).

P = number of processes, r = this process's rank. Every collective here must be called
by every rank in the same order; the trainer hooks (faltung.distribution.replica) keep
that order identical on all ranks.
"""
import numpy as np

INSTALL_HINT = ("faltung's DataParallel runs on MPI through mpi4py. Install both with "
                "`pip install 'faltung[mpi]'` (mpi4py + PyPI's mpich, which provides the MPI "
                "library and `mpiexec`), or `pip install mpi4py` next to a system MPI "
                "(Debian: `apt install mpich libmpich-dev` or `openmpi-bin libopenmpi-dev`).")


def world():
    """The MPI world communicator (mpi4py.MPI.COMM_WORLD); ImportError with what to
    install when mpi4py or the MPI library is missing."""
    try:
        from mpi4py import MPI
    except ImportError as e:  # no mpi4py, or mpi4py without a loadable MPI library
        raise ImportError(f"{INSTALL_HINT} (import failed: {e})") from e
    return MPI.COMM_WORLD


def shard_bounds(n, size, rank):
    """Rows [start, stop) of an n-row global batch that `rank` of `size` computes: the
    first n % size ranks take one row more, so rank 0 always has a row when n >= 1."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class Comm:
    """mpi4py communicator wrapped for faltung's collectives."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        from mpi4py import MPI
        self.threads_ok = MPI.Query_thread() == MPI.THREAD_MULTIPLE  # may a 2nd thread call MPI?

    def allreduce_sum(self, buf):
        """Sums the contiguous array `buf` over all ranks, in place."""
        from mpi4py import MPI
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf

    def iallreduce_sum(self, buf):
        """Starts summing `buf` over all ranks in place; returns the MPI request."""
        from mpi4py import MPI
        return self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    @staticmethod
    def test_all(requests):
        """Lets MPI progress the pending requests (MPICH moves a non-blocking collective
        on only inside MPI calls, unless MPIR_CVAR_ASYNC_PROGRESS=1); whether all are done."""
        from mpi4py import MPI
        return MPI.Request.Testall(requests) if requests else True

    @staticmethod
    def wait_all(requests):
        from mpi4py import MPI
        MPI.Request.Waitall(requests)

    def bcast(self, arr):
        """Rank 0's values of the contiguous array `arr`, in place on every rank."""
        self.comm.Bcast(arr, root=0)
        return arr

    def allgather_rows(self, local, n):
        """The n-row array whose rows shard_bounds(n, P, r) are rank r's `local` (same
        trailing shape and dtype on every rank; zero rows on a rank that has none)."""
        out = np.empty((n,) + local.shape[1:], local.dtype)
        row_bytes = out[:1].nbytes if n else 0
        counts = [(b - a) * row_bytes for a, b in
                  (shard_bounds(n, self.size, r) for r in range(self.size))]
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
        send = np.ascontiguousarray(local).reshape(-1).view(np.uint8)
        self.comm.Allgatherv(send, [out.reshape(-1).view(np.uint8), counts, displs,
                                    _byte_type()])
        return out


def _byte_type():
    from mpi4py import MPI
    return MPI.BYTE
