"""lessons/claims.py: the Markdown table of the lessons' verdicts, from synthetic results.json files."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "lessons" / "claims.py"


@pytest.fixture(scope="module")
def claims():
    spec = importlib.util.spec_from_file_location("claims_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(folder: Path, data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def run(args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_rows_verdicts_and_ranges(claims, tmp_path):
    a = write(tmp_path / "runs/lessons/07_no_bn_high_lr", {"accuracy": 0.3, "claims": [
        {"claim": "T = 1 at lr 0.1 explodes", "holds": 5, "seeds": 5},
        {"claim": "lr 0.001 learns", "holds": 3, "seeds": 5, "mean": 23.456, "min": 11.0, "max": 31.25, "unit": " %"},
    ]})
    b = write(tmp_path / "runs/lessons/10_variant_table", {"claims": [
        {"claim": "a | b trains", "holds": 0, "seeds": 2, "mean": 1.5e-7, "min": 1e-7, "max": 2e-7}]})
    write(tmp_path / "runs/lessons/12_winograd", {"speed": 1.2})           # no claims: no rows
    rows = [r for p in (a, b) for r in claims.read_claims(p)]
    lines = claims.table(rows).splitlines()
    assert lines[0] == "| claim | lesson | verdict | mean | range |"
    assert lines[2] == "| T = 1 at lr 0.1 explodes | 07_no_bn_high_lr | 5/5 seeds | — | — |"
    assert lines[3] == "| lr 0.001 learns | 07_no_bn_high_lr | 3/5 seeds | 23.5 % | 11–31.2 % |"
    assert lines[4] == "| a \\| b trains | 10_variant_table | 0/2 seeds | 1.5e-07 | 1e-07–2e-07 |"  # pipe escaped
    assert len(lines) == 5

    proc = run([], cwd=tmp_path)                                            # the default glob, sorted
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == lines


def test_named_paths_keep_their_order(tmp_path):
    a = write(tmp_path / "x/13_warm_restart", {"claims": [{"claim": "late", "holds": 1, "seeds": 3}]})
    b = write(tmp_path / "y/08_scale_layer", {"claims": [{"claim": "early", "holds": 2, "seeds": 3}]})
    proc = run([a, b], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    body = proc.stdout.splitlines()[2:]
    assert body == ["| late | 13_warm_restart | 1/3 seeds | — | — |", "| early | 08_scale_layer | 2/3 seeds | — | — |"]


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ('{"claims": [', "not JSON (line 1"),
    ('[1, 2]', "not a lesson's results"),
    ('{"claims": {"claim": "x"}}', "'claims' is not a list"),
    ('{"claims": [{"claim": "x", "holds": 1}]}', "claim 1 has no seeds"),
])
def test_bad_files_are_one_line_and_status_2(tmp_path, content, message):
    path = tmp_path / "07_x" / "results.json"
    if content is not None:
        write(path.parent, content)
    proc = run([path], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_nothing_to_show_is_status_2(tmp_path):
    proc = run([], cwd=tmp_path)                                            # no runs/lessons at all
    assert proc.returncode == 2 and "run the lessons first" in proc.stderr
    path = write(tmp_path / "11_authors_model", {"accuracy": 0.963})        # results, but no claims
    proc = run([path], cwd=tmp_path)
    assert proc.returncode == 2 and "holds claims" in proc.stderr
