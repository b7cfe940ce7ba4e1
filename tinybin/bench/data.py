"""Data-layer benchmark: ``python -m tinybin bench data``.

Targets (on 2 cores): augmentation + batching at least 20,000 images/s, so it is never the
bottleneck of training; 60,000 JPEG images loaded from class folders in under 30 s the first
time and under 2 s from the cache.

The folder part needs the JPEG CIFAR-10 set: ``--jpeg-tar cifar10-jpeg.tar.gz`` (extracted to a
temporary folder, deleted afterwards) or ``--folder DIR`` (a class-folder root, or a folder
holding ``train/`` and ``test/`` class-folder roots). Without either it looks for
``../shared/data/cifar10-jpeg.tar.gz`` and otherwise skips that part. For the first-time
figure, existing ``.tinybin_cache*.npz`` files in those roots are deleted (they are rebuilt).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from ..data.augmentation import augment
from ..data.batching import Batches
from ..data.folder import CACHE_NAME, load_image_folder
from .timer import median_ms

AUGMENT_TARGET = 20_000  # images/s
FIRST_LOAD_TARGET = 30.0  # s, 60,000 JPEGs
CACHED_LOAD_TARGET = 2.0  # s
DEFAULT_JPEG_TAR = Path("..") / "shared" / "data" / "cifar10-jpeg.tar.gz"


def _verdict(ok):
    return "OK" if ok else "BELOW TARGET"


def _median_rate(fn, n, repeat):
    """Median images/s of ``fn()`` over ``repeat`` runs (one warm-up run first)."""
    return n / (median_ms(fn, repeat, warmup=1) / 1e3)


def bench_augmentation(n=50_000, batch_size=125, repeat=3, seed=0):
    x = np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n, dtype=np.int64) % 10
    rng = np.random.default_rng(seed)

    def augment_only():
        for i in range(0, n, batch_size):
            augment(x[i:i + batch_size], rng)

    def epoch(loader):
        def run():
            for _ in loader.epoch(0):
                pass
        return run

    print(f"augmentation + batching: {n} images 32x32x3, batch {batch_size}, "
          f"median of {repeat} epochs (target >= {AUGMENT_TARGET:,} images/s)")
    figures = {
        "augment() alone (flip, pad 4 + crop, cutout 18)": _median_rate(augment_only, n, repeat),
        "Batches(augment=True) -> float32 batches": _median_rate(
            epoch(Batches(x, y, batch_size, augment=True, seed=seed)), n, repeat),
        "Batches(augment=False) -> float32 batches": _median_rate(
            epoch(Batches(x, y, batch_size, seed=seed)), n, repeat),
        "Batches(augment=True, standardize=True)": _median_rate(
            epoch(Batches(x, y, batch_size, augment=True, standardize=True, seed=seed)), n, repeat),
    }
    for k, (name, rate) in enumerate(figures.items()):
        check = f"   {_verdict(rate >= AUGMENT_TARGET)}" if k == 1 else ""
        print(f"  {name:<50} {rate:>9,.0f} images/s{check}")
    return figures


def _roots(folder: Path):
    """A class-folder root, or its train/ and test/ class-folder roots."""
    split = [folder / s for s in ("train", "test") if (folder / s).is_dir()]
    return split or [folder]


def bench_folders(roots, workers=1):
    for root in roots:
        for stale in root.glob(f"{CACHE_NAME}*.npz"):
            stale.unlink()
    results = {}
    for label, kwargs in (("first load (decode + write cache)", {"workers": workers}),
                          ("from the cache", {})):
        t = time.perf_counter()
        counts = []
        for root in roots:
            x, y, classes = load_image_folder(root, **kwargs)
            counts.append(len(x))
        results[label] = time.perf_counter() - t
        results["images"] = sum(counts)
        results["counts"] = counts
    total = results["images"]
    per_root = " + ".join(f"{root.name} {c}" for root, c in zip(roots, results["counts"]))
    print(f"image folders: {per_root} = {total} images, {workers} decoding process(es)")
    first, cached = results["first load (decode + write cache)"], results["from the cache"]
    print(f"  {'first load (decode + write cache)':<50} {first:>9.2f} s "
          f"({total / first:,.0f} images/s; target < {FIRST_LOAD_TARGET:.0f} s for 60,000)"
          f"   {_verdict(first < FIRST_LOAD_TARGET * total / 60_000)}")
    print(f"  {'from the cache':<50} {cached:>9.2f} s "
          f"(target < {CACHED_LOAD_TARGET:.0f} s for 60,000)"
          f"   {_verdict(cached < CACHED_LOAD_TARGET * total / 60_000)}")
    return results


def run(images=50_000, batch_size=125, repeat=3, seed=0, jpeg_tar=None, folder=None, workers=1,
        no_folder=False) -> dict:
    """Print the figures of the module docstring; returns them ({"augmentation": ..., "folders": ...})."""
    print(f"tinybin data benchmark: {os.cpu_count()} CPU(s), numpy {np.__version__}")
    results = {"augmentation": bench_augmentation(images, batch_size, repeat, seed)}
    if no_folder:
        return results
    tar = jpeg_tar
    if folder is None and tar is None and DEFAULT_JPEG_TAR.is_file():
        tar = DEFAULT_JPEG_TAR
    if folder is not None:
        results["folders"] = bench_folders(_roots(Path(folder)), workers)
    elif tar is not None:
        with tempfile.TemporaryDirectory(prefix="tinybin-bench-") as tmp:
            t = time.perf_counter()
            with tarfile.open(tar) as archive:
                # The "data" filter refuses absolute paths and links out of the folder
                # (Python >= 3.10.12 / 3.11.4); older versions extract as before.
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(tmp, **safe)
            print(f"extracted {tar} into a temporary folder in {time.perf_counter() - t:.1f} s")
            tops = [p for p in Path(tmp).iterdir() if p.is_dir()]
            root = tops[0] if len(tops) == 1 else Path(tmp)
            results["folders"] = bench_folders(_roots(root), workers)
    else:
        print("image folders: skipped (give --jpeg-tar cifar10-jpeg.tar.gz or --folder DIR)")
    return results

