"""What a run shows and keeps: the live progress bar and JSON-lines logs (curves.png: curves.py)."""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from ..io import write_text


class Progress:
    """A live one-line bar on a terminal (step, loss, acc, images/s, ETA); silent otherwise."""

    def __init__(self, total_steps, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = total_steps
        self.last = 0.0

    def update(self, step, epoch, loss, acc, images_per_s, eta_s, force=False):
        """eta_s None: not known yet (one step, which may have compiled the kernels, says nothing)."""
        now = time.perf_counter()
        if not self.live or (now - self.last < 0.2 and not force):
            return
        self.last = now
        rate = "" if images_per_s is None else f"{images_per_s:6.0f} img/s  "
        self.stream.write(f"\r  epoch {epoch + 1} step {step + 1}/{self.total}  loss {loss:.4f}  acc {100 * acc:5.1f}%  "
                          f"{rate}ETA {'…' if eta_s is None else _hms(eta_s)}  \033[K")
        self.stream.flush()

    def note(self, text):
        """A passing status on the live line (replaced by the next update)."""
        if self.live:
            self.stream.write(f"\r  {text}\033[K")
            self.stream.flush()

    def clear(self):
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _hms(seconds):
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def append_jsonl(path, *records):
    """Append one JSON line per record."""
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def read_jsonl(path) -> tuple:
    """(records, torn) of a JSON-lines log; torn: its last line was cut off mid-write (a crash),
    and is left out. ValueError naming the file and line for any other damage."""
    text = Path(path).read_text(errors="replace")
    lines = text.split("\n")  # a complete log ends with "\n": its last piece is empty
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            reason = None if isinstance(record, dict) else "not an object"
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: the write never finished
                return records, True
            reason = e.msg
        if reason is not None:
            raise ValueError(f"{path} line {number} is not a JSON record ({reason}): the log is damaged; "
                             f"repair or delete that line, or start again with --overwrite")
        records.append(record)
    return records, False


def truncate_jsonl(path, keep):
    """Keep only the records for which keep(record) is true (used on resume). A last line cut off
    by a crash is dropped with a warning naming the file: an append-only log ends like this after
    a crash, and the checkpoint it belongs to was never written."""
    path = Path(path)
    if not path.exists():
        return
    records, torn = read_jsonl(path)
    if torn:
        warnings.warn(f"{path}: its last line was cut off (a crash while it was written); dropped it")
    write_text(path, "".join(json.dumps(r) + "\n" for r in records if keep(r)))
