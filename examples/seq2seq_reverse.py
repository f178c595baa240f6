"""Sequence to sequence: an encoder LSTM reads a string of digits, RepeatVector hands its
summary to every output step, a decoder LSTM with return_sequences writes the string
reversed, one softmax Dense per step (the seeds' encoder-decoder; Keras's addition example
pattern). The data is generated here.

    python examples/seq2seq_reverse.py [--epochs 30] [--length 8] [--samples 20000]

Prints the per-character validation accuracy each epoch, seconds per epoch, and a few
decoded samples.
"""
import argparse
import time

import numpy as np

import faltung as keras
from faltung import layers

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=30)
p.add_argument("--length", type=int, default=8)
p.add_argument("--samples", type=int, default=20000)
p.add_argument("--units", type=int, default=128)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--seed", type=int, default=1)
args = p.parse_args()

keras.utils.set_random_seed(args.seed)
rng = np.random.default_rng(args.seed)
digits = rng.integers(0, 10, size=(args.samples, args.length))
x = np.eye(10, dtype=bool)[digits]                 # one-hot bool inputs, as Keras examples feed
y = digits[:, ::-1]                                 # target: the string reversed
split = int(0.9 * args.samples)

model = keras.Sequential([
    layers.Input(shape=(args.length, 10)),
    layers.LSTM(args.units),                        # encoder
    layers.RepeatVector(args.length),
    layers.LSTM(args.units, return_sequences=True),  # decoder
    layers.TimeDistributed(layers.Dense(10, activation="softmax")),
])
model.summary()
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
t0 = time.perf_counter()
hist = model.fit(x[:split], y[:split], batch_size=args.batch_size, epochs=args.epochs,
                 validation_data=(x[split:], y[split:]), verbose=2)
seconds = time.perf_counter() - t0
print(f"seconds per epoch: {seconds / args.epochs:.2f}")
print(f"per-character validation accuracy: {hist.history['val_accuracy'][-1]:.4f}")
pred = model.predict(x[split:split + 5], verbose=0).argmax(-1)
for src, out in zip(digits[split:split + 5], pred):
    print("".join(map(str, src)), "->", "".join(map(str, out)))
