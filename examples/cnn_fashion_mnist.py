"""The README's main job: a CNN trained on Fashion-MNIST, then test accuracy, per-class
precision / recall and the confusion matrix (the seeds evaluate that way).

    python examples/cnn_fashion_mnist.py [--epochs 6] [--batch-size 128] [--lr 3e-3]

The recipe: Adam whose learning rate warms up linearly over the first 5% of the steps to --lr
and then follows a cosine down to 0 (keras.optimizers.schedules.CosineDecay with warmup), batch
128: six epochs reach what twelve epochs at a constant rate halved on plateaus did (0.926),
in half the time.

Reads the real data (Debian package `dataset-fashion-mnist`, or $FALTUNG_DATA). Written as
Keras code: only the import differs.
"""
import argparse
import time

import numpy as np

import faltung as keras
from faltung import layers

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=6)
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--seed", type=int, default=1)
args = p.parse_args()

keras.utils.set_random_seed(args.seed)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[..., None].astype("float32") / 255.0
x_test = x_test[..., None].astype("float32") / 255.0

model = keras.Sequential([
    layers.Input(shape=(28, 28, 1)),
    layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
    layers.BatchNormalization(),
    layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
    layers.BatchNormalization(),
    layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dropout(0.4),
    layers.Dense(128, activation="relu"),
    layers.Dropout(0.3),
    layers.Dense(10, activation="softmax"),
])
model.summary()
steps = args.epochs * -(-len(x_train) // args.batch_size)
warmup = steps // 20
schedule = keras.optimizers.schedules.CosineDecay(
    0.0, decay_steps=steps - warmup, warmup_target=args.lr, warmup_steps=warmup)
model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
t0 = time.perf_counter()
model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
seconds = time.perf_counter() - t0

probs = model.predict(x_test, batch_size=256, verbose=0)
y_pred = probs.argmax(axis=1)
print(keras.utils.classification_report(y_test, y_pred, target_names=CLASSES))
print("confusion matrix (rows: true class, columns: predicted):")
print(keras.utils.confusion_matrix(y_test, y_pred, num_classes=10))
print(f"training time: {seconds:.0f} s, {seconds / args.epochs:.1f} s per epoch "
      f"({keras.get_num_threads()} threads)")
print(f"test accuracy: {np.mean(y_pred == y_test):.4f}")
