"""Trained models: the file format, built-in models and the model wrapper used to score crops.

Names are imported from their submodules on first use, so the light parts (``data_range``'s
matching modes, which the command line offers) load without torch.
"""
from ..errors import ModelFileError
from ..lazy import exports_on_first_use

_EXPORTS = {
    "AnomalyModel": "anomaly_model", "CropScores": "anomaly_model",
    "builtin_model_names": "builtin", "builtin_model_path": "builtin", "describe_builtin_models": "builtin",
    "load_model": "builtin",
    "read_metadata": "model_file",
    "DataRange": "data_range",
}
__all__ = ["AnomalyModel", "CropScores", "DataRange", "ModelFileError", "builtin_model_names", "builtin_model_path",
           "describe_builtin_models", "load_model", "read_metadata"]
__getattr__ = exports_on_first_use(__name__, _EXPORTS)
