"""Builders of small archives in the official CIFAR layout, for the loader and CLI tests.

Tests make their own data: these write real .tar.gz files with Python-2 style pickles, as the
official archives are, so no test needs a download.
"""
import io
import pickle
import tarfile

import numpy as np


def planar(x):
    """NHWC uint8 -> the official (N, 3072) rows: all red, then green, then blue values."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(len(x), 3072)


def py2_pickle(d):
    """Pickle as the official files are: protocol 2, byte-string keys."""
    return pickle.dumps(d, protocol=2)


def write_tar(path, folder_name, members):
    """Write ``members`` ({name: bytes}) into a .tar.gz under ``folder_name/``, in dict order."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{folder_name}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


def cifar10_members(seed=0, sizes=(6, 5), n_test=4):
    """Official-layout CIFAR-10 members and the arrays they hold (train batches in order)."""
    rng = np.random.default_rng(seed)
    xs = [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in sizes]
    ys = [rng.integers(0, 10, n) for n in sizes]
    x_test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test)
    members = {}
    # Stored out of numerical order, as in the official archive: the loader must sort.
    for k in reversed(range(len(sizes))):
        members[f"data_batch_{k + 1}"] = py2_pickle({
            b"batch_label": f"training batch {k + 1} of {len(sizes)}".encode(),
            b"labels": [int(v) for v in ys[k]],
            b"data": planar(xs[k]),
            b"filenames": [b"x.png"] * sizes[k],
        })
    members["test_batch"] = py2_pickle({
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in y_test],
        b"data": planar(x_test),
        b"filenames": [b"x.png"] * n_test,
    })
    members["batches.meta"] = py2_pickle({
        b"label_names": [n.encode() for n in CIFAR10_NAMES],
        b"num_cases_per_batch": 10000,
        b"num_vis": 3072,
    })
    expected = (np.concatenate(xs), np.concatenate(ys)), (x_test, y_test)
    return members, expected


def cifar10_archive(path, **kwargs):
    members, expected = cifar10_members(**kwargs)
    write_tar(path, "cifar-10-batches-py", members)
    return path, expected
