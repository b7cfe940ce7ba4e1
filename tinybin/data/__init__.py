"""tinybin's data layer: CIFAR archives, image folders, subsets, augmentation, batches.

    from tinybin.data import load_cifar10, balanced_subset, Batches

    (x_train, y_train), (x_test, y_test) = load_cifar10_subset() # shipped 4000/1000; uint8 NHWC, int64
    x_small, y_small = balanced_subset(x_train, y_train, n_per_class=500, seed=0)
    train = Batches(x_small, y_small, batch_size=125, augment=True, seed=0)
    for epoch in range(10):
        for xb, yb in train.epoch(epoch):                         # float32 0..255, int64
            ...

Images are uint8 until a batch is formed; batches are float32 with raw 0..255 values unless
standardisation is asked for. The paper (P2 §III.A) gives the augmentation and the batch size.
"""

from .augmentation import augment
from .batching import Batches, batches, channel_moments, channel_stats
from .cifar import (
    UnofficialArchiveWarning,
    UnsafeArchiveError,
    cifar_class_names,
    load_cifar10,
    load_cifar10_subset,
    load_cifar100,
)
from .download import ArchiveError, DownloadError, cache_dir, download
from .files import known_file
from .folder import load_image_folder
from .subset import balanced_subset, stratified_sample, train_val_split

__all__ = [
    "ArchiveError",
    "Batches",
    "DownloadError",
    "UnofficialArchiveWarning",
    "UnsafeArchiveError",
    "augment",
    "balanced_subset",
    "batches",
    "cache_dir",
    "channel_moments",
    "channel_stats",
    "cifar_class_names",
    "download",
    "known_file",
    "load_cifar10",
    "load_cifar10_subset",
    "load_cifar100",
    "load_image_folder",
    "stratified_sample",
    "train_val_split",
]
