"""Training: its config, set-up from a config, the loop, the label-smoothed loss, the Noam
schedule.

Names are imported on first use, so ``attnkit.train`` costs nothing until used.
"""

from .._lazy import lazy_attributes

_WHERE = {
    **dict.fromkeys(["DataConfig", "ModelSection", "OptimConfig", "RunConfig",
                     "TokenizerConfig", "TrainConfig", "flat_options", "load_config_file",
                     "model_differences", "resume_differences"], ".config"),
    **dict.fromkeys(["NoamLambda", "noam_lr", "noam_scheduler"], ".schedule"),
    **dict.fromkeys(["cosine_lr", "inverse_sqrt_lr", "warmup_scheduler"], ".schedule"),
    **dict.fromkeys(["smoothed_loss"], ".loss"),
    **dict.fromkeys(["TrainingDiverged"], ".step"),
    **dict.fromkeys(["Setup", "set_up", "check_resume"], ".setup"),
    **dict.fromkeys(["MetricsWindow", "Trainer"], ".trainer"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)
