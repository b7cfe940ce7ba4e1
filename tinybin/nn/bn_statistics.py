"""The statistics policy of batch norm, one for tinybin.nn.BatchNorm2d (NumPy) and
tinybin.torch.BatchNorm2d (PyTorch): which statistics a layer normalises with, and how it keeps them.

Training normalises with the batch's own mean and biased variance; the layer keeps two kinds of
statistics for inference:
  * moving averages, updated every training batch: s ← momentum·s + (1 − momentum)·s_batch
    (the authors' Keras code, momentum 0.99), starting from the first batch's statistics, not
    from 0 and 1: with momentum 0.99 those would otherwise dominate the averages (and the test
    accuracy shown after each epoch) for hundreds of steps;
  * recalibrated statistics (the papers'): after training, weights frozen, the plain average of
    the per-batch means and biased variances over one epoch of augmented training batches
    (Ioffe & Szegedy, Algorithm 2), between start_recalibration() and finish_recalibration().
`inference_stats` picks: "auto" (recalibrated if computed, else moving), "moving" or
"recalibrated". A frozen layer has fixed statistics (set once from training images), used in
training as in eval, and nothing to average or recalibrate.

The buffers (same names and dtypes in both layers): running_mean, running_var (float32),
moving_batches (int64), calib_mean, calib_var (float64), calib_batches (int64), and `fitted`
(bool) in a frozen layer. The layer supplies how to make float64 zeros, how to store a buffer
and the momentum of the next moving-average update (0 for the first batch).
"""
INFERENCE_STATS = ("auto", "moving", "recalibrated")
NOT_FITTED = ("this frozen BatchNorm2d has no statistics yet: set them with fit_statistics(training_images) "
              "(wrn(input_norm='fixed'): model.input_bn)")
NOT_RECALIBRATED = ("recalibrated statistics requested but never computed: run "
                    "tinybin.train.recalibrate_bn(model, batches) first, or use the moving averages")


class Recalibration:
    """Running sums of the per-batch means and variances during a recalibration pass."""

    def __init__(self, sum_mean, sum_var):
        self.sum_mean, self.sum_var, self.count = sum_mean, sum_var, 0

    def add(self, mean, var):
        self.sum_mean += mean
        if var is not None:
            self.sum_var += var
        self.count += 1


class BatchStatisticsPolicy:
    """Mixin of a batch-norm layer: the policy above. The layer defines `_zeros64()`,
    `_store(buffer_name, value)` and `_moving_momentum()`, and sets `self._calib = None`."""

    def start_recalibration(self):
        """Begin averaging batch statistics; training-mode forwards now accumulate instead of
        updating the moving averages. A frozen layer keeps its statistics: nothing happens."""
        if not self.frozen:
            self._calib = Recalibration(self._zeros64(), self._zeros64())

    def finish_recalibration(self):
        """Store the averages of the accumulated per-batch statistics."""
        if self.frozen:
            return
        calib, self._calib = self._calib, None
        if calib.count == 0:
            raise RuntimeError("recalibration saw no batches")
        self._store("calib_mean", calib.sum_mean / calib.count)
        self._store("calib_var", calib.sum_var / calib.count)
        self._store("calib_batches", calib.count)

    def record_batch_statistics(self, mean, var):
        """Add a training batch's statistics (var None: mean-only) to the recalibration sums, or
        to the moving averages."""
        if self._calib is not None:
            self._calib.add(mean, var)
            return
        momentum = self._moving_momentum()
        self._store("moving_batches", self.moving_batches + 1)
        self._store("running_mean", momentum * self.running_mean + (1 - momentum) * mean)
        if var is not None:
            self._store("running_var", momentum * self.running_var + (1 - momentum) * var)

    def inference_mean_var(self):
        """(mean, var) used in eval mode, per `inference_stats`; a frozen layer's fitted ones always."""
        if self.frozen:
            if not bool(self.fitted):
                raise RuntimeError(NOT_FITTED)
            return self.calib_mean, self.calib_var
        mode = self.inference_stats
        if mode not in INFERENCE_STATS:
            raise ValueError(f"inference_stats must be 'auto', 'moving' or 'recalibrated', got {mode!r}")
        calibrated = int(self.calib_batches) > 0
        if mode == "recalibrated" and not calibrated:
            raise RuntimeError(NOT_RECALIBRATED)
        if mode == "recalibrated" or (mode == "auto" and calibrated):
            return self.calib_mean, self.calib_var
        return self.running_mean, self.running_var
