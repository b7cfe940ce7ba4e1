"""Every script in lessons/ runs with --quick, exits 0, prints its numbers and writes its figures.

Each lesson declares, as module-level literals read here without importing it:

    NEEDS_DATA = True            # needs real CIFAR-10 (the subset shipped in datasets/, its default)
    FIGURES = ["loss.png"]       # PNG files it writes into --out
    RESULT_KEYS = ["loss"]       # keys of the JSON it prints as its last line, `RESULT {...}`,
                                 # and writes to --out/results.json (tinybin.lesson.finish)

Deselect with `-m "not lessons"`.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]*_*.py"))
TIMEOUT = 900  # seconds per lesson; --quick takes one to three minutes on 2 quiet cores

pytestmark = pytest.mark.lessons


def declarations(path):
    """The lesson's NEEDS_DATA, FIGURES and RESULT_KEYS (literal assignments at module level)."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("NEEDS_DATA", "FIGURES", "RESULT_KEYS"):
                found[name] = ast.literal_eval(node.value)
    return found


def test_lessons_exist():
    assert LESSONS, "no lessons found in lessons/"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_quick(path, tmp_path):
    decl = declarations(path)
    missing = {"NEEDS_DATA", "FIGURES", "RESULT_KEYS"} - set(decl)
    assert not missing, f"{path.name} does not declare {', '.join(sorted(missing))} at module level"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    for heading in ("Question", "Run", "Expected output", "Takeaway", "Try next"):
        assert heading in doc, f"{path.name}'s docstring has no '{heading}' section"

    out = tmp_path / "out"
    cmd = [sys.executable, str(path), "--quick", "--out", str(out)]  # no data flag: the shipped subset
    # run from elsewhere, with tinybin perhaps installed in site-packages: the data folder is named
    env = {**os.environ, "MPLBACKEND": "Agg", "TINYBIN_DATA": str(ROOT / "datasets")}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    log = f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{path.name} exited with {proc.returncode}\n{log}"

    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("RESULT "), f"{path.name}: last line is not 'RESULT {{...}}'\n{log}"
    printed = json.loads(lines[-1][len("RESULT "):])
    assert isinstance(printed, dict) and printed, f"{path.name}: RESULT is not a non-empty JSON object"
    absent = [k for k in decl["RESULT_KEYS"] if k not in printed]
    assert not absent, f"{path.name}: RESULT lacks {absent}\n{log}"
    saved = json.loads((out / "results.json").read_text())
    # compared as text: NaN (a diverged run's loss, say) is not equal to itself as a float
    assert json.dumps(saved) == json.dumps(printed), f"{path.name}: results.json differs from the RESULT line"

    # a claim the lesson marks as mechanism (not luck) must hold in every seed of the quick run;
    # the others are reported, not asserted
    for c in printed.get("claims", []):
        assert {"claim", "holds", "seeds"} <= set(c), f"{path.name}: a claim lacks its verdict: {c}"
        assert 0 <= c["holds"] <= c["seeds"], f"{path.name}: {c['claim']!r} holds in {c['holds']} of {c['seeds']}"
        if c.get("mechanism"):
            assert c["holds"] == c["seeds"], (f"{path.name}: mechanism claim {c['claim']!r} holds in only "
                                              f"{c['holds']} of {c['seeds']} seeds\n{log}")
    if "claims" in printed:
        assert len(printed.get("seed_list", [])) >= 2, f"{path.name}: a lesson with claims runs at least 2 seeds in --quick"

    for name in decl["FIGURES"]:
        png = out / name
        assert png.is_file(), f"{path.name} promised {name} but did not write it into --out\n{log}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG file"
