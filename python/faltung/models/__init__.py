"""Models: Sequential, functional Model, training loop, summary, saving (keras.models)."""
from faltung.models.model import Model
from faltung.models.sequential import Sequential
from faltung.models.functional import Functional
from faltung.models.saving import clone_model, load_model, model_from_json, save_model

__all__ = ["Model", "Sequential", "Functional", "load_model", "save_model", "clone_model",
           "model_from_json"]
