"""What a run trains on: the engine. tinybin's own (this module) trains the NumPy + Numba model
in this process; tinybin.torch.engine.TorchEngine trains the same network on PyTorch, on one
device or data-parallel over N processes. The run skeleton (tinybin.train.run) is the same for
both: it prepares a tinybin model and SGD (the seed's initial weights, or a checkpoint's), hands
them to `start`, and then asks the engine only for what is written here.

    rank, world      this process and how many train together (rank 0 writes the run folder)
    compile_ahead()  called first: anything the engine can prepare while the run sets up
    load_data(cfg)   the run's training and test images
    start(model, optimizer)                      take the prepared tinybin model and SGD
    fit(batches, schedule, steps, hooks, start)  SGD steps, one record each (as tinybin.train.fit)
    evaluate(x, y)                               (mean loss, accuracy), eval mode
    bn_layers(), set_bn_stats(which), recalibrate(batches)   the BN statistics after training
    tinybin_state()  (tinybin model, tinybin SGD) as they are now: what a checkpoint holds
"""
from __future__ import annotations

import time

from ..kernels import warm
from .bn_stats import bn_layers, recalibrate_bn, set_bn_stats
from .config import load_data
from .loop import evaluate, fit


class Engine:
    """tinybin's engine: the model trains in place, in this one process."""

    name = "tinybin"
    rank, world = 0, 1

    def describe(self) -> str:
        """What the run's first line adds about where it trains (nothing: the CPU, one process)."""
        return ""

    def compile_ahead(self):
        """A run's first call: on a new machine with a free core, a second process starts
        compiling the kernels from the one the first step needs last (kernels/warm.py)."""
        warm.helper()

    def load_data(self, cfg):
        return load_data(cfg)[:2]

    def start(self, model, optimizer):
        self.model, self.optimizer = model, optimizer

    def fit(self, batches, schedule, steps, hooks, start):
        return fit(self.model, self.optimizer, batches, schedule, steps, hooks, start)

    def evaluate(self, x, y):
        return evaluate(self.model, x, y)

    def bn_layers(self):
        return bn_layers(self.model)

    def set_bn_stats(self, which):
        set_bn_stats(self.model, which)

    def recalibrate(self, batches):
        return recalibrate_bn(self.model, batches)

    def tinybin_state(self):
        return self.model, self.optimizer

    def final_test(self, recalibration_batches, x, y, bn_stats="recalibrated", log=print) -> dict:
        """After training: choose the BN inference statistics (P1; Ioffe & Szegedy 2015), then test on (x, y).

        With BN layers, the moving averages are tested too; "recalibrated" then recomputes the
        statistics over `recalibration_batches` (one epoch of augmented training batches).
        """
        result = {"bn_stats": bn_stats if self.bn_layers() else None}
        note, tested = "", None              # tested: (loss, accuracy) with the statistics in use
        if self.bn_layers():
            self.set_bn_stats("moving")
            tested = self.evaluate(x, y)
            result["test_acc_moving"] = tested[1]
            if bn_stats == "recalibrated":
                t = time.perf_counter()
                n = self.recalibrate(recalibration_batches)
                self.set_bn_stats("recalibrated")
                log(f"BN statistics recalibrated over {n} augmented batches ({time.perf_counter() - t:.0f}s)")
                note = f" (BN statistics recalibrated; with moving averages {100 * result['test_acc_moving']:.2f} %)"
                tested = None                # the statistics changed: test again
            else:
                note = " (BN statistics: moving averages)"
        result["test_loss"], result["test_acc"] = tested or self.evaluate(x, y)
        result["test_images"] = len(x)
        log(f"test accuracy: {100 * result['test_acc']:.2f} % on {len(x)} images{note}")
        return result


def final_test(model, recalibration_batches, x, y, bn_stats="recalibrated", log=print) -> dict:
    """`Engine.final_test` for a tinybin model (see there)."""
    engine = Engine()
    engine.start(model, None)
    return engine.final_test(recalibration_batches, x, y, bn_stats, log)
