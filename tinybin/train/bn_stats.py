"""Batch-norm statistics after training (P2 §III.A, §II.A): recalibration, and the choice between
recalibrated and moving averages (the final test with the chosen ones: tinybin.train.engine)."""
from __future__ import annotations

from .. import nn
from ..tensor import no_grad


def bn_layers(model):
    """The BN layers whose statistics come from batches; frozen ones (fixed statistics, e.g.
    wrn(input_norm="fixed")'s input_bn) have nothing to recalibrate or choose, and are left out."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and not m.frozen]


def recalibrate_bn(model, batches):
    """Post-training BN statistics (P1; Ioffe & Szegedy 2015): weights frozen, every BN layer's inference
    mean and variance become the average of its per-batch means and biased variances over
    `batches` (an iterable of (x, y) or of x). Moving averages are left as they are. Returns the
    number of batches; 0 (and nothing changes) if the model has no BN layer. Frozen BN layers
    keep their fixed statistics."""
    bns = bn_layers(model)
    if not bns:
        return 0
    was_training = model.training
    model.train()
    for bn in bns:
        bn.start_recalibration()
    count = 0
    try:
        with no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, tuple) else batch)
                count += 1
    except BaseException:
        for bn in bns:
            bn._calib = None
        raise
    finally:
        model.train(was_training)
    for bn in bns:
        bn.finish_recalibration()
    return count


def set_bn_stats(model, which: str):
    """Which BN statistics eval mode uses: 'recalibrated', 'moving' or 'auto'."""
    for bn in bn_layers(model):
        bn.inference_stats = which
