"""Plots of a training run and of a layer's feature maps (matplotlib, the `plot` extra:
`pip install faltung[plot]`), and `plot_model`, a graphviz-free picture of a model's graph
as text (faltung additions beside Keras's `plot_model`, which needs pydot and graphviz)."""
import numpy as np


def _pyplot(what):
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"{what} needs matplotlib, which is not installed. Install it with "
                          "`pip install matplotlib` (or `pip install faltung[plot]`).") from None
    return plt


def _finish(plt, fig, path):
    """Write the figure to `path` and close it, or leave it open for a notebook to show."""
    if path is not None:
        fig.savefig(path)
        plt.close(fig)
    return fig


def plot_history(history, path=None, keys=None, figsize=None):
    """Loss and every metric per epoch, training vs validation: one subplot per quantity
    (loss first, then "accuracy", ..., and "learning_rate" when a callback logged it), the
    "val_" curve beside its training curve. `history` is the `History` that `fit` returns
    or its `.history` dict; `keys` limits the quantities. A per-class (array) metric is
    drawn as its mean. Returns the matplotlib Figure; with `path`, writes it there (any
    format matplotlib knows from the extension) and closes it."""
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError("plot_history: expected a History (from fit) or a non-empty dict of "
                         f"per-epoch lists. Received: {type(history).__name__}")
    names = [k for k in logs if not k.startswith("val_")]
    names += [k[4:] for k in logs if k.startswith("val_") and k[4:] not in logs]
    names.sort(key=lambda k: k != "loss")  # loss first, the rest in the history's order
    if keys is not None:
        missing = [k for k in keys if k not in names]
        if missing:
            raise ValueError(f"plot_history: unknown keys {missing}. The history has {names}")
        names = list(keys)
    plt = _pyplot("plot_history")
    from matplotlib.ticker import MaxNLocator
    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=figsize or (4.5 * cols, 3.5 * rows),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        for key, label in ((name, "train"), ("val_" + name, "validation")):
            if key in logs:
                values = [float(np.mean(v)) for v in logs[key]]
                ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return _finish(plt, fig, path)


def _activations(model_or_activations, x, layer):
    if layer is None:
        maps = np.asarray(model_or_activations)
        if x is not None:
            raise ValueError("plot_feature_maps: `x` is used with a model and a `layer`; "
                             "received activations and x")
        return maps
    from faltung.models.functional import Functional
    model = model_or_activations
    if x is None:
        raise ValueError("plot_feature_maps: a model and a `layer` need an input `x`")
    target = model.get_layer(layer) if isinstance(layer, str) else layer
    probe = Functional(inputs=model.inputs, outputs=target.output)
    return probe.predict(np.asarray(x, np.float32), verbose=0)


def plot_feature_maps(model_or_activations, x=None, layer=None, path=None, sample=0,
                      max_maps=32, cols=8, cmap="viridis"):
    """A grid of a layer's feature maps, one image per channel: either activations of shape
    (batch, height, width, channels) or (height, width, channels), or a model, an input
    batch `x` and a `layer` (its name or the layer) whose output is computed with
    `Model(model.inputs, layer.output)`, as in Keras. Shows sample `sample`, the first
    `max_maps` channels, `cols` per row. Returns the Figure; with `path`, writes it."""
    plt = _pyplot("plot_feature_maps")
    maps = _activations(model_or_activations, x, layer)
    if maps.ndim == 4:
        if not 0 <= sample < len(maps):
            raise ValueError(f"plot_feature_maps: sample {sample} outside the batch of {len(maps)}")
        maps = maps[sample]
    if maps.ndim != 3:
        raise ValueError("plot_feature_maps: expected feature maps of shape (batch, height, "
                         f"width, channels) or (height, width, channels). Received {maps.shape}")
    n = min(maps.shape[-1], max_maps)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(maps[..., i], cmap=cmap)
            ax.set_title(str(i), fontsize=7)
    if layer is not None:
        fig.suptitle(layer if isinstance(layer, str) else layer.name)
    fig.tight_layout()
    return _finish(plt, fig, path)


def _inbound(model, layer, index):
    from faltung.models.summary import _connections
    if hasattr(model, "_graph") and type(model).__name__ == "Functional":
        return _connections(model, layer)
    return model.layers[index - 1].name if index else "-"  # a Sequential chain


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=True, show_layer_activations=False, show_trainable=False,
               dpi=100, **kwargs):
    """The model's graph as text: one line per layer with its output shape (show_shapes)
    and the layers it takes its inputs from (`<- name[node][tensor]`, as the summary's
    "Connected to"). Returns the text. `to_file` ending in .txt gets the text; an image
    extension (.png, .pdf, .svg) gets the text drawn with matplotlib; None writes nothing.
    Keras's plot_model arguments that shape a graphviz drawing (rankdir, expand_nested,
    ...) are accepted and have no effect."""
    from faltung.models.summary import _shape_text
    unknown = set(kwargs) - {"rankdir", "expand_nested", "subgraph"}
    if unknown:
        raise TypeError(f"plot_model: unrecognized keyword argument(s) {sorted(unknown)}")
    rows = []
    for i, layer in enumerate(model.layers):
        cells = [f"{layer.name} ({type(layer).__name__})" if show_layer_names
                 else type(layer).__name__]
        if show_shapes:
            cells.append(_shape_text(layer))
        if show_dtype:
            cells.append(getattr(layer, "dtype", "float32") or "float32")
        if show_layer_activations and getattr(layer, "activation", None) is not None:
            act = layer.activation
            cells.append(getattr(act, "__name__", str(act)))
        if show_trainable:
            cells.append("trainable" if layer.trainable else "frozen")
        rows.append((cells, _inbound(model, layer, i)))
    widths = [max(len(c[j]) for c, _ in rows) for j in range(len(rows[0][0]))] if rows else []
    lines = [f'Model: "{model.name}"']
    for cells, inbound in rows:
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths))
        lines.append(f"{text}  <- {inbound}" if inbound != "-" else text.rstrip())
    text = "\n".join(lines) + "\n"
    if to_file is not None:
        if str(to_file).endswith(".txt"):
            with open(to_file, "w") as f:
                f.write(text)
        else:
            plt = _pyplot("plot_model with an image file")
            fig = plt.figure(figsize=(max(6, 0.09 * max(len(l) for l in lines)),
                                      0.25 * len(lines) + 0.5), dpi=dpi)
            fig.text(0.02, 0.98, text, family="monospace", fontsize=9, va="top")
            _finish(plt, fig, to_file)
    return text
