"""Probes: per-step statistics of a training WRN (probe.py), the statistics they use
(statistics.py), their files (records.py), plots (plots.py) and short runs (short_run.py)."""
from ..train.divergence import diagnose
from .plots import plot_ccdf, plot_ccdf_phases, plot_over_time
from .points import GRAD_LABELS, GRAD_POINTS, POINTS, final_batch_norms, head_weight_grad
from .probe import Probe
from .records import layer_table, load
from .short_run import short_run
from .statistics import ccdf, kurtosis, moments_from_sums, pooled, power_sums, tail_stats

__all__ = ["Probe", "POINTS", "GRAD_POINTS", "GRAD_LABELS", "head_weight_grad", "final_batch_norms", "short_run",
           "diagnose", "load", "layer_table", "power_sums", "moments_from_sums", "kurtosis", "tail_stats", "pooled",
           "ccdf", "plot_ccdf", "plot_ccdf_phases", "plot_over_time"]
