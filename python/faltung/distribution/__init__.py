"""Data-parallel training across processes on MPI, with Keras 3's distribution API.

    import faltung as keras
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    model.fit(x, y, batch_size=64)   # 64 is the global batch, split over the processes

Started as `mpiexec -n 2 python -m mpi4py script.py`, every process is one replica (one
"device" "cpu:<rank>"); started as `python script.py`, the same script trains in one
process. What `fit`, `evaluate` and `predict` do with a DataParallel distribution is
described in faltung.distribution.replica.

faltung's differences from Keras: a device is a process (Keras: an accelerator of this
process); `DataParallel` takes no `device_mesh` and only `auto_shard_dataset=True` (every
process passes the same global arrays and computes its share of each batch);
`get_distribution` is an alias of Keras's `distribution`.
"""
import sys
import time

from faltung.distribution.comm import INSTALL_HINT, Comm, world

_state = {"distribution": None}


def _mpi_size_rank():
    """(P, r) from MPI when mpi4py is installed, else (1, 0); importing mpi4py starts MPI."""
    try:
        comm = world()
    except ImportError:
        return 1, 0
    return comm.Get_size(), comm.Get_rank()


def num_processes():
    """Number of processes in the job (1 without MPI)."""
    return _mpi_size_rank()[0]


def process_id():
    """This process's rank, 0 .. num_processes() - 1 (0 without MPI)."""
    return _mpi_size_rank()[1]


def list_devices(device_type=None):
    """The job's devices, one "cpu:<rank>" per process (Keras's global device list)."""
    if device_type not in (None, "cpu", "CPU"):
        raise ValueError("faltung runs on CPU processes: `device_type` must be None or 'cpu'. "
                         f"Received: device_type={device_type!r}")
    return [f"cpu:{i}" for i in range(num_processes())]


def get_device_count(device_type=None):
    return len(list_devices(device_type))


class DataParallel:
    """Data parallelism over the MPI processes: every process holds a full replica of the
    model and computes its share of every global batch (Keras's `DataParallel`).

    Args:
        device_mesh: not supported (faltung's mesh is the 1-D list of processes); must
            be None.
        devices: None, or `list_devices()` itself (every process takes part).
        auto_shard_dataset: must be True: every process passes the same global data.

    Raises ImportError saying what to install when mpi4py or an MPI library is missing.
    Over several processes it sets `sys.excepthook` (unless the script set its own) so
    that an uncaught exception on one process aborts them all instead of leaving the
    others waiting (as `python -m mpi4py` does).
    """

    def __init__(self, device_mesh=None, devices=None, auto_shard_dataset=True):
        if device_mesh is not None:
            raise ValueError("faltung's DataParallel replicates over all MPI processes and "
                             f"takes no `device_mesh`. Received: device_mesh={device_mesh!r}")
        if not auto_shard_dataset:
            raise ValueError("faltung's DataParallel shards the global data itself: "
                             "`auto_shard_dataset` must be True. Received: "
                             "auto_shard_dataset=False")
        self.comm = Comm(world())
        all_devices = [f"cpu:{i}" for i in range(self.comm.size)]
        if devices is not None and list(devices) != all_devices:
            raise ValueError(f"faltung's DataParallel uses every process, devices={all_devices}. "
                             f"Received: devices={list(devices)!r}")
        self.devices = all_devices
        self.batch_dim_name = "batch"
        self.auto_shard_dataset = True
        if self.comm.size > 1 and sys.excepthook is sys.__excepthook__:
            sys.excepthook = _abort_all_ranks

    @property
    def num_processes(self):
        return self.comm.size

    @property
    def process_id(self):
        return self.comm.rank

    @property
    def num_model_replicas(self):
        return self.comm.size

    @property
    def data_shard_id(self):
        return self.comm.rank

    def __repr__(self):
        return f"<DataParallel num_processes={self.comm.size} process_id={self.comm.rank}>"


def _abort_all_ranks(kind, value, tb):
    """An exception no one caught on one rank stops every rank (MPI_Abort) rather than
    leave the others waiting in the next collective (what `python -m mpi4py` does)."""
    sys.__excepthook__(kind, value, tb)
    sys.stderr.flush()
    # MPI_Abort tears down mpiexec's I/O forwarding at once: without a moment to forward it,
    # the traceback just written was lost in 2 of 7 full test runs under load
    time.sleep(0.3)
    world().Abort(1)


def set_distribution(value):
    """Make `value` (a DataParallel, or None to train in this process alone) the global
    distribution that fit/evaluate/predict use."""
    if value is not None and not isinstance(value, DataParallel):
        raise TypeError("`set_distribution` expects a faltung.distribution.DataParallel or None. "
                        f"Received: {value!r} (of type {type(value).__name__})")
    _state["distribution"] = value


def distribution():
    """The global distribution set by `set_distribution` (None when none is set)."""
    return _state["distribution"]


get_distribution = distribution

__all__ = ["DataParallel", "INSTALL_HINT", "distribution", "get_device_count",
           "get_distribution", "list_devices", "num_processes", "process_id",
           "set_distribution"]
