"""The seeds' training workflow on Fashion-MNIST, written as Keras code (only the import
differs): augmentation with ImageDataGenerator.flow, fit with validation data,
EarlyStopping(restore_best_weights=True) and ReduceLROnPlateau, evaluate, a per-class
report, save as .keras, load, predict, feature maps of the first layers, and fine-tuning
with the first layers frozen. Writes its plots and the model into --out-dir.

    python examples/workflow_fashion_mnist.py                       # full run
    python examples/workflow_fashion_mnist.py --epochs 1 --train-samples 512 --test-samples 256

Reads the real data (Debian package `dataset-fashion-mnist`, or $FALTUNG_DATA). The plots
need matplotlib (`pip install faltung[plot]`); without it they are skipped with a note.
"""
import argparse
import os

import numpy as np

import faltung as keras
from faltung import layers
from faltung.preprocessing.image import ImageDataGenerator

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=15)
p.add_argument("--fine-tune-epochs", type=int, default=3)
p.add_argument("--train-samples", type=int, default=60000)
p.add_argument("--test-samples", type=int, default=10000)
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--out-dir", default="workflow_output")
p.add_argument("--seed", type=int, default=1)
args = p.parse_args()
os.makedirs(args.out_dir, exist_ok=True)


def out(name):
    return os.path.join(args.out_dir, name)


def plot(what, fn, *fn_args, **fn_kwargs):
    try:
        fn(*fn_args, **fn_kwargs)
        print(f"wrote {fn_kwargs['path']}")
    except ImportError as e:
        print(f"skipping the {what} plot: {e}")


# -- data: scale to [0, 1], hold out 10% of the training images for validation ---------
keras.utils.set_random_seed(args.seed)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[:args.train_samples, ..., None].astype("float32") / 255.0
y_train = y_train[:args.train_samples]
x_test = x_test[:args.test_samples, ..., None].astype("float32") / 255.0
y_test = y_test[:args.test_samples]
n_val = max(len(x_train) // 10, 1)
x_val, y_val = x_train[-n_val:], y_train[-n_val:]
x_train, y_train = x_train[:-n_val], y_train[:-n_val]

augment = ImageDataGenerator(rotation_range=10, width_shift_range=0.1,
                             height_shift_range=0.1, zoom_range=0.1)
train_flow = augment.flow(x_train, y_train, batch_size=args.batch_size, seed=args.seed)

# -- model ------------------------------------------------------------------------------
model = keras.Sequential([
    layers.Input(shape=(28, 28, 1)),
    layers.Conv2D(32, (3, 3), padding="same", activation="relu", name="conv1"),
    layers.BatchNormalization(name="bn1"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), padding="same", activation="relu", name="conv2"),
    layers.BatchNormalization(name="bn2"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dropout(0.3),
    layers.Dense(128, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
model.summary()
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])

callbacks = [
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_lr=1e-5),
]
history = model.fit(train_flow, epochs=args.epochs, validation_data=(x_val, y_val),
                    callbacks=callbacks, verbose=2)
plot("history", keras.utils.plot_history, history, path=out("history.png"))

# -- evaluate ---------------------------------------------------------------------------
loss, acc, top2 = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
print(f"test loss {loss:.4f}, accuracy {acc:.4f}, top-2 accuracy {top2:.4f}")
y_pred = model.predict(x_test, batch_size=256, verbose=0).argmax(axis=1)
print(keras.utils.classification_report(y_test, y_pred, labels=list(range(10)),
                                        target_names=CLASSES))
print(keras.utils.confusion_matrix(y_test, y_pred, labels=list(range(10))))

# -- save, load, predict ----------------------------------------------------------------
path = out("fashion_mnist_cnn.keras")
model.save(path)
restored = keras.models.load_model(path)
probs = restored.predict(x_test[:8], verbose=0)
print("restored model predicts:", [CLASSES[i] for i in probs.argmax(axis=1)])
print("same as before saving:", np.allclose(probs, model.predict(x_test[:8], verbose=0), atol=1e-6))

# -- feature maps of the first layers ---------------------------------------------------
for name in ("conv1", "conv2"):
    plot(f"{name} feature map", keras.utils.plot_feature_maps, model, x_test[:1], layer=name,
         path=out(f"feature_maps_{name}.png"))

# -- fine-tuning: freeze the convolutional base (BatchNormalization then runs in inference
# mode), re-compile with a smaller learning rate, train the head ------------------------
for layer in model.layers[:6]:
    layer.trainable = False
model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
frozen = model.get_layer("conv1").get_weights()[0].copy()
model.fit(train_flow, epochs=args.fine_tune_epochs, validation_data=(x_val, y_val), verbose=2)
assert np.array_equal(frozen, model.get_layer("conv1").get_weights()[0]), "frozen layer moved"
loss, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
print(f"after fine-tuning: test loss {loss:.4f}, accuracy {acc:.4f}")
model.save(out("fashion_mnist_cnn_finetuned.keras"))
