"""Batch-norm statistics after training (P2 §IV): recalibration, the choice between
recalibrated and moving averages, and the final test with the chosen ones."""
from __future__ import annotations

import time

from .. import nn
from ..tensor import no_grad
from .loop import evaluate


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


def final_test(model, recalibration_batches, x, y, bn_stats="recalibrated", log=print) -> dict:
    """After training: choose the BN inference statistics (P1; Ioffe & Szegedy 2015), then test on (x, y).

    With BN layers, the moving averages are tested too; "recalibrated" then recomputes the
    statistics over `recalibration_batches` (one epoch of augmented training batches).
    """
    result = {"bn_stats": bn_stats if bn_layers(model) else None}
    note, tested = "", None                  # tested: (loss, accuracy) with the statistics in use
    if bn_layers(model):
        set_bn_stats(model, "moving")
        tested = evaluate(model, x, y)
        result["test_acc_moving"] = tested[1]
        if bn_stats == "recalibrated":
            t = time.perf_counter()
            n = recalibrate_bn(model, recalibration_batches)
            set_bn_stats(model, "recalibrated")
            log(f"BN statistics recalibrated over {n} augmented batches ({time.perf_counter() - t:.0f}s)")
            note = f" (BN statistics recalibrated; with moving averages {100 * result['test_acc_moving']:.2f} %)"
            tested = None                    # the statistics changed: test again
        else:
            note = " (BN statistics: moving averages)"
    result["test_loss"], result["test_acc"] = tested or evaluate(model, x, y)
    result["test_images"] = len(x)
    log(f"test accuracy: {100 * result['test_acc']:.2f} % on {len(x)} images{note}")
    return result
