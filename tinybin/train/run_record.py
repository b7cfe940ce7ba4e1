"""Which run a run folder holds: run.json, written when the run starts, records its architecture
and config, so a checkpoint copied in from another run (another width, variant, dataset...) is
told apart from the folder's own before --resume mixes the two runs' logs.

    run.json   {"config": TrainConfig as a dict, "arch": the model's config, "num_classes": K}

Folders written before run.json existed have no record: their checkpoint is taken as theirs.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..io import write_text
from .config import CHANGEABLE_ON_RESUME
from .logs import read_jsonl

RECORD = "run.json"


def write_run_record(out, meta: dict):
    """run.json from a checkpoint's meta (its config, arch and num_classes), written atomically."""
    record = {k: meta[k] for k in ("config", "arch", "num_classes")}
    write_text(Path(out) / RECORD, json.dumps(record, indent=1) + "\n")


def run_differences(out, meta: dict) -> list:
    """What in a checkpoint's meta differs from the run `out`/run.json records ("width 4 (the
    run's: 1)", ...); empty when they agree or the folder has no record."""
    path = Path(out) / RECORD
    if not path.is_file():
        return []
    try:
        record = json.loads(path.read_text())
        ran = {**record["config"], **record["arch"], "num_classes": record["num_classes"]}
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is damaged (not the JSON record of a run); delete it to take the checkpoint "
                         f"as this folder's run") from None
    has = {**meta["config"], **meta["arch"], "num_classes": meta["num_classes"]}
    return [f"{k} {_show(has.get(k))} (the run's: {_show(v)})" for k, v in ran.items()
            if k not in CHANGEABLE_ON_RESUME and k in has and has[k] != v]


def check_resume(out, meta: dict):
    """Before a resume, changing nothing: the checkpoint is the folder's run (ValueError saying what
    differs), and its logs can be read (ValueError naming file and line; a last line cut off by a
    crash is fine: the resume drops it, with a warning)."""
    differences = run_differences(out, meta)
    if differences:
        raise ValueError(f"{Path(out) / 'checkpoint.npz'} is not the run this folder holds ({Path(out) / RECORD}): "
                         f"{'; '.join(differences)}; it was written in {meta['config'].get('out')}. --resume would mix "
                         f"the two runs: put the checkpoint back, or start a new run with --overwrite")
    for name in ("metrics.jsonl", "steps.jsonl"):
        if (Path(out) / name).exists():
            read_jsonl(Path(out) / name)


def _show(value):
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
