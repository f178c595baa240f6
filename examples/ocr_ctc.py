"""OCR with CTC: read rendered text lines (letters and digits, ten DejaVu/Liberation fonts)
without any character positions. Conv2D blocks turn a 32 x 128 image into 32 columns of
features, a Bidirectional LSTM reads the columns left to right and right to left, a Dense
layer gives per-column logits over the characters plus the CTC blank, and the CTC loss sums
over every alignment of the label to the columns.

    python examples/ocr_ctc.py [--epochs 15] [--train 10000] [--test 500]

Needs Pillow and Debian's fonts-dejavu-core and fonts-liberation. Prints, per epoch, the
training seconds (wall and CPU) and the held-out character error rate (edit distance / characters) of
greedy decoding; at the end the CER of greedy and of beam-search decoding and a few lines
decoded beside their truth.
"""
import argparse
import os
import sys
import time

import numpy as np

import faltung as keras
from faltung import layers
from faltung.utils import text

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ocr_data import ALPHABET, render_dataset  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=15)
p.add_argument("--train", type=int, default=10000, help="training lines")
p.add_argument("--test", type=int, default=500, help="held-out lines")
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--beam-width", type=int, default=100)
p.add_argument("--seed", type=int, default=1)
args = p.parse_args()

keras.utils.set_random_seed(args.seed)
vocab = text.CharVocabulary(ALPHABET)
x_train, texts_train = render_dataset(args.train, seed=args.seed)
x_test, texts_test = render_dataset(args.test, seed=args.seed + 1000)
y_train, _ = vocab.encode(texts_train)
height, width = x_train.shape[1:3]
steps = width // 4                                  # two 2x2 poolings: one time step per 4 columns


def conv_block(filters):
    # batch normalization gets CTC past its all-blank plateau in 2-3 epochs instead of 6-7
    return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(), layers.Activation("relu"), layers.MaxPooling2D(2)]


model = keras.Sequential([
    layers.Input(shape=(height, width, 1)),
    *conv_block(16),
    *conv_block(32),                                 # (height/4, steps, 32)
    layers.Permute((2, 1, 3)),                       # (steps, height/4, 32): width becomes time
    layers.Reshape((steps, (height // 4) * 32)),
    layers.Dense(64, activation="relu"),
    layers.Bidirectional(layers.LSTM(64, return_sequences=True)),
    layers.Dense(vocab.num_classes),                 # logits; label 0 is the blank
])
model.summary()
model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=keras.losses.CTC())


def read(images, strategy):
    """Decoded strings for a batch of line images."""
    logits = model.predict(images, batch_size=256, verbose=0)
    lengths = np.full(len(images), logits.shape[1], dtype=np.int32)
    decoded, _ = keras.ops.ctc_decode(logits, lengths, strategy=strategy, beam_width=args.beam_width)
    return vocab.decode(np.asarray(decoded)[0])


class ErrorRate(keras.callbacks.Callback):
    """Per epoch: training seconds and the greedy CER on the held-out lines."""

    def __init__(self):
        super().__init__()
        self.train_seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.start_cpu = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        cpu_seconds = time.process_time() - self.start_cpu
        self.train_seconds += seconds
        cer = text.character_error_rate(texts_test, read(x_test, "greedy"))
        print(f"epoch {epoch + 1}: loss {logs['loss']:.3f}, {seconds:.1f} s (CPU {cpu_seconds:.1f} s), "
              f"held-out CER (greedy) {cer:.4f}", flush=True)


timer = ErrorRate()
# the learning rate halves every epoch in the last third of training
decay = keras.callbacks.LearningRateScheduler(
    lambda epoch, lr: lr if epoch < args.epochs - args.epochs // 3 else lr / 2)
model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, callbacks=[timer, decay],
          verbose=0)
print(f"training time: {timer.train_seconds:.1f} s for {args.epochs} epochs "
      f"({timer.train_seconds / args.epochs:.1f} s per epoch)")

greedy = read(x_test, "greedy")
beam = read(x_test, "beam_search")
print(f"held-out CER on {args.test} lines: greedy {text.character_error_rate(texts_test, greedy):.4f}, "
      f"beam search (width {args.beam_width}) {text.character_error_rate(texts_test, beam):.4f}")
misread = [i for i, (truth, b) in enumerate(zip(texts_test, beam)) if truth != b]
for i in sorted(set(range(min(5, args.test))) | set(misread[:3])):      # the first lines, a few misread
    print(f"  {texts_test[i]:<10} greedy {greedy[i]:<10} beam {beam[i]:<10} "
          f"{'' if texts_test[i] == beam[i] else '<- misread'}")
