"""Training: the loop (loop.py), a run around it (run.py: prepare → epochs → finish, for any
engine (engine.py); config, run folder, resume, logs, checkpoints, final test), and when a run
has failed (divergence.py)."""
from .bn_stats import bn_layers, recalibrate_bn, set_bn_stats
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .config import DATASETS, TrainConfig, load_data, train_batches
from .curves import plot_curves
from .divergence import Diverged, DivergenceDetector, diagnose, exploded, same_output
from .engine import Engine, final_test
from .logs import Progress
from .loop import evaluate, fit, train_step
from .run import train

__all__ = ["DATASETS", "TrainConfig", "train", "fit", "train_step", "evaluate", "Diverged", "DivergenceDetector", "diagnose",
           "exploded", "same_output", "load_data", "train_batches", "save_checkpoint", "read_checkpoint",
           "load_checkpoint", "recalibrate_bn", "set_bn_stats", "final_test", "bn_layers", "Progress", "plot_curves",
           "Engine"]
