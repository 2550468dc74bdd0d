"""Training: typed configs, losses, data-parallel steps, checkpoints, the training loop, loading
a trained run back, and teacher-labelled data."""

from equijax.training.checkpoint import CheckpointError, Checkpoints
from equijax.training.config import ConfigError, ExperimentConfig, load_config, to_dict
from equijax.training.evaluate import evaluate_run
from equijax.training.loader import Loader
from equijax.training.loop import TrainingDiverged, train
from equijax.training.model_setup import build_model, initial_params, transfer_params
from equijax.training.model_spec import ModelSpec, model_spec
from equijax.training.run_dir import run_config
from equijax.training.step import (
    TrainState,
    make_eval_step,
    make_mesh,
    make_optimizer,
    make_train_step,
)
from equijax.training.teacher import generate_teacher_dataset
from equijax.training.trained import load_trained

__all__ = [
    "CheckpointError",
    "Checkpoints",
    "ConfigError",
    "ExperimentConfig",
    "Loader",
    "ModelSpec",
    "TrainState",
    "TrainingDiverged",
    "build_model",
    "evaluate_run",
    "generate_teacher_dataset",
    "initial_params",
    "load_config",
    "load_trained",
    "make_eval_step",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "model_spec",
    "run_config",
    "to_dict",
    "train",
    "transfer_params",
]
