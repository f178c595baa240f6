"""keras.saving aliases: save_model / load_model (see faltung.models.saving)."""
from faltung.models.saving import load_model, save_model  # noqa: F401
