"""Saving in Keras 3's formats, without pickle.

- `model.save_weights("m.weights.h5")`: HDF5 laid out as Keras 3's saving_lib does it:
  `layers/<snake_case class name>[_<n>]/vars/<i>` (e.g. `layers/dense/vars/0` for the first
  Dense kernel, `layers/dense_1/vars/1` for the second Dense's bias), the model's own empty
  `vars` group at the root. Layers are addressed by class name and position, not by their
  (auto-generated) names, so weights move between two instances of the same architecture.
- `model.save("m.keras")`: a zip with `config.json` (class_name/config per layer),
  `metadata.json` and `model.weights.h5`. `load_model` rebuilds layers by class name from
  the `faltung.layers` namespace (unknown class -> ValueError); the model is re-compiled
  from `compile_config` and the optimizer state (`optimizer/vars/<i>`: iterations, then
  the slots in creation order) is restored, so training resumes where it stopped.

Files are written to a temporary file in the target directory and moved into place with
`os.replace`, so a failed save never leaves a half-written file.
"""
import datetime
import io
import json
import os
import tempfile
import warnings
import zipfile

import numpy as np

from faltung import backend


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("faltung's model files need h5py, a dependency of faltung that is "
                          "missing here: `pip install h5py`.") from e
    return h5py


def _new_file_mode():
    """0666 minus the process's umask: the mode of a file created with open()."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(filepath, write, overwrite=True):
    """Call write(tmp_path) then move tmp_path onto filepath."""
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"File {filepath} exists and overwrite=False.")
    folder = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(prefix=".faltung-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _new_file_mode())  # mkstemp's 0600 -> what open() would have given
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _container_paths(prefix, layers):
    """Keras 3's naming inside a list: snake-cased class name, then _1, _2, ..."""
    used, out = {}, []
    for layer in layers:
        name = backend.to_snake_case(type(layer).__name__)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        out.append((f"{prefix}{name}", layer))
    return out


def _layer_paths(model):
    """[(h5 group path, layer)] as Keras 3's saving_lib walks a model: `layers/<name>` for
    Sequential (without its InputLayer) and functional models (with it); attribute names
    (sorted) for subclassed models, `attr/<name>` for lists of layers."""
    from faltung.layers.layer import Layer
    from faltung.models.functional import Functional
    from faltung.models.sequential import Sequential
    if isinstance(model, (Sequential, Functional)):
        return _container_paths("layers/", model.layers)
    out = []
    for attr in sorted(vars(model)):
        value = getattr(model, attr)
        if attr.startswith("_"):
            continue
        if isinstance(value, Layer):
            out.append((attr, value))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value):
            out += _container_paths(attr + "/", value)
    return out


def _is_model(layer):
    from faltung.models.model import Model
    return isinstance(layer, Model)


def _own_vars(layer):
    """Keras order: trainable variables first, then non-trainable ones."""
    ws = [] if _is_model(layer) else layer._weights
    return [w for w in ws if w.trainable] + [w for w in ws if not w.trainable]


def _write_weights(model, h5file):
    h5file.create_group("vars")
    _write_layers(model, h5file, "")


def _sublayers(layer):
    """Layers a layer holds as attributes, saved below it as Keras's saving_lib walks them
    (an RNN's weights live on its `cell`: `layers/lstm/cell/vars/0`; a Bidirectional's on
    `forward_layer/cell` and `backward_layer/cell`; a TimeDistributed's on `layer`)."""
    from faltung.layers.layer import Layer
    return [(attr, getattr(layer, attr))
            for attr in ("cell", "forward_layer", "backward_layer", "layer")
            if isinstance(layer.__dict__.get(attr), Layer)]


def _write_layer(layer, root, full):
    group = root.create_group(full).create_group("vars")
    for i, v in enumerate(_own_vars(layer)):
        group.create_dataset(str(i), data=np.asarray(v.value, np.float32))
    for attr, sub in _sublayers(layer):
        _write_layer(sub, root, f"{full}/{attr}")


def _write_layers(model, root, prefix):
    for path, layer in _layer_paths(model):
        full = prefix + path
        if _is_model(layer):  # nested model: its own layers below it
            root.create_group(full).create_group("vars")
            _write_layers(layer, root, full + "/")
            continue
        _write_layer(layer, root, full)


def _read_layers(model, root, prefix, skip_mismatch):
    for path, layer in _layer_paths(model):
        full = prefix + path
        if _is_model(layer):
            _read_layers(layer, root, full + "/", skip_mismatch)
            continue
        _read_layer(layer, root, full, skip_mismatch)


def _read_layer(layer, root, full, skip_mismatch):
    for attr, sub in _sublayers(layer):
        _read_layer(sub, root, f"{full}/{attr}", skip_mismatch)
    variables = _own_vars(layer)
    if not variables:
        return
    key = full + "/vars"
    if key not in root:
        raise ValueError(f"Layer '{layer.name}' expects {len(variables)} weights, but the "
                         f"saved file has no group '{key}'.")
    group = root[key]
    if len(group) != len(variables):
        msg = (f"Layer '{layer.name}' expected {len(variables)} variables, but received "
               f"{len(group)} variables during loading. Expected: {[v.name for v in variables]}")
        if skip_mismatch:
            warnings.warn(msg)
            return
        raise ValueError(msg)
    values = [np.asarray(group[str(i)]) for i in range(len(variables))]
    for v, val in zip(variables, values):
        if val.shape != v.shape:
            msg = (f"Layer '{layer.name}' weight shape {v.shape} is not compatible with "
                   f"provided weight shape {val.shape}.")
            if skip_mismatch:
                warnings.warn(msg)
                return
            raise ValueError(msg)
    for v, val in zip(variables, values):
        v.assign(val)


def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError("The filename must end in `.weights.h5`. "
                         f"Received: filepath={filepath}")
    h5py = _h5py()
    if not model.built:
        raise ValueError(f"Model {model.name} is not built: build it (call it on data or give "
                         "it an input shape) before saving its weights.")

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            _write_weights(model, f)
    _atomic_write(filepath, write, overwrite)


def load_weights(model, filepath, skip_mismatch=False):
    filepath = os.fspath(filepath)
    h5py = _h5py()
    if not model.built:
        raise ValueError(f"Model {model.name} is not built: build it before loading weights.")
    if filepath.endswith(".keras"):
        with zipfile.ZipFile(filepath, "r") as zf, zf.open("model.weights.h5") as fh:
            with h5py.File(io.BytesIO(fh.read()), "r") as f:
                _read_layers(model, f, "", skip_mismatch)
    elif filepath.endswith(".weights.h5"):
        with h5py.File(filepath, "r") as f:
            _read_layers(model, f, "", skip_mismatch)
    elif filepath.endswith(".h5") or filepath.endswith(".hdf5"):
        with h5py.File(filepath, "r") as f:
            _read_legacy_h5(model, f["model_weights"] if "model_weights" in f else f)
    else:
        raise ValueError("File format not supported: filepath=" + filepath + ". faltung "
                         "supports `.weights.h5` and `.keras` files.")


def _read_legacy_h5(model, group):
    """Keras 2's HDF5 weights (`layer_names` / `weight_names` attributes, e.g. the
    keras-applications ImageNet files), matched as Keras 3's legacy loader does: the file's
    layers that hold weights, in order, onto the model's layers that hold weights."""
    def text(values):
        return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]
    if "layer_names" not in group.attrs:
        raise ValueError("This HDF5 file holds no Keras weights (no `layer_names` attribute).")
    saved = []
    for name in text(group.attrs["layer_names"]):
        names = text(group[name].attrs.get("weight_names", []))
        if names:
            saved.append((name, [np.asarray(group[name][w]) for w in names]))
    mine = [l for l in _leaf_layers(model) if l.weights]
    if len(saved) != len(mine):
        raise ValueError(f"Layer count mismatch when loading weights from file. Model expected "
                         f"{len(mine)} layers, found {len(saved)} saved layers.")
    for layer, (name, values) in zip(mine, saved):
        own = layer.weights
        if len(values) != len(own) or any(v.shape != w.shape for v, w in zip(values, own)):
            raise ValueError(f"Layer '{layer.name}' expects weights of shapes "
                             f"{[w.shape for w in own]}; the file's layer '{name}' holds "
                             f"{[v.shape for v in values]}.")
    for layer, (_, values) in zip(mine, saved):
        for w, v in zip(layer.weights, values):
            w.assign(v)


def _leaf_layers(model):
    out = []
    for layer in model.layers:
        out += _leaf_layers(layer) if _is_model(layer) else [layer]
    return out


# -- config (de)serialization -------------------------------------------------------------
# faltung classes that Keras 3 lacks: written under their faltung module with a registered
# name, so faltung reads them back and Keras names the class it cannot locate.
FALTUNG_ONLY = {"MaxUnpooling2D", "AverageUnpooling2D", "Highway", "LossFunctionWrapper"}


def _keras_module(obj):
    """The public Keras 3 module of a faltung object's class (`keras.optimizers` for Adam,
    as Keras's deserializer imports it), or None for objects Keras has no module for."""
    from faltung import constraints, initializers, losses, metrics, optimizers, regularizers
    from faltung.layers.layer import Layer
    from faltung.optimizers.schedules import LearningRateSchedule
    for base, module in ((optimizers.Optimizer, "keras.optimizers"),
                         (LearningRateSchedule, "keras.optimizers.schedules"),
                         (losses.Loss, "keras.losses"), (metrics.Metric, "keras.metrics"),
                         (initializers.Initializer, "keras.initializers"),
                         (regularizers.Regularizer, "keras.regularizers"),
                         (constraints.Constraint, "keras.constraints"), (Layer, "keras.layers")):
        if isinstance(obj, base):
            return module
    return None


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if hasattr(v, "get_config"):
        return serialize_object(v)
    return getattr(v, "__name__", None) or getattr(v, "name", str(v))


def _header(obj):
    """module / class_name / registered_name as Keras 3 writes them."""
    name = type(obj).__name__
    from faltung.models.functional import Functional
    from faltung.models.sequential import Sequential
    if type(obj) is Sequential:
        return {"module": "keras", "class_name": name, "registered_name": None}
    if type(obj) is Functional:
        return {"module": "keras.src.models.functional", "class_name": name,
                "registered_name": name}
    if name in FALTUNG_ONLY:
        return {"module": type(obj).__module__, "class_name": name,
                "registered_name": f"faltung>{name}"}
    module = getattr(obj, "keras_module", None) or _keras_module(obj)
    if module is None:
        raise ValueError(f"Cannot serialize {obj!r}: {name} is not a Keras layer, optimizer, "
                         "loss, metric, initializer, regularizer or constraint.")
    return {"module": module, "class_name": name,
            "registered_name": name if module.startswith("keras.src.") else None}


def serialize_object(obj):
    if obj is None:
        return None
    if callable(obj) and not hasattr(obj, "get_config"):  # a built-in loss/metric function
        return obj.__name__
    cfg = obj.get_config() if hasattr(obj, "get_config") else {}
    return dict(_header(obj), config=_jsonable(cfg))


def serialize_layer(layer):
    out = serialize_object(layer)
    is_op = out["module"].startswith("keras.src.ops")  # ops have no build step in Keras
    if layer.built and getattr(layer, "input_shape", None) is not None and not is_op \
            and type(layer).__name__ != "InputLayer":
        out["build_config"] = {"input_shape": _jsonable(layer.input_shape)}
    return out


def _layer_class(name, module=None):
    import faltung.layers
    from faltung.layers.layer import Layer
    from faltung.models.functional import Functional
    from faltung.models.keras_ops import OPS
    from faltung.models.sequential import Sequential
    special = {"Sequential": Sequential, "Functional": Functional, "Model": Functional}
    if module and module.startswith("keras.src.ops"):
        cls = OPS.get(name)
    else:
        cls = special.get(name) or getattr(faltung.layers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(f"Could not locate class '{name}'"
                         + (f" (module '{module}')" if module else "") + ". faltung reads the "
                         "layer classes of `faltung.layers` and the Keras ops of masked models "
                         "(NotEqual, Any); custom classes cannot be loaded.")
    return cls


def _initializer_config(value):
    """Keeps only the constructor arguments of a nested initializer config. Works around
    faltung.initializers' VarianceScaling subclasses (GlorotUniform, ...) whose get_config
    also returns scale/mode/distribution, which their __init__ does not take."""
    import inspect
    from faltung import initializers
    cls = getattr(initializers, str(value.get("class_name")), None)
    if not isinstance(cls, type) or not isinstance(value.get("config"), dict):
        return value
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return value
    return dict(value, config={k: v for k, v in value["config"].items() if k in params})


# Keras 3 layer arguments that faltung's layers do not take, with the value at which they
# leave the computation unchanged. At that value they are ignored; at any other value
# loading stops with an error naming the layer and the argument.
_NEUTRAL = {"sparse": False, "ragged": False, "optional": False, "lora_rank": None,
            "lora_alpha": None, "quantization_config": None, "renorm": False,
            "renorm_clipping": None, "renorm_momentum": 0.99, "synchronized": False,
            "activity_regularizer": None, "input_axes": None, "output_axes": None}
# Arguments that matter only when another one is away from its neutral value.
_ONLY_WITH = {"renorm_clipping": "renorm", "renorm_momentum": "renorm"}


def _accepted_args(cls):
    import inspect
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names


def _config_value(key, v):
    if key == "dtype" and isinstance(v, dict):  # Keras 3 DTypePolicy -> its name
        return v.get("config", {}).get("name", "float32")
    if isinstance(v, dict) and "class_name" in v:
        return _initializer_config(v)
    return v


def _layer_arguments(cls, cfg):
    """The config of a saved layer as arguments of faltung's class: Keras-only arguments at
    their neutral values dropped, any other Keras-only argument refused."""
    config, accepted = cfg["config"], _accepted_args(cls)
    out = {}
    for key, value in config.items():
        if key in accepted or key not in _NEUTRAL:
            out[key] = _config_value(key, value)
            continue
        gate = _ONLY_WITH.get(key)
        if value == _NEUTRAL[key] or (gate and config.get(gate, _NEUTRAL[gate]) == _NEUTRAL[gate]):
            continue
        raise ValueError(f"{cfg['class_name']} '{config.get('name')}': argument `{key}`="
                         f"{value!r} changes what the layer computes and faltung does not "
                         f"support it (only {key}={_NEUTRAL[key]!r}).")
    return out


def _refuse_lambdas(cfg, safe_mode):
    """Keras's safe_mode: a `lambda` in a config is Python bytecode; faltung never runs it."""
    if isinstance(cfg, dict):
        if cfg.get("class_name") in ("__lambda__", "Lambda"):
            if safe_mode:
                raise ValueError(
                    "Requested the deserialization of a `lambda` object. This carries a "
                    "potential risk of arbitrary code execution and thus it is disallowed by "
                    "default (safe_mode=True).")
            raise ValueError("This file holds a `lambda` (Python bytecode); faltung never "
                             "executes code from a file, even with safe_mode=False.")
        for v in cfg.values():
            _refuse_lambdas(v, safe_mode)
    elif isinstance(cfg, list):
        for v in cfg:
            _refuse_lambdas(v, safe_mode)


def resolve_layer_references(layers):
    """Lets each freshly deserialized layer that names another layer of its model in its config
    (MaxUnpooling2D's partner pooling layer) reconnect to it, before the model is built."""
    by_name = {layer.name: layer for layer in layers}
    for layer in layers:
        if hasattr(layer, "resolve_layer_references"):
            layer.resolve_layer_references(by_name)


def deserialize_layer(cfg):
    """A layer (or model) from {"class_name", "config", "build_config"?}, as in config.json.
    Also reads the config of Keras 3 files for the layer classes faltung has."""
    cls = _layer_class(cfg["class_name"], cfg.get("module"))
    layer = cls.from_config(_layer_arguments(cls, cfg))
    build = cfg.get("build_config")
    # a layer that names another layer of its model builds once the model has reconnected them
    if build and not layer.built and not getattr(layer, "awaits_references", False):
        layer.build(_shape(build["input_shape"]))
    return layer


def _shape(s):
    """A JSON shape (list) as a tuple; a list of shapes as a list of tuples."""
    if s and all(isinstance(x, list) for x in s):
        return [tuple(x) for x in s]
    return tuple(s)


# -- whole model ---------------------------------------------------------------------------
def save_model(model, filepath, overwrite=True):
    """Keras 3 `.keras` zip: config.json, metadata.json, model.weights.h5."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError("Invalid filepath extension for saving. Please add a `.keras` "
                         "extension for the native Keras format (faltung supports only it). "
                         f"Received: filepath={filepath}")
    h5py = _h5py()
    if not model.built:
        raise ValueError(f"Model {model.name} is not built: build it before saving.")
    from faltung.models.functional import Functional
    config = serialize_layer(model)
    # Keras writes no input shape for a functional model (its graph holds the shapes)
    config["build_config"] = {"input_shape": None if isinstance(model, Functional)
                              else _jsonable(model.input_shape)}
    config["compile_config"] = _jsonable(model.get_compile_config())
    metadata = {"keras_version": "3.0.0", "faltung_version": _version(),
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        _write_weights(model, f)
        opt = model.optimizer if model.compiled else None
        if opt is not None and getattr(opt, "built", False):
            group = f.create_group("optimizer").create_group("vars")
            for i, v in enumerate(_keras_optimizer_vars(opt)):
                group.create_dataset(str(i), data=v)

    def write(tmp):
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr("metadata.json", json.dumps(metadata))
            zf.writestr("config.json", json.dumps(config))
            zf.writestr("model.weights.h5", buf.getvalue())
    _atomic_write(filepath, write, overwrite)


def model_to_json(model, **kwargs):
    """The model's architecture as a JSON string (Keras's `model.to_json()`)."""
    return json.dumps(serialize_layer(model), **kwargs)


def model_from_json(json_string, custom_objects=None):
    """A new (freshly initialized) model from `model.to_json()` output."""
    return deserialize_layer(json.loads(json_string))


def clone_model(model, input_tensors=None, clone_function=None):
    """A new model with the same architecture and newly initialized weights (Keras's
    `keras.models.clone_model`)."""
    if input_tensors is not None or clone_function is not None:
        raise NotImplementedError("faltung's clone_model supports only clone_model(model).")
    return deserialize_layer(serialize_layer(model))


def _version():
    import faltung
    return faltung.__version__


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a `.keras` file written by `model.save` (or a Keras 3 `.keras` file with the
    same layer classes)."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"File format not supported: filepath={filepath}. faltung loads "
                         "`.keras` files (use `model.load_weights` for `.weights.h5`).")
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"File not found: filepath={filepath}. Please ensure the file "
                                "is an accessible `.keras` zip file.")
    with zipfile.ZipFile(filepath, "r") as zf:
        config = json.loads(zf.read("config.json"))
    _refuse_lambdas(config, safe_mode)
    model = deserialize_layer(config)
    shape = (config.get("build_config") or {}).get("input_shape")
    if not model.built and shape:
        model.build(_shape(shape))
    load_weights(model, filepath)
    cc = config.get("compile_config")
    if compile and cc:
        _recompile(model, cc)
        if model.compiled:
            _load_optimizer_state(model, filepath)
    return model


def _load_optimizer_state(model, filepath):
    """Restore the optimizer's iterations and slots (Adam's m and v, ...), if saved."""
    h5py = _h5py()
    with zipfile.ZipFile(filepath, "r") as zf, zf.open("model.weights.h5") as fh:
        with h5py.File(io.BytesIO(fh.read()), "r") as f:
            if "optimizer/vars" not in f:
                return
            group = f["optimizer/vars"]
            values = [np.asarray(group[str(i)]) for i in range(len(group))]
    opt = model.optimizer
    try:
        opt.build(model.trainable_weights)
        n = len(opt.variables)
        if len(values) == n + 1 and _has_lr_variable(opt):  # Keras's layout
            opt.learning_rate = float(values.pop(1))
            slots = [None] * (n - 1)
            for value, i in zip(values[1:], _keras_slot_order(opt)):
                slots[i] = value
            values = values[:1] + slots
        opt.set_weights(values)
    except (ValueError, AttributeError) as e:
        warnings.warn(f"Skipping the saved optimizer state ({e}).")


def _has_lr_variable(opt):
    """Keras keeps a float learning rate as an optimizer variable (not a schedule's)."""
    from faltung.optimizers.schedules import LearningRateSchedule
    return not isinstance(opt._learning_rate, LearningRateSchedule)


def _keras_slot_order(opt):
    """Position in faltung's slot list (per variable: its slots in `_slot_names` order) of
    each slot in Keras's order. Keras creates the slots in groups (`add_optimizer_variables`
    over all variables per group): Adam's momentum and velocity interleaved per variable,
    then every velocity_hat; RMSprop's velocities, then momentums, then average gradients."""
    names = list(opt._slot_names)
    groups = [[n] for n in names] if type(opt).__name__ == "RMSprop" else \
        [[n for n in names if n != "velocity_hat"], [n for n in names if n == "velocity_hat"]]
    n_vars = len(opt._slot_list) // max(len(names), 1)
    return [v * len(names) + names.index(n)
            for group in groups for v in range(n_vars) for n in group]


def _keras_optimizer_vars(opt):
    """Optimizer variables as Keras 3 saves them: iterations, the learning rate (unless it is
    a schedule), then the slots in Keras's order."""
    iterations, *slots = opt.get_weights()
    head = [iterations]
    if _has_lr_variable(opt):
        head.append(np.asarray(opt.learning_rate, np.float32))
    return head + [slots[i] for i in _keras_slot_order(opt)]


def _objects(spec, get):
    """Serialized objects ({"class_name", "config"}) in a compile argument, made with `get`;
    strings, numbers and the per-output structure stay as they are."""
    if isinstance(spec, dict):
        if "class_name" in spec:
            return get(spec)
        return {k: _objects(v, get) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_objects(v, get) for v in spec]
    return spec


def _recompile(model, cc):
    from faltung import losses, metrics
    try:
        model.compile(optimizer=cc.get("optimizer") or "rmsprop",
                      loss=_objects(cc.get("loss"), losses.get),
                      metrics=_objects(cc.get("metrics"), metrics.get),
                      loss_weights=cc.get("loss_weights"),
                      weighted_metrics=_objects(cc.get("weighted_metrics"), metrics.get))
    except Exception as e:  # a model without its compile state is still usable
        warnings.warn(f"Could not re-compile the loaded model ({e}); call `compile()` again.")
