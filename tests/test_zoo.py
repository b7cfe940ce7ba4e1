"""The authors' released 1-bit WRN-20-10 models: import, accuracy, and clear errors on bad files.

The CIFAR-10 model and the test images ship in datasets/; the CIFAR-100 model and its 20 test
images are read from ../shared/data (skipped where absent). The bad-file tests build their own
.mat files with scipy.io.savemat, which also checks tinybin's own .mat reader against scipy's.
"""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tinybin.train import evaluate
from tinybin.zoo import ModelFileError, load_mcdonnell, read_mat

scipy_io = pytest.importorskip("scipy.io", reason="reading .mat files needs scipy (the 'test' extra installs it)")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CIFAR10_MAT = ROOT / "datasets" / "mcdonnell" / "CIFAR10_allparams.mat"
CIFAR100_MAT = SHARED / "mcdonnell" / "CIFAR100_allparams.mat"


def need(path):
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared data, see shared/data/README.md)")
    return path


@pytest.fixture(scope="module")
def cifar10_model():
    return load_mcdonnell("cifar10")  # the shipped file, found by name and checked by SHA-256


def test_released_model_has_two_values_per_layer(cifar10_model):
    """Every conv convolves with exactly ±c, c = sqrt(2/(KH·KW·C_in)), and c·(2b − 1) is the file's bits."""
    bits = read_mat(CIFAR10_MAT)
    keys = ["conv2d"] + [f"conv2d_{i}" for i in range(1, 20)]
    convs = cifar10_model.convs()
    assert len(convs) == len(keys) == 20
    for key, (name, conv) in zip(keys, convs):
        kh, kw, c_in, _ = conv.weight.shape
        c = np.float32(math.sqrt(2.0 / (kh * kw * c_in)))
        w = conv.effective_weight().data
        assert set(np.unique(w)) == {-c, c}, name
        np.testing.assert_array_equal(w, c * (2.0 * bits[key][0].astype(np.float32) - 1.0), err_msg=name)
    assert sum(conv.weight.size for _, conv in convs) == 26_737_120
    assert not cifar10_model.training


def test_released_cifar10_model_accuracy(cifar10_model):
    """≥ 95 % on the first 200 of the exact test images (96.3 % on all 1000: lesson 11)."""
    from tinybin.data import load_cifar10_subset

    _, (x, y) = load_cifar10_subset()
    _, acc = evaluate(cifar10_model, x[:200], y[:200], batch_size=100)
    assert acc >= 0.95, f"released CIFAR-10 model: {100 * acc:.1f} % on 200 test images"


def test_released_cifar100_model_on_20_images():
    model = load_mcdonnell(need(CIFAR100_MAT))
    assert model.config["num_classes"] == 100
    with np.load(need(SHARED / "cifar100-test20.npz")) as f:
        x, y = f["x"], f["y"]
    _, acc = evaluate(model, x, y, batch_size=20)
    assert round(acc * 20) >= 17


# --------------------------------------------------------------------------------- bad files

WRN_20_10_CONVS = ([(3, 3, 3, 160)] + [(3, 3, 160, 160)] * 6 + [(3, 3, 160, 320)] + [(3, 3, 320, 320)] * 5
                   + [(3, 3, 320, 640)] + [(3, 3, 640, 640)] * 5 + [(1, 1, 640, 10)])


@pytest.fixture(scope="module")
def fake_arrays():
    """A file's worth of random arrays with the released models' keys and shapes (CIFAR-100 style
    numbering, starting late, to check the ordering)."""
    rng = np.random.default_rng(0)
    arrays = {}
    # input BN, then each unit's BN sees the block input or conv_a's output, then the final BN
    bn_channels = [3] + [160] * 7 + [320] * 6 + [640] * 6 + [10]
    for i, shape in enumerate(WRN_20_10_CONVS):
        arrays[f"conv2d_{40 + i}"] = rng.integers(0, 2, (1, *shape), dtype=np.uint8)
    for i, c in enumerate(bn_channels):
        rows = 4 if i == 0 else 2
        stats = rng.standard_normal((rows, c)).astype(np.float32)
        stats[-1] = rng.uniform(0.5, 2.0, c)
        arrays[f"batch_normalization_v1_{105 + i}"] = stats
    assert len(bn_channels) == 21
    return arrays


def save(tmp_path, arrays, name="model.mat"):
    path = tmp_path / name
    scipy_io.savemat(path, arrays)
    return path


def test_fake_file_loads_in_order(tmp_path, fake_arrays):
    model = load_mcdonnell(save(tmp_path, fake_arrays))
    (_, stem), (_, head) = model.convs()[0], model.convs()[-1]
    c = np.float32(math.sqrt(2 / 27))
    np.testing.assert_array_equal(stem.effective_weight().data, c * (2.0 * fake_arrays["conv2d_40"][0] - 1))
    assert head.weight.shape == (1, 1, 640, 10)
    stats = fake_arrays["batch_normalization_v1_105"]
    np.testing.assert_array_equal(model.input_bn.weight.data, stats[0])
    np.testing.assert_array_equal(model.input_bn.bias.data, stats[1])
    np.testing.assert_array_equal(model.input_bn.running_var, stats[3])
    np.testing.assert_array_equal(model.head.final.running_mean, fake_arrays["batch_normalization_v1_125"][0])


def test_missing_layer_is_named(tmp_path, fake_arrays):
    arrays = dict(fake_arrays)
    del arrays["conv2d_50"]
    with pytest.raises(ModelFileError, match="19 conv layers.*has 20"):
        load_mcdonnell(save(tmp_path, arrays))


def test_wrong_shape_is_named(tmp_path, fake_arrays):
    arrays = dict(fake_arrays)
    arrays["conv2d_45"] = np.zeros((1, 3, 3, 160, 80), np.uint8)
    with pytest.raises(ModelFileError, match=r"conv2d_45 \(stage1.block2.conv_a\): bits of shape"):
        load_mcdonnell(save(tmp_path, arrays))
    arrays = dict(fake_arrays)
    arrays["batch_normalization_v1_110"] = np.ones((2, 7), np.float32)
    with pytest.raises(ModelFileError, match=r"batch_normalization_v1_110 .*shape \(2, 7\), expected \(2, 160\)"):
        load_mcdonnell(save(tmp_path, arrays))


def test_non_binary_bits_are_refused(tmp_path, fake_arrays):
    arrays = dict(fake_arrays)
    bad = arrays["conv2d_41"].copy()
    bad[0, 0, 0, 0, :3] = (2, 255, 7)
    arrays["conv2d_41"] = bad
    with pytest.raises(ModelFileError, match="conv2d_41: weights are not one bit each"):
        load_mcdonnell(save(tmp_path, arrays))


def test_truncated_and_foreign_files(tmp_path):
    path = save(tmp_path, {"conv2d": np.ones((1, 3, 3, 3, 160), np.uint8)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable MATLAB v5 file"):
        load_mcdonnell(path)
    with pytest.raises(ModelFileError, match="no conv2d"):
        load_mcdonnell(save(tmp_path, {"weights": np.ones(3)}, "foreign.mat"))
    with pytest.raises(FileNotFoundError):
        load_mcdonnell(tmp_path / "absent.mat")


@pytest.mark.parametrize("compress", [False, True])
def test_mat_reader_equals_scipy_and_needs_no_scipy(monkeypatch, tmp_path, compress):
    rng = np.random.default_rng(1)
    arrays = {"bits": rng.integers(0, 2, (1, 3, 3, 4, 5), dtype=np.uint8),
              "f32": rng.standard_normal((2, 7)).astype(np.float32), "f64": rng.standard_normal((3, 1, 2)),
              "i32": rng.integers(-9, 9, (4,), dtype=np.int32)}
    path = tmp_path / "a.mat"
    scipy_io.savemat(path, arrays, do_compression=compress)
    expected = {k: v for k, v in scipy_io.loadmat(path).items() if not k.startswith("__")}
    monkeypatch.setitem(sys.modules, "scipy", None)  # tinybin's reader is NumPy only
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    got = read_mat(path)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_mat_reader_refuses_what_is_not_a_numeric_array(tmp_path):
    path = tmp_path / "cell.mat"
    scipy_io.savemat(path, {"c": np.array([[1.0], "text"], dtype=object)})
    with pytest.raises(ModelFileError, match="not a real numeric array"):
        read_mat(path)


def test_released_cifar100_model_offline_says_where_to_put_it(tmp_path, monkeypatch):
    """Not shipped: downloaded on first use; offline, one message naming the URL and the place."""
    import urllib.error
    import urllib.request

    from tinybin.data import DownloadError

    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr("tinybin.data.files.CHECKOUT_DATASETS", tmp_path / "none")
    with pytest.raises(DownloadError) as info:
        load_mcdonnell("cifar100", data_dir=tmp_path)
    message = str(info.value)
    assert "McDonnell-Lab/1-bit-per-weight" in message and "CIFAR100_allparams.mat" in message
    assert str(tmp_path.resolve() / "mcdonnell" / "CIFAR100_allparams.mat") in message
    assert list(tmp_path.rglob("*.part")) == []


def test_cli_evaluate_mcdonnell_npz(capsys):
    from tinybin.cli import main

    code = main(["evaluate", "--mcdonnell", str(need(CIFAR100_MAT)), "--npz", str(need(SHARED / "cifar100-test20.npz"))])
    out = capsys.readouterr().out
    assert code == 0 and "(17/20)" in out and "images/s" in out
