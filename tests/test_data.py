"""Tests of tinybin.data: CIFAR archives, image folders, subsets, augmentation, batches.

Archives are built here in the official layout (Python-2 pickles with byte-string keys,
uint8 (N, 3072) channel-planar data) so the loaders are checked against known arrays; the
subset shipped in datasets/ is checked too, and the JPEG folders in ../shared/data where
present (skipped, with the reason, where absent). No test touches the network:
downloads are served by a fake ``urllib.request.urlopen``.
"""

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest
from PIL import Image

from tinybin import data
from tinybin.data import cifar, folder

from archives import CIFAR10_NAMES, cifar10_archive, cifar10_members, planar, py2_pickle, write_tar

SHIPPED_SUBSET = os.path.join(os.path.dirname(__file__), "..", "datasets", "cifar-10-subset-python.tar.gz")

# --------------------------------------------------------------------------- archive builders


FINE = [f"fine{k:02d}" for k in range(100)]
COARSE = [f"coarse{k:02d}" for k in range(20)]


def cifar100_archive(path, n_train=7, n_test=3, seed=1):
    rng = np.random.default_rng(seed)
    parts = {}
    for name, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, 100, n)
        coarse = fine // 5  # any mapping will do; it only has to differ from the fine labels
        parts[name] = (x, fine, coarse)
    members = {
        name: py2_pickle({
            b"filenames": [b"x.png"] * len(x),
            b"batch_label": name.encode(),
            b"fine_labels": [int(v) for v in fine],
            b"coarse_labels": [int(v) for v in coarse],
            b"data": planar(x),
        })
        for name, (x, fine, coarse) in parts.items()
    }
    members["meta"] = py2_pickle({
        b"fine_label_names": [n.encode() for n in FINE],
        b"coarse_label_names": [n.encode() for n in COARSE],
    })
    write_tar(path, "cifar-100-python", members)
    return path, parts


def load_quietly(loader, **kwargs):
    """Call a loader on a non-official archive, checking it warns so."""
    with pytest.warns(data.UnofficialArchiveWarning, match="not the published"):
        return loader(**kwargs)


# --------------------------------------------------------------------------- CIFAR archives


def test_cifar10_archive_exact_arrays(tmp_path):
    path, ((x_train, y_train), (x_test, y_test)) = cifar10_archive(tmp_path / "c10.tar.gz")
    (a, b), (c, d) = load_quietly(data.load_cifar10, archive=path)
    assert a.dtype == np.uint8 and c.dtype == np.uint8
    assert b.dtype == np.int64 and d.dtype == np.int64
    assert a.shape == (11, 32, 32, 3) and c.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(a, x_train)  # data_batch_1 then data_batch_2
    np.testing.assert_array_equal(b, y_train)
    np.testing.assert_array_equal(c, x_test)
    np.testing.assert_array_equal(d, y_test)


def test_cifar10_pixel_layout_is_channel_planar(tmp_path):
    """Pin the layout by hand, independently of the ``planar`` helper."""
    row = np.zeros(3072, dtype=np.uint8)
    row[0 * 1024 + 0 * 32 + 1] = 200  # red, row 0, column 1
    row[2 * 1024 + 5 * 32 + 0] = 77  # blue, row 5, column 0
    row[1 * 1024 + 31 * 32 + 30] = 9  # green, row 31, column 30
    batch = {b"labels": [7], b"data": row[None]}
    members = {"data_batch_1": py2_pickle(batch), "test_batch": py2_pickle(batch),
               "batches.meta": py2_pickle({b"label_names": [b"a"]})}
    path = write_tar(tmp_path / "one.tar.gz", "cifar-10-batches-py", members)
    (x, y), _ = load_quietly(data.load_cifar10, archive=path)
    expected = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    expected[0, 0, 1, 0], expected[0, 5, 0, 2], expected[0, 31, 30, 1] = 200, 77, 9
    np.testing.assert_array_equal(x, expected)
    assert y.tolist() == [7]


def test_cifar10_class_names(tmp_path):
    path, _ = cifar10_archive(tmp_path / "c10.tar.gz")
    names = load_quietly(data.cifar_class_names, dataset="cifar10", archive=path)
    assert names == CIFAR10_NAMES


def test_cifar100_fine_coarse_labels_and_names(tmp_path):
    path, parts = cifar100_archive(tmp_path / "c100.tar.gz")
    for mode, column in (("fine", 1), ("coarse", 2)):
        (a, b), (c, d) = load_quietly(data.load_cifar100, archive=path, label_mode=mode)
        np.testing.assert_array_equal(a, parts["train"][0])
        np.testing.assert_array_equal(c, parts["test"][0])
        np.testing.assert_array_equal(b, parts["train"][column])
        np.testing.assert_array_equal(d, parts["test"][column])
        assert b.dtype == np.int64
    assert load_quietly(data.cifar_class_names, dataset="cifar100", archive=path) == FINE
    assert load_quietly(data.cifar_class_names, dataset="cifar100", archive=path,
                        label_mode="coarse") == COARSE
    with pytest.raises(ValueError, match="label_mode"):
        data.load_cifar100(archive=path, label_mode="medium")


def test_wrong_layout_names_the_missing_member(tmp_path):
    members, _ = cifar10_members()
    del members["test_batch"]
    path = write_tar(tmp_path / "no-test.tar.gz", "cifar-10-batches-py", members)
    with pytest.raises(data.ArchiveError, match="cifar-10-batches-py/test_batch"):
        data.load_cifar10(archive=path)

    members, _ = cifar10_members()
    members = {k: v for k, v in members.items() if not k.startswith("data_batch")}
    path = write_tar(tmp_path / "no-train.tar.gz", "cifar-10-batches-py", members)
    with pytest.raises(data.ArchiveError, match="data_batch_1"):
        data.load_cifar10(archive=path)

    # A CIFAR-100 archive is not a CIFAR-10 one: everything CIFAR-10 needs is missing.
    path, _ = cifar100_archive(tmp_path / "c100.tar.gz")
    with pytest.raises(data.ArchiveError, match="batches.meta"):
        data.load_cifar10(archive=path)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_archive_names_the_file(tmp_path, damage):
    path, _ = cifar10_archive(tmp_path / "good.tar.gz")
    raw = path.read_bytes()
    bad = tmp_path / f"{damage}.tar.gz"
    bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else os.urandom(5000))
    with pytest.raises(data.ArchiveError, match=f"{damage}.tar.gz.*truncated or corrupt"):
        data.load_cifar10(archive=bad)


def test_missing_archive_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        data.load_cifar10(archive=tmp_path / "nothere.tar.gz")


# --------------------------------------------------------------------------- downloads (faked)


class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns: a readable body with headers; may drop the connection."""

    def __init__(self, payload, length=None, fail_after=None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload) if length is None else length)}
        self.fail_after = fail_after

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(size)


@pytest.fixture
def fake_net(monkeypatch):
    """Replace urlopen; ``fake_net.serve(payload, **kw)`` sets what it returns."""

    class Net:
        calls = []
        response = None

        def serve(self, payload, **kwargs):
            self.response = lambda: FakeResponse(payload, **kwargs)

        def offline(self):
            def refuse():
                raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
            self.response = refuse

    net = Net()

    def urlopen(url, timeout=None):
        net.calls.append(url)
        return net.response()

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return net


def official_md5(monkeypatch, payload):
    """Pretend ``payload`` is the published CIFAR-10 archive."""
    monkeypatch.setitem(cifar.DATASETS["cifar10"], "md5", hashlib.md5(payload).hexdigest())


def test_download_verifies_renames_and_reuses_cache(tmp_path, fake_net, monkeypatch, capsys):
    path, ((x_train, y_train), _) = cifar10_archive(tmp_path / "src.tar.gz")
    payload = path.read_bytes()
    official_md5(monkeypatch, payload)
    fake_net.serve(payload)
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matching the published MD5: no warning
        (a, b), _ = data.load_cifar10(data_dir=cache)
    np.testing.assert_array_equal(a, x_train)
    np.testing.assert_array_equal(b, y_train)
    assert fake_net.calls == [cifar.DATASETS["cifar10"]["url"]]
    assert fake_net.calls[0] == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert sorted(os.listdir(cache)) == ["cifar-10-python.tar.gz"]  # nothing else left
    assert "100%" in capsys.readouterr().err  # the progress bar reached the end

    fake_net.offline()  # the second load needs no network
    (a2, _), _ = data.load_cifar10(data_dir=cache)
    np.testing.assert_array_equal(a2, x_train)
    assert len(fake_net.calls) == 1


def test_download_with_wrong_checksum_is_deleted(tmp_path, fake_net):
    path, _ = cifar10_archive(tmp_path / "src.tar.gz")
    fake_net.serve(path.read_bytes())  # not the published MD5
    cache = tmp_path / "cache"
    with pytest.raises(data.ArchiveError, match="c58f30108f718f92721af3b95e74349a"):
        data.load_cifar10(data_dir=cache)
    assert os.listdir(cache) == []


def test_no_network_error_says_how_to_place_the_archive(tmp_path, fake_net):
    fake_net.offline()
    cache = tmp_path / "cache"
    with pytest.raises(data.DownloadError) as info:
        data.load_cifar100(data_dir=cache)
    message = str(info.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message
    assert str(cache.resolve()) in message
    assert "by hand" in message
    assert isinstance(info.value, OSError)
    assert os.listdir(cache) == []


@pytest.mark.parametrize("how", ["dropped", "short"])
def test_interrupted_download_leaves_nothing(tmp_path, fake_net, monkeypatch, how):
    path, _ = cifar10_archive(tmp_path / "src.tar.gz")
    payload = path.read_bytes()
    official_md5(monkeypatch, payload)
    if how == "dropped":
        fake_net.serve(payload, fail_after=1000)
    else:  # the server promised more bytes than it sent
        fake_net.serve(payload, length=len(payload) + 10)
    cache = tmp_path / "cache"
    with pytest.raises(data.DownloadError, match="cifar-10-python.tar.gz"):
        data.load_cifar10(data_dir=cache)
    assert os.listdir(cache) == []


def test_download_false_never_touches_the_network(tmp_path, fake_net):
    fake_net.offline()
    with pytest.raises(data.DownloadError, match="download=False"):
        data.load_cifar10(data_dir=tmp_path, download=False)
    assert fake_net.calls == []


def test_cache_folder_from_environment_and_default(tmp_path, fake_net, monkeypatch):
    fake_net.offline()
    placed = tmp_path / "env" / "cifar-10-python.tar.gz"
    placed.parent.mkdir()
    _, ((x_train, _), _) = cifar10_archive(placed)  # placed by hand, not the official file
    monkeypatch.setenv("TINYBIN_DATA", str(placed.parent))
    assert data.cache_dir() == placed.parent
    (a, _), _ = load_quietly(data.load_cifar10)
    np.testing.assert_array_equal(a, x_train)

    monkeypatch.delenv("TINYBIN_DATA")
    monkeypatch.chdir(tmp_path)
    assert data.cache_dir() == type(placed)("datasets")
    assert data.cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_corrupt_file_in_cache_is_an_error_naming_it(tmp_path, fake_net):
    fake_net.offline()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(data.ArchiveError, match="cifar-10-python.tar.gz"):
        data.load_cifar10(data_dir=tmp_path)


# --------------------------------------------------------------------------- shared real data


def shared_file(folder, name):
    path = folder / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (see shared/data/README.md)")
    return path


def test_shipped_subset(monkeypatch, tmp_path):
    """datasets/ ships the first 4000 / 1000 CIFAR-10 images, found from any folder, no warning."""
    monkeypatch.chdir(tmp_path)  # not the repository: found through the checkout's datasets/
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x_train, y_train), (x_test, y_test) = data.load_cifar10_subset()
        # the same file named with archive= is known by its SHA-256: no "not the published" warning
        (x2, _), _ = data.load_cifar10(archive=SHIPPED_SUBSET)
        names = data.cifar_class_names("cifar10", archive=SHIPPED_SUBSET)
    assert x_train.shape == (4000, 32, 32, 3) and x_test.shape == (1000, 32, 32, 3)
    assert y_train.shape == (4000,) and y_test.shape == (1000,)
    assert y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert np.bincount(y_train, minlength=10).min() > 300  # every class is there
    np.testing.assert_array_equal(x2, x_train)
    assert names == CIFAR10_NAMES


def test_shipped_file_with_other_bytes_is_refused(monkeypatch, tmp_path):
    placed = tmp_path / "cifar-10-subset-python.tar.gz"
    cifar10_archive(placed)  # a file of the right name but other bytes, first in the search order
    with pytest.raises(data.ArchiveError, match="SHA-256"):
        data.load_cifar10_subset(data_dir=tmp_path)
    monkeypatch.setattr("tinybin.data.files.CHECKOUT_DATASETS", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="first 4000"):
        data.load_cifar10_subset(data_dir=tmp_path / "empty")


def test_known_file_download_checks_sha256(tmp_path, fake_net, monkeypatch):
    from tinybin.data import files

    payload = b"released model bytes"
    entry = files.KnownFile("m/model.mat", hashlib.sha256(payload).hexdigest(), "a model", "https://host/model.mat")
    monkeypatch.setitem(files.KNOWN, "test-model", entry)
    fake_net.serve(payload)
    path = files.known_file("test-model", data_dir=tmp_path)
    assert path == tmp_path / "m" / "model.mat" and path.read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.mat"]
    monkeypatch.setitem(files.KNOWN, "test-model", entry.__class__(**{**entry.__dict__, "path": "m/other.mat",
                                                                     "sha256": "0" * 64}))
    with pytest.raises(data.ArchiveError, match="SHA256"):
        files.known_file("test-model", data_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.mat"]  # nothing half-written


class _Touch:
    """A pickle payload that, unpickled by plain pickle.load, creates a file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("member", ["batches.meta", "data_batch_1"])
def test_crafted_archive_runs_nothing(tmp_path, member):
    target = tmp_path / "pwned"
    members, _ = cifar10_members()
    members[member] = pickle.dumps({b"label_names": _Touch(target)}, protocol=2)
    path = write_tar(tmp_path / "evil.tar.gz", "cifar-10-batches-py", members)
    with pytest.raises(data.UnsafeArchiveError, match=rf"member cifar-10-batches-py/{member} asks to call .*system"):
        data.load_cifar10(archive=path)
    if member == "batches.meta":  # the only member cifar_class_names reads
        with pytest.raises(data.UnsafeArchiveError):
            data.cifar_class_names("cifar10", archive=path)
    assert not target.exists()
    assert pickle.loads(members[member]) is not None and target.exists()  # plain pickle would have run it


def test_unknown_archive_warns_only_once_readable(tmp_path):
    path, _ = cifar10_archive(tmp_path / "c.tar.gz")
    with pytest.warns(data.UnofficialArchiveWarning) as record:
        data.load_cifar10(archive=path)
    assert len(record) == 1
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(path.read_bytes()[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a corrupt file gets its error and no warning first
        with pytest.raises(data.ArchiveError, match="truncated or corrupt"):
            data.load_cifar10(archive=bad)


@pytest.fixture(scope="module")
def jpeg_root(shared_data, tmp_path_factory):
    tar = shared_file(shared_data, "cifar10-jpeg.tar.gz")
    out = tmp_path_factory.mktemp("jpeg")
    with tarfile.open(tar) as archive:
        archive.extractall(out, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    yield out / "cifar10-jpeg"
    shutil.rmtree(out, ignore_errors=True)  # 60,000 files: do not keep them between runs


@pytest.mark.slow  # writing the 60,000 files took 13-55 s here (2 busy cores), loading 10-16 s
def test_shared_jpeg_folders(jpeg_root, shared_data):
    x, y, names = data.load_image_folder(jpeg_root / "train")
    assert x.shape == (50000, 32, 32, 3) and x.dtype == np.uint8
    assert names == CIFAR10_NAMES
    assert np.bincount(y).tolist() == [5000] * 10
    x_test, y_test, test_names = data.load_image_folder(jpeg_root / "test")
    assert x_test.shape == (10000, 32, 32, 3) and test_names == CIFAR10_NAMES
    assert np.bincount(y_test).tolist() == [1000] * 10

    # Second time from the cache beside the folder: the same arrays.
    assert (jpeg_root / "test" / ".tinybin_cache.npz").is_file()
    x2, y2, _ = data.load_image_folder(jpeg_root / "test")
    np.testing.assert_array_equal(x2, x_test)
    np.testing.assert_array_equal(y2, y_test)

    # The first JPEG of each class is the first test image of that class (README): the
    # decoded pixels must be close to the exact ones, in RGB order and the right way round.
    (_, _), (exact, exact_y) = data.load_cifar10_subset()
    for label in range(10):
        jpeg = x_test[np.flatnonzero(y_test == label)[0]].astype(float)
        truth = exact[np.flatnonzero(exact_y == label)[0]].astype(float)
        assert np.abs(jpeg - truth).mean() < 12  # README: about 5.8 for quality 75
        assert np.abs(jpeg[..., ::-1] - truth).mean() > np.abs(jpeg - truth).mean()


# --------------------------------------------------------------------------- image folders


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def small_folder(root, seed=0):
    """Two classes of lossless 8x6 PNGs ('cat' written first, but 'ant' sorts first)."""
    rng = np.random.default_rng(seed)
    images = {}
    for cls, n in (("cat", 3), ("ant", 2)):
        for k in range(n):
            images[(cls, k)] = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
            save(root / cls / f"{k:02d}.png", images[(cls, k)])
    (root / "ant" / "notes.txt").write_text("not an image")
    return images


def test_image_folder_classes_labels_pixels(tmp_path):
    images = small_folder(tmp_path / "imgs")
    x, y, names = data.load_image_folder(tmp_path / "imgs")
    assert names == ["ant", "cat"]
    assert y.tolist() == [0, 0, 1, 1, 1] and y.dtype == np.int64
    expected = [images[("ant", 0)], images[("ant", 1)],
                images[("cat", 0)], images[("cat", 1)], images[("cat", 2)]]
    np.testing.assert_array_equal(x, np.stack(expected))


def test_image_folder_classes_are_sorted(tmp_path):
    names = ["zebra", "yak", "ox", "mole", "lynx", "hare", "emu", "bee"]  # created z..b
    for k, name in enumerate(names):
        save(tmp_path / "f" / name / "0.png", np.full((2, 2, 3), k, dtype=np.uint8))
    x, y, classes = data.load_image_folder(tmp_path / "f")
    assert classes == sorted(names) and y.tolist() == list(range(8))
    assert [names.index(c) for c in classes] == x[:, 0, 0, 0].tolist()


def test_image_folder_grey_and_jpeg_become_rgb(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(8, 6)
    save(tmp_path / "g" / "a" / "0.png", grey)
    save(tmp_path / "g" / "b" / "0.jpg", np.full((8, 6, 3), 128, dtype=np.uint8))
    x, y, names = data.load_image_folder(tmp_path / "g")
    assert x.shape == (2, 8, 6, 3)
    np.testing.assert_array_equal(x[0], np.repeat(grey[:, :, None], 3, axis=2))
    assert np.abs(x[1].astype(int) - 128).max() <= 2


def test_image_folder_mixed_sizes_names_the_file(tmp_path):
    small_folder(tmp_path / "imgs")
    save(tmp_path / "imgs" / "cat" / "odd.png", np.zeros((9, 6, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"odd\.png is 9x6") as info:
        data.load_image_folder(tmp_path / "imgs")
    assert "size=" in str(info.value)
    x, _, _ = data.load_image_folder(tmp_path / "imgs", size=(4, 5))  # resizing is the way out
    assert x.shape == (6, 4, 5, 3)
    x, _, _ = data.load_image_folder(tmp_path / "imgs", size=7)
    assert x.shape == (6, 7, 7, 3)


@pytest.mark.parametrize("workers", [1, 2])
def test_image_folder_undecodable_files_are_named_and_counted(tmp_path, workers, monkeypatch):
    monkeypatch.setattr(folder, "CHUNK", 2)  # several chunks, so the worker path is taken
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "a" / "0.png").write_bytes(b"")              # zero bytes, and the very first file
    (tmp_path / "b" / "2.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=r"a/0\.png cannot be decoded.*2 of the 7 image files"):
        data.load_image_folder(tmp_path, cache=False, workers=workers)


def test_image_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_image_folder(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    save(tmp_path / "flat" / "a.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.load_image_folder(tmp_path / "flat")


def test_image_folder_cache_hit_and_invalidation(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    small_folder(root)
    x, y, names = data.load_image_folder(root)
    assert (root / ".tinybin_cache.npz").is_file()
    assert not [p for p in root.iterdir() if p.name.endswith(".part")]

    def no_decoding(*args):
        raise AssertionError("decoded although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(folder, "_decode", no_decoding)
        x2, y2, names2 = data.load_image_folder(root)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert names2 == names

    # A changed file (new content and modification time) is decoded again.
    new = np.full((8, 6, 3), 3, dtype=np.uint8)
    save(root / "ant" / "00.png", new)
    os.utime(root / "ant" / "00.png", ns=(1, 1))
    x3, _, _ = data.load_image_folder(root)
    np.testing.assert_array_equal(x3[0], new)
    np.testing.assert_array_equal(x3[1:], x[1:])


def test_image_folder_cache_falls_back_when_beside_is_not_writable(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    small_folder(root)
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file, so blocked/x.npz cannot be created
    elsewhere = tmp_path / "elsewhere" / "c.npz"
    monkeypatch.setattr(folder, "_cache_paths", lambda root, size: [blocked / "x.npz", elsewhere])
    x, _, _ = data.load_image_folder(root)
    assert elsewhere.is_file()
    monkeypatch.setattr(folder, "_decode", lambda *a: 1 / 0)
    np.testing.assert_array_equal(data.load_image_folder(root)[0], x)


def test_image_folder_worker_processes_agree(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    small_folder(root)
    monkeypatch.setattr(folder, "CHUNK", 2)  # three chunks for five files
    x1, y1, _ = data.load_image_folder(root, cache=False)
    x2, y2, _ = data.load_image_folder(root, cache=False, workers=2)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    save(root / "cat" / "z.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"z\.png is 2x2"):
        data.load_image_folder(root, cache=False, workers=2)


# --------------------------------------------------------------------------- subsets


def labelled(n_per_class=(30, 40, 50)):
    y = np.concatenate([np.full(n, k) for k, n in enumerate(n_per_class)])
    y = np.random.default_rng(5).permutation(y)
    x = np.arange(len(y))  # each example's original position: lets tests trace it back
    return x, y


def test_balanced_subset_per_class():
    x, y = labelled()
    xs, ys = data.balanced_subset(x, y, n_per_class=20, seed=3)
    assert np.bincount(ys).tolist() == [20, 20, 20]
    assert np.all(np.diff(xs) > 0)  # original order, no repeats
    np.testing.assert_array_equal(y[xs], ys)  # examples keep their labels
    xs2, _ = data.balanced_subset(x, y, n_per_class=20, seed=3)
    xs3, _ = data.balanced_subset(x, y, n_per_class=20, seed=4)
    np.testing.assert_array_equal(xs, xs2)
    assert not np.array_equal(xs, xs3)


def test_balanced_subset_total_and_errors():
    x, y = labelled()
    _, ys = data.balanced_subset(x, y, n_total=62, seed=0)
    counts = np.bincount(ys)
    assert counts.sum() == 62 and counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="exactly one"):
        data.balanced_subset(x, y)
    with pytest.raises(ValueError, match="exactly one"):
        data.balanced_subset(x, y, n_per_class=1, n_total=3)
    with pytest.raises(ValueError, match="class 0 has 30"):
        data.balanced_subset(x, y, n_per_class=31)


def test_train_val_split_stratified():
    x, y = labelled((100, 200, 300))
    (xt, yt), (xv, yv) = data.train_val_split(x, y, val_fraction=0.1, seed=1)
    assert np.bincount(yv).tolist() == [10, 20, 30]
    assert sorted(np.concatenate([xt, xv]).tolist()) == list(range(600))  # a partition
    np.testing.assert_array_equal(y[xt], yt)
    np.testing.assert_array_equal(y[xv], yv)
    (_, _), (xv2, _) = data.train_val_split(x, y, val_fraction=0.1, seed=1)
    (_, _), (xv3, _) = data.train_val_split(x, y, val_fraction=0.1, seed=2)
    np.testing.assert_array_equal(xv, xv2)
    assert not np.array_equal(xv, xv3)
    (_, _), (_, yv) = data.train_val_split(x, y, n_val=7, seed=0)
    assert len(yv) == 7 and np.bincount(yv, minlength=3).max() <= 4
    (_, yt), (_, yv) = data.train_val_split(x, y, n_val=50, seed=0, stratify=False)
    assert len(yv) == 50 and len(yt) == 550


def test_stratified_sample_of_class_sorted_labels():
    """A folder's test set comes class by class: its first N would be one class."""
    y = np.repeat([0, 1, 2], [300, 300, 400])           # sorted by class, as a folder loads
    x = np.arange(len(y))
    xs, ys = data.stratified_sample(x, y, 100)
    assert np.bincount(ys).tolist() == [30, 30, 40]
    assert np.all(np.diff(xs) > 0)                      # original order kept
    np.testing.assert_array_equal(y[xs], ys)
    np.testing.assert_array_equal(data.stratified_sample(x, y, 100)[0], xs)  # seeded
    for n in (None, 1000, 5000):                         # all of them
        assert data.stratified_sample(x, y, n)[0] is x


def test_test_subset_of_a_class_sorted_folder_holds_every_class(tmp_path):
    from tinybin.train import TrainConfig, load_data
    rng = np.random.default_rng(0)
    for part, n in (("train", 4), ("test", 10)):
        for cls in ("a", "b", "c"):
            for k in range(n):
                save(tmp_path / part / cls / f"{k}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    cfg = TrainConfig(dataset="folder", data_dir=str(tmp_path), subset=None, test_subset=6, batch_size=12)
    _, (xte, yte), names = load_data(cfg)
    assert names == ["a", "b", "c"] and len(xte) == 6 and np.bincount(yte).tolist() == [2, 2, 2]


# --------------------------------------------------------------------------- augmentation


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_augment_keeps_dtype_shape_and_input():
    x = images(50)
    before = x.copy()
    out = data.augment(x, 0)
    assert out.dtype == np.uint8 and out.shape == x.shape
    np.testing.assert_array_equal(x, before)
    off = data.augment(x, 0, flip=False, crop_pad=0, cutout=None)
    np.testing.assert_array_equal(off, x)
    assert off is not x
    with pytest.raises(ValueError, match="uint8"):
        data.augment(x.astype(np.float32), 0)


def test_flip_mirrors_about_half():
    x = images(2000)
    out = data.augment(x, 1, crop_pad=0, cutout=0)
    same = np.all(out == x, axis=(1, 2, 3))
    mirrored = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same ^ mirrored)  # each image exactly one of the two
    assert 0.45 < mirrored.mean() < 0.55  # p = 0.5; 2000 draws: sd 0.011


def crop_offset(original, out, pad=4):
    """The (dy, dx) in 0..2*pad for which ``out``'s image part matches the shifted input."""
    H, W = original.shape[:2]
    found = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            # output pixel (i, j) shows input pixel (i + dy - pad, j + dx - pad) when inside
            i0, i1 = max(0, pad - dy), min(H, H + pad - dy)
            j0, j1 = max(0, pad - dx), min(W, W + pad - dx)
            window = original[i0 + dy - pad:i1 + dy - pad, j0 + dx - pad:j1 + dx - pad]
            if np.array_equal(out[i0:i1, j0:j1], window):
                found.append((dy, dx))
    return found


def test_crop_window_lies_inside_the_padded_image():
    x = images(810, seed=2)
    out = data.augment(x, 3, flip=False, cutout=0)
    offsets = []
    for a, b in zip(x, out):
        found = crop_offset(a, b)
        assert len(found) == 1  # exactly one window of the padded image, and an inside one
        offsets.append(found[0])
    dy, dx = np.array(offsets).T
    # Offsets uniform over 0..8 (9 values each): every value appears, none dominates.
    for v in (dy, dx):
        counts = np.bincount(v, minlength=9)
        assert counts.min() > 60 and counts.max() < 120  # expected 90 each
    # The padding is random 0..255, not a constant: look at the rows above the image.
    padding = np.concatenate([b[:4 - d].ravel() for b, d in zip(out, dy) if d < 4])
    assert padding.min() == 0 and padding.max() == 255 and abs(padding.mean() - 127.5) < 3


def cutout_box(original, out, negative_out):
    """Rows and columns (first, last) of the cutout patch.

    ``negative_out`` is the same augmentation (same seed) of ``255 - original``: a random fill
    can equal one of the two originals by chance, never both, so the patch is exactly where
    either output differs from its input.
    """
    changed = np.any(out != original, axis=2) | np.any(negative_out != 255 - original, axis=2)
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    return changed, (rows[0], rows[-1]), (cols[0], cols[-1])


def corner_from_box(first, last, size=18):
    """Undo the clipping: a box touching 0 and shorter than ``size`` started above the image."""
    return last + 1 - size if first == 0 else first


def test_cutout_patch_is_clipped_square_with_uniform_corner():
    n, size = 4900, 18
    x = images(n, seed=4)
    out = data.augment(x, 5, flip=False, crop_pad=0, cutout=size)
    negative = data.augment(255 - x, 5, flip=False, crop_pad=0, cutout=size)
    tops, lefts, covered = [], [], np.zeros((32, 32))
    fills = []
    for a, b, c in zip(x, out, negative):
        changed, (r0, r1), (c0, c1) = cutout_box(a, b, c)
        # exactly a rectangle, 18 long unless clipped by the border
        assert changed.sum() == (r1 - r0 + 1) * (c1 - c0 + 1)
        for first, last in ((r0, r1), (c0, c1)):
            extent = last - first + 1
            assert extent == size or first == 0 or last == 31
            assert extent <= size
        tops.append(corner_from_box(r0, r1))
        lefts.append(corner_from_box(c0, c1))
        covered += changed
        fills.append(b[changed])
    # Corner uniform over {-17, ..., 31}: 49 values, 100 expected each. Chi-square with 48
    # degrees of freedom has mean 48 and sd 9.8; 100 is a generous bound.
    for corner in (np.array(tops), np.array(lefts)):
        assert corner.min() == -17 and corner.max() == 31
        counts = np.bincount(corner + 17, minlength=49)
        chi2 = ((counts - n / 49) ** 2 / (n / 49)).sum()
        assert chi2 < 100
    # Hence every pixel is covered with probability (18/49)^2 ≈ 0.135.
    assert np.allclose(covered / n, (18 / 49) ** 2, atol=0.03)
    fills = np.concatenate(fills)
    assert fills.min() == 0 and fills.max() == 255 and abs(fills.mean() - 127.5) < 1


def test_augment_is_deterministic_for_a_seed():
    x = images(64, seed=6)
    a = data.augment(x, 7)
    np.testing.assert_array_equal(a, data.augment(x, 7))
    np.testing.assert_array_equal(a, data.augment(x, np.random.default_rng(7)))
    assert not np.array_equal(a, data.augment(x, 8))


# --------------------------------------------------------------------------- batches


def indexed_images(n):
    """Images that carry their own index in pixel (0, 0): red = i % 256, green = i // 256."""
    x = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) % 256
    x[:, 0, 0, 1] = np.arange(n) // 256
    return x, np.arange(n)


def test_batches_cover_each_example_once_with_its_label():
    x, y = indexed_images(1010)
    loader = data.Batches(x, y, seed=1)
    got = list(loader.epoch(0))
    assert len(loader) == len(got) == 9
    assert [len(b) for b, _ in got] == [125] * 8 + [10]  # the partial batch is kept
    for xb, yb in got:
        assert xb.dtype == np.float32 and yb.dtype == np.int64
        np.testing.assert_array_equal(xb[:, 0, 0, 0] + 256 * xb[:, 0, 0, 1], yb)
        np.testing.assert_array_equal(xb, x[yb].astype(np.float32))  # raw 0..255 values
    seen = np.concatenate([yb for _, yb in got])
    assert sorted(seen.tolist()) == list(range(1010))
    assert not np.array_equal(seen, np.arange(1010))  # shuffled

    dropped = data.Batches(x, y, drop_last=True)
    assert len(dropped) == 8 and [len(b) for b, _ in dropped.epoch(0)] == [125] * 8
    ordered = np.concatenate([yb for _, yb in data.batches(x, y, shuffle=False)])
    np.testing.assert_array_equal(ordered, np.arange(1010))


def test_batches_order_derives_from_seed_and_epoch():
    x, y = indexed_images(500)
    loader = data.Batches(x, y, batch_size=100, seed=3)
    order = np.concatenate([yb for _, yb in loader.epoch(2)])
    np.testing.assert_array_equal(order, np.random.default_rng([3, 2]).permutation(500))
    other = np.concatenate([yb for _, yb in loader.epoch(3)])
    assert not np.array_equal(order, other)
    # Iterating the object walks through epochs 0, 1, ...
    first = np.concatenate([yb for _, yb in loader])
    second = np.concatenate([yb for _, yb in loader])
    np.testing.assert_array_equal(first, np.random.default_rng([3, 0]).permutation(500))
    np.testing.assert_array_equal(second, np.random.default_rng([3, 1]).permutation(500))


def test_batches_resume_bit_identically_with_augmentation():
    x, y = images(600, seed=8), np.arange(600) % 10
    full = list(data.Batches(x, y, batch_size=50, augment=True, seed=9).epoch(4))
    loader = data.Batches(x, y, batch_size=50, augment=True, seed=9)  # a new object
    resumed = list(loader.epoch(4, start_batch=7))
    assert len(resumed) == len(full) - 7
    for (a, ya), (b, yb) in zip(full[7:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    # The augmentation is really applied, and can be configured step by step.
    raw = list(data.Batches(x, y, batch_size=50, seed=9).epoch(4))
    assert not np.array_equal(full[0][0], raw[0][0])
    np.testing.assert_array_equal(full[0][1], raw[0][1])
    plain = {"flip": False, "crop_pad": 0, "cutout": 0}
    same = list(data.Batches(x, y, batch_size=50, augment=plain, seed=9).epoch(4))
    np.testing.assert_array_equal(same[0][0], raw[0][0])
    # The documented contract: batch b of epoch e is augmented with default_rng([seed, e, 1, b]).
    for b in (0, 5):
        take = np.random.default_rng([9, 4]).permutation(600)[b * 50:(b + 1) * 50]
        expected = data.augment(x[take], np.random.default_rng([9, 4, 1, b]))
        np.testing.assert_array_equal(full[b][0], expected.astype(np.float32))
    other_seed = list(data.Batches(x, y, batch_size=50, augment=True, seed=10).epoch(4))
    assert not np.array_equal(other_seed[0][0], full[0][0])


def test_batches_standardisation():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    x[..., 2] //= 4  # channels with different statistics
    mean, std = data.channel_stats(x)
    xf = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, xf.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, xf.std(0), rtol=1e-5)

    allx = np.concatenate([xb for xb, _ in data.batches(x, np.zeros(300), standardize=True)])
    np.testing.assert_allclose(allx.reshape(-1, 3).mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(allx.reshape(-1, 3).std(0), 1, atol=1e-3)

    given_mean, given_std = np.array([10.0, 20.0, 30.0]), np.array([2.0, 4.0, 8.0])
    xb, yb = next(data.batches(x, np.zeros(300), mean=given_mean, std=given_std, shuffle=False))
    np.testing.assert_allclose(xb, (x[:125] - given_mean) / given_std, rtol=1e-6)
