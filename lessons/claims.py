"""The claims table: every verdict the lessons computed, read from their results.json, as Markdown.

    python lessons/claims.py                          # runs/lessons/*/results.json
    python lessons/claims.py runs/lessons/07_no_bn_high_lr/results.json other/results.json

Each lesson that compares something saves its claims (`lesson.claim`) under "claims" in its
results.json: {"claim": text, "holds": k, "seeds": n} and, when the verdict rests on a number,
"mean", "min", "max" and "unit". This prints one row per claim: the claim, the lesson (the name
of the folder that holds results.json), the verdict "k/n seeds", the mean and the range. The
verdicts are copied, never recomputed or retyped, so a table built from the lessons' full runs
says exactly what those runs measured.

This is not a lesson (the lessons are `NN_name.py`); it only reads files. A path that is missing,
a file that is not JSON, or a claim without its keys is one line naming the file, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_GLOB = "runs/lessons/*/results.json"
HEADER = ("claim", "lesson", "verdict", "mean", "range")


class ClaimsError(Exception):
    """A results file that cannot be read as a lesson's claims; the message names the file."""


def _number(x: float, unit: str = "") -> str:
    return f"{x:.3g}{unit}"


def _cell(text: str) -> str:
    """Markdown table cell: a pipe inside the text would end the cell, a newline the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def read_claims(path: Path) -> list[dict]:
    """The claims of one results.json, each with its lesson name added; [] if it has none."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ClaimsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClaimsError(f"{path}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise ClaimsError(f"{path}: not JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ClaimsError(f"{path}: not a lesson's results (a JSON object)")
    claims = data.get("claims", [])
    if not isinstance(claims, list):
        raise ClaimsError(f"{path}: 'claims' is not a list")
    lesson = Path(path).parent.name or str(path)
    rows = []
    for i, rec in enumerate(claims):
        missing = [k for k in ("claim", "holds", "seeds") if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise ClaimsError(f"{path}: claim {i + 1} has no {', '.join(missing)}")
        rows.append({**rec, "lesson": lesson})
    return rows


def table(rows: list[dict]) -> str:
    """A Markdown table of claim records (as `read_claims` returns them)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        unit = r.get("unit", "")
        mean = _number(r["mean"], unit) if "mean" in r else "—"
        span = f"{_number(r['min'])}–{_number(r['max'], unit)}" if "min" in r and "max" in r else "—"
        verdict = f"{r['holds']}/{r['seeds']} seeds"
        lines.append("| " + " | ".join(_cell(c) for c in (r["claim"], r["lesson"], verdict, mean, span)) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="claims.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, help=f"results.json files (default: {DEFAULT_GLOB})")
    args = p.parse_args(argv)
    paths = args.paths or sorted(Path().glob(DEFAULT_GLOB))
    if not paths:
        print(f"error: no {DEFAULT_GLOB} under {Path.cwd()}: run the lessons first "
              f"(python lessons/07_no_bn_high_lr.py) or name the files", file=sys.stderr)
        return 2
    try:
        rows = [r for path in paths for r in read_claims(path)]
    except ClaimsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: none of the {len(paths)} results file(s) holds claims", file=sys.stderr)
        return 2
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
