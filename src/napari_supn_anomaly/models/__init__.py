"""Trained models: the file format, built-in models and the model wrapper used to score crops."""
from .anomaly_model import AnomalyModel, CropScores
from .builtin import builtin_model_names, builtin_model_path, describe_builtin_models, load_model
from ..errors import ModelFileError
from .model_file import read_metadata

__all__ = ["AnomalyModel", "CropScores", "builtin_model_names", "builtin_model_path",
           "describe_builtin_models", "load_model", "ModelFileError", "read_metadata"]
