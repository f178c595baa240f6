"""`model.summary()`: Keras 3's table, rendered as plain text with box-drawing characters.

Keras 3 draws the table with the `rich` library; faltung renders the same columns
("Layer (type)", "Output Shape", "Param #", plus "Connected to" for non-sequential
functional graphs), the same rows ("dense (Dense)", "(None, 32)", "4,128") and the same
totals lines ("Total params: 558,186 (2.13 MB)", and "Optimizer params" once the optimizer
has state, counted in the total as Keras does) without `rich` and without colours.
Column widths follow Keras's `positions` (fractions of `line_length`); cells that do not
fit wrap onto further lines.
"""
import math
import shutil


def readable_memory_size(nbytes):
    """2232744 -> "2.13 MB" (Keras's binary units with 2 decimals)."""
    for unit in ["B", "KB", "MB", "GB", "TB", "PB"]:
        if nbytes / 1024 < 1:
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} PB"


def _count(weights):
    return int(sum(math.prod(w.shape) for w in {id(w): w for w in weights}.values()))


def _shape_text(layer):
    shape = getattr(layer, "output_shape", None)
    if not layer.built or shape is None:
        return "?"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _params_text(layer):
    if not layer.built:
        return "0 (unbuilt)"
    return f"{layer.count_params():,}"


def _wrap(text, width):
    lines = []
    while len(text) > width:
        cut = text.rfind(" ", 0, width + 1)
        cut = width if cut <= 0 else cut
        lines.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return lines + [text]


def _render_row(cells, widths, aligns, left="│", mid="│", right="│"):
    wrapped = [_wrap(c, w - 2) for c, w in zip(cells, widths)]
    height = max(len(w) for w in wrapped)
    out = []
    for i in range(height):
        parts = []
        for lines, w, a in zip(wrapped, widths, aligns):
            t = lines[i] if i < len(lines) else ""
            parts.append(" " + (t.rjust(w - 2) if a == "right" else t.ljust(w - 2)) + " ")
        out.append(left + mid.join(parts) + right)
    return out


def _connections(model, layer):
    """Keras's "Connected to" cell: `layer[node_index][tensor_index]` per input tensor of
    each of this layer's calls inside the model."""
    nodes = {id(n) for n in model._graph.nodes}
    parts = []
    for node in layer._inbound_nodes:
        if id(node) in nodes:
            for t in node.input_tensors:
                src, node_index, tensor_index = t._keras_history
                parts.append(f"{src.name}[{node_index}][{tensor_index}]")
    return ", ".join(parts) or "-"


def _sequential_like(model):
    """Keras's test: a Sequential or subclassed model, or a functional graph that is one
    chain (one node per depth, one input per node, no layer called twice)."""
    if type(model).__name__ != "Functional":
        return True
    nodes = model._graph.nodes
    if any(len(n.input_tensors) > 1 for n in nodes) or len(model._graph.inputs) > 1:
        return False
    consumed = [id(t) for n in nodes for t in n.input_tensors]
    if len(set(consumed)) != len(consumed):  # a tensor feeding two layers: branches
        return False
    layers = [id(n.layer) for n in nodes]
    return len(set(layers)) == len(layers)


def summary_text(model, line_length=None, positions=None):
    """The summary as one string (lines joined by newlines)."""
    layers = model.layers
    sequential_like = _sequential_like(model)
    if sequential_like:
        default_length, positions = 88, positions or [0.45, 0.80, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #"]
        aligns = ["left", "left", "right"]
    else:
        default_length, positions = 108, positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        aligns = ["left", "left", "right", "left"]
    default_length = min(default_length, shutil.get_terminal_size().columns - 4)
    line_length = line_length or default_length
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    widths, current = [], 0
    for pos in positions:
        w = int(pos) - current
        if w < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(w)
        current += w
    widths[0] -= 1 + len(widths)  # room for the border characters
    lines = [f'Model: "{model.name}"']
    bar = lambda l, m, r, ch: l + m.join(ch * w for w in widths) + r  # noqa: E731
    lines.append(bar("┏", "┳", "┓", "━"))
    lines += _render_row(header, widths, aligns, "┃", "┃", "┃")
    lines.append(bar("┡", "╇", "┩", "━"))
    for i, layer in enumerate(layers):
        if i:
            lines.append(bar("├", "┼", "┤", "─"))
        cells = [f"{layer.name} ({type(layer).__name__})", _shape_text(layer), _params_text(layer)]
        if not sequential_like:
            cells.append(_connections(model, layer))
        lines += _render_row(cells, widths, aligns)
    lines.append(bar("└", "┴", "┘", "─"))
    trainable, non_trainable = model.trainable_weights, model.non_trainable_weights
    nt, nn = _count(trainable), _count(non_trainable)
    lines.append(f" Total params: {nt + nn:,} ({readable_memory_size(4 * (nt + nn))})")
    lines.append(f" Trainable params: {nt:,} ({readable_memory_size(4 * nt)})")
    lines.append(f" Non-trainable params: {nn:,} ({readable_memory_size(4 * nn)})")
    opt = getattr(model, "optimizer", None)
    if getattr(model, "compiled", False) and opt is not None and getattr(opt, "built", False):
        ov = list(opt.variables)
        no, ob = sum(int(v.size) for v in ov), sum(int(v.nbytes) for v in ov)
        lines[-3] = f" Total params: {nt + nn + no:,} ({readable_memory_size(4 * (nt + nn) + ob)})"
        lines.append(f" Optimizer params: {no:,} ({readable_memory_size(ob)})")
    return "\n".join(lines)


def print_summary(model, line_length=None, positions=None, print_fn=None):
    """Print the summary; `print_fn` (if given) receives the whole text in one call."""
    text = summary_text(model, line_length, positions)
    (print_fn or print)(text)
