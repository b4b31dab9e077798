"""Training infrastructure: the Noam learning-rate schedule and pickle-free checkpoints."""

from attnkit.train.checkpoint import (
    average_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_model_state,
    save_checkpoint,
)
from attnkit.train.schedule import NoamLambda, noam_lr, noam_scheduler

__all__ = [
    "NoamLambda",
    "average_checkpoints",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "noam_lr",
    "noam_scheduler",
    "read_model_state",
    "save_checkpoint",
]
