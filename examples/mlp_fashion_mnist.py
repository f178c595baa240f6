"""The seeds' fully connected network (784 -> 100 -> 50 -> 10 softmax) on Fashion-MNIST.

    python examples/mlp_fashion_mnist.py [--epochs 15] [--batch-size 32]

Reads the real data (Debian package `dataset-fashion-mnist`, or $FALTUNG_DATA) and prints
the test accuracy. Written as Keras code: only the import differs.
"""
import argparse
import time

import faltung as keras
from faltung import layers

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=15)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--seed", type=int, default=1)
args = p.parse_args()

keras.utils.set_random_seed(args.seed)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
x_test = x_test.reshape(-1, 784).astype("float32") / 255.0

model = keras.Sequential([
    layers.Input(shape=(784,)),
    layers.Dense(100, activation="relu"),
    layers.Dense(50, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
model.summary()
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
t0 = time.perf_counter()
model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
seconds = time.perf_counter() - t0
loss, acc = model.evaluate(x_test, y_test, verbose=0)
print(f"seconds per epoch: {seconds / args.epochs:.2f}")
print(f"test loss: {loss:.4f}")
print(f"test accuracy: {acc:.4f}")
