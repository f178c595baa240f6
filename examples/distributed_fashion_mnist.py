"""The README's main job (the CNN of examples/cnn_fashion_mnist.py on Fashion-MNIST) trained
data-parallel over several processes with MPI, Keras 3's way:

    mpiexec -n 2 python examples/distributed_fashion_mnist.py [--epochs 6] [--batch-size 128]
    python examples/distributed_fashion_mnist.py        # the same script in one process

Needs `pip install 'faltung[mpi]'` (mpi4py and MPICH, whose `mpiexec` lands next to the
venv's python). `--batch-size` is the global batch: with P processes each computes its share
of every batch of 128 and the gradients are averaged with MPI all-reduce, so the training is
that of one process with the same batch (see faltung.distribution). The BatchNormalization
layers are synchronized (Keras 3's `synchronized=True`: statistics of the global batch);
`--per-replica-bn` keeps Keras's default, each process normalizing its own rows. The
recipe is the main job's (Adam, 5% linear warmup to --lr, then a cosine down to 0). Each
process runs cores / P OpenMP threads unless OMP_NUM_THREADS says otherwise. Rank 0 prints
the epochs, the test accuracy and the training time; `--train` / `--test` take the first
samples only (a quick check).
"""
import argparse
import os
import time

import numpy as np

import faltung as keras
from faltung import layers

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=6)
p.add_argument("--batch-size", type=int, default=128, help="global batch")
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--per-replica-bn", action="store_true")
p.add_argument("--train", type=int, default=None, help="use the first TRAIN training images")
p.add_argument("--test", type=int, default=None, help="use the first TEST test images")
args = p.parse_args()

keras.distribution.set_distribution(keras.distribution.DataParallel())
processes, rank = keras.distribution.num_processes(), keras.distribution.process_id()
if "OMP_NUM_THREADS" not in os.environ:
    keras.set_num_threads(max(1, (os.cpu_count() or 1) // processes))

# rank 0's initial weights and shuffles are used everywhere; the seed differs per rank so
# that the ranks' dropout masks are independent, as one process's rows are
keras.utils.set_random_seed(args.seed + rank)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[:args.train, ..., None].astype("float32") / 255.0
x_test = x_test[:args.test, ..., None].astype("float32") / 255.0
y_train, y_test = y_train[:args.train], y_test[:args.test]

sync = not args.per_replica_bn
model = keras.Sequential([
    layers.Input(shape=(28, 28, 1)),
    layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
    layers.BatchNormalization(synchronized=sync),
    layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
    layers.BatchNormalization(synchronized=sync),
    layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dropout(0.4),
    layers.Dense(128, activation="relu"),
    layers.Dropout(0.3),
    layers.Dense(10, activation="softmax"),
])
steps = args.epochs * -(-len(x_train) // args.batch_size)  # global batches
warmup = steps // 20
schedule = keras.optimizers.schedules.CosineDecay(
    0.0, decay_steps=steps - warmup, warmup_target=args.lr, warmup_steps=warmup)
model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
t0 = time.perf_counter()
model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
seconds = time.perf_counter() - t0

y_pred = model.predict(x_test, batch_size=256, verbose=0).argmax(axis=1)  # sharded, gathered
if rank == 0:
    print(f"{processes} process(es) x {keras.get_num_threads()} thread(s), global batch "
          f"{args.batch_size}, BatchNormalization {'synchronized' if sync else 'per replica'}")
    print(f"seconds per epoch: {seconds / args.epochs:.1f}")
    print(f"test accuracy: {np.mean(y_pred == y_test):.4f}")
