"""tinybin.torch names the torch it found, and the one it needs, when the installed one is too old."""
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="tinybin.torch needs PyTorch: pip install '.[torch]'")

pytestmark = pytest.mark.torch


def test_an_older_torch_is_named_in_one_line():
    from tinybin.torch import check_version

    for old in ("2.0.1+cpu", "1.13.1", "2.0.0a0+git1234"):
        with pytest.raises(ImportError) as info:
            check_version(old)
        message = str(info.value)
        assert "\n" not in message and f"found torch {old}" in message and "PyTorch 2.1 or newer" in message
    for fine in ("2.1.0", "2.13.0+cpu", "3.0", str(torch.__version__)):
        check_version(fine)


def test_importing_tinybin_torch_checks_the_installed_version(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.0.1")
    for name in [m for m in sys.modules if m == "tinybin.torch" or m.startswith("tinybin.torch.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"found torch 2\.0\.1"):
        importlib.import_module("tinybin.torch")


def test_the_minimum_is_the_extra_pyproject_declares():
    from tinybin.torch import MINIMUM

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'torch = \["torch>=(\d+)\.(\d+)"\]', text).groups() == tuple(map(str, MINIMUM))


def test_the_trainer_command_says_it_in_one_line(tmp_path):
    """`python -m tinybin.torch.train` under an older torch (its version string replaced at start-up)."""
    (tmp_path / "sitecustomize.py").write_text('import torch\ntorch.__version__ = "2.0.1"\n')
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    proc = subprocess.run([sys.executable, "-m", "tinybin.torch.train", "--help"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["error: tinybin.torch needs PyTorch 2.1 or newer, and found torch "
                                                "2.0.1: pip install -U 'torch>=2.1'"]
