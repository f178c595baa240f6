"""Optimizers with Keras 3 names, defaults and update rules (faltung.optimizers.SGD, ...)."""
from faltung.optimizers import schedules
from faltung.optimizers.base import Optimizer
from faltung.optimizers.rules import SGD, Adagrad, Adam, Adamax, AdamW, RMSprop

_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "adamax": Adamax, "rmsprop": RMSprop,
            "adagrad": Adagrad}


def get(identifier):
    """Optimizer from a name ("adam", "SGD", ...; case-insensitive, Keras defaults), a dict
    {"class_name", "config"}, an Optimizer instance or class."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, dict):
        cls = _BY_NAME.get(str(identifier.get("class_name", "")).lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: {identifier}")
        return cls.from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: {identifier}. "
                             f"Valid names: {sorted(_BY_NAME)}")
        return cls()
    raise ValueError(f"Could not interpret optimizer identifier: {identifier}")


def serialize(optimizer):
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config):
    return get(config)


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adamax", "RMSprop", "Adagrad", "schedules",
           "get", "serialize", "deserialize"]
