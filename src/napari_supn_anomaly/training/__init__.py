"""Training and fine-tuning the SUPN-VAE."""
from .trainer import TrainConfig, TrainingCollapsed, run_to_end, train_supn_vae

__all__ = ["TrainConfig", "TrainingCollapsed", "run_to_end", "train_supn_vae"]
from .fit import calibrate, fit_anomaly_model, split_holdout  # noqa: E402

__all__ += ["calibrate", "fit_anomaly_model", "split_holdout"]
