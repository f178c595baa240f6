"""Models: Sequential, functional Model, training loop, summary, saving (keras.models)."""
from faltung.models.model import Model
from faltung.models.sequential import Sequential
from faltung.models.functional import Functional
from faltung.models.saving import load_model, save_model

__all__ = ["Model", "Sequential", "Functional", "load_model", "save_model"]
