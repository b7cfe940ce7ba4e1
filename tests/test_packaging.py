"""`pip install .` gives a tinybin whose main job works from any folder: the shipped data is package
data (tinybin.datasets, the checkout's datasets/), found by the loaders wherever they run."""
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tinybin import data
from tinybin.data import files

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def setuptools_config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed():
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "tinybin").rglob("__init__.py")}
    assert set(setuptools_config()["packages"]) == found | {"tinybin.datasets"}


def test_the_shipped_files_are_the_ones_the_loaders_check():
    cfg = setuptools_config()
    folder = ROOT / cfg["package-dir"]["tinybin.datasets"]
    shipped = cfg["package-data"]["tinybin.datasets"]
    known = {f.path: f.sha256 for f in files.KNOWN.values() if f.url is None or (folder / f.path).exists()}
    assert set(known) <= set(shipped)
    for path, sha256 in known.items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == sha256


def test_installed_files_are_found_from_any_folder(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages" / "tinybin" / "datasets"
    installed.mkdir(parents=True)
    name = files.KNOWN["cifar10-subset"].path
    (installed / name).symlink_to(ROOT / "datasets" / name)
    monkeypatch.setattr(files, "INSTALLED_DATASETS", installed)
    monkeypatch.setattr(files, "CHECKOUT_DATASETS", tmp_path / "no-checkout")
    monkeypatch.delenv("TINYBIN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert files.known_file("cifar10-subset", download_ok=False) == installed / name
    monkeypatch.setattr(files, "INSTALLED_DATASETS", tmp_path / "not-installed")
    with pytest.raises(FileNotFoundError) as info:
        data.load_cifar10_subset()
    message = str(info.value)
    assert str(tmp_path / "datasets" / name) in message  # where it looked
    assert "--data-dir" in message and "$TINYBIN_DATA" in message and "datasets/ folder of a tinybin checkout" in message


@pytest.mark.slow
def test_the_wheel_holds_the_data(tmp_path):
    """Builds the wheel of a copy of the checkout (no network, this environment's setuptools)."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    source = tmp_path / "src"
    for part in ("tinybin", "datasets"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", ".tinybin*"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    wheel, = (tmp_path / "dist").glob("tinybin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("cifar-10-subset-python.tar.gz", "mcdonnell/CIFAR10_allparams.mat", "mcdonnell/LICENSE"):
        assert f"tinybin/datasets/{f}" in names
    assert "tinybin/train/run.py" in names and "tinybin/torch/version.py" in names
