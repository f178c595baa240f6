"""Run as `mpiexec -n 2 python fail_on_one_rank.py raise|kill`: in the middle of `fit`,
rank 1 raises (without mpi4py's `-m` runner: DataParallel's excepthook aborts every rank)
or is killed (mpiexec ends the job), while rank 0 is about to wait in the next
all-reduce. tests/test_distribution.py checks that the job ends instead of hanging."""
import os
import signal
import sys

import numpy as np

import faltung as keras
from faltung import layers

keras.distribution.set_distribution(keras.distribution.DataParallel())
rank = keras.distribution.process_id()


def fail(batch, logs):
    if rank == 1 and batch == 2:
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise ValueError("deliberate failure on rank 1")


model = keras.Sequential([layers.Input((4,)), layers.Dense(2)])
model.compile(optimizer="sgd", loss="mse")
x = np.ones((64, 4), np.float32)
model.fit(x, x[:, :2], batch_size=8, epochs=1000, verbose=0,
          callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=fail)])
