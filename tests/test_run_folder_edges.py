"""Run folders a user can get wrong: an --out that cannot be written, a log cut off by a crash, a
checkpoint copied in from another run. Each ends in one line (a warning for the torn log, which is
normal after a crash) and nothing the user made is changed. Tiny runs: WRN-8 on 250 + 50 images."""
import json
import shutil
import uuid
import warnings

import numpy as np
import pytest

from tinybin.train import TrainConfig, read_checkpoint, train

from conftest import cli, one_line, quiet, snapshot


def config(archive, out, **kw):
    return TrainConfig(**dict(dict(dataset="cifar10", archive=str(archive), subset=None, depth=8, width=1, epochs=2,
                                   stop_after=1, epoch_eval_size=50, out=str(out)), **kw))


def run(archive, out, resume=False, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny archive is not the published one
        return train(config(archive, out, **kw), resume=resume, log=quiet)


@pytest.fixture(scope="module")
def stopped(archive, tmp_path_factory):
    """Runs of 2 epochs stopped after the first: width 1 and width 2."""
    root = tmp_path_factory.mktemp("runs")
    run(archive, root / "w1")
    run(archive, root / "w2", width=2)
    return root


def copy(stopped, name, tmp_path):
    return shutil.copytree(stopped / name, tmp_path / name)


# ----- --out ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["a file", "under a file", "unwritable"])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(kind, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    out = {"a file": tmp_path / "notes.txt", "under a file": tmp_path / "notes.txt" / "run",
           # root ignores permissions; /proc refuses new entries to everyone
           "unwritable": f"/proc/tinybin-{uuid.uuid4().hex}/run"}[kind]
    missing = tmp_path / "no-such-archive.tar.gz"  # reading the data would fail: --out is checked first
    line = one_line(cli("train", "--dataset", "cifar10", "--archive", missing, "--depth", 8, "--out", out))
    assert line.startswith(f"error: --out {out} ")
    assert {"a file": "is a file, not a folder", "under a file": "notes.txt is a file, not a folder",
            "unwritable": "cannot be written"}[kind] in line
    assert (tmp_path / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match=f"--out {out}"):
        train(config(missing, out), log=quiet)


# ----- logs cut off by a crash ----------------------------------------------------------------------
def test_a_torn_last_line_is_dropped_with_a_warning_and_the_run_resumes(stopped, archive, tmp_path):
    clean, torn = copy(stopped, "w1", tmp_path / "clean"), copy(stopped, "w1", tmp_path / "torn")
    for name, cut in (("metrics.jsonl", '{"kind": "epoch", "epoch": 2, "step'), ("steps.jsonl", '{"step": 3, "lo')):
        with open(torn / name, "a") as f:
            f.write(cut)
    before = snapshot(torn)
    one_line(cli("train", "--resume", "--out", torn, "--depth", 14))  # a refused resume changes nothing
    assert snapshot(torn) == before
    proc = cli("train", "--resume", "--out", torn, "--archive", archive)
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning: ") and "cut off" in line]
    assert [w.split(":")[1].strip() for w in warned] == [str(torn / "metrics.jsonl"), str(torn / "steps.jsonl")]
    run(archive, clean, resume=True, stop_after=None)  # the same run, resumed without the crash
    for name in ("metrics.jsonl", "steps.jsonl"):
        records = [[{k: v for k, v in json.loads(line).items() if k not in ("seconds", "images_per_s", "minutes", "out")}
                    for line in (folder / name).read_text().splitlines()] for folder in (clean, torn)]
        assert records[0] == records[1]  # nothing lost, nothing torn left behind
    np.testing.assert_array_equal(read_checkpoint(clean)[0]["head.conv.weight"], read_checkpoint(torn)[0]["head.conv.weight"])


def test_other_damage_in_a_log_names_the_file_and_line(stopped, tmp_path):
    out = copy(stopped, "w1", tmp_path)
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    (out / "metrics.jsonl").write_text("".join(lines[:1] + ["{not json\n"] + lines[1:]))
    before = snapshot(out)
    line = one_line(cli("train", "--resume", "--out", out))
    assert f"{out / 'metrics.jsonl'} line 2 is not a JSON record" in line
    assert snapshot(out) == before


# ----- a checkpoint from another run ------------------------------------------------------------------
def test_a_checkpoint_from_another_run_is_refused_and_evaluate_says_what_it_evaluates(stopped, archive, tmp_path):
    out = copy(stopped, "w1", tmp_path)
    shutil.copy(stopped / "w2" / "checkpoint.npz", out / "checkpoint.npz")
    before = snapshot(out)
    line = one_line(cli("train", "--resume", "--out", out))
    assert "is not the run this folder holds" in line and "width 2 (the run's: 1)" in line
    assert f"written in {stopped / 'w2'}" in line and "--overwrite" in line
    assert "depth" not in line and "seed" not in line  # only what differs
    with pytest.raises(ValueError, match=r"width 2 \(the run's: 1\)"):
        train(config(archive, out), resume=True, log=quiet)
    assert snapshot(out) == before
    proc = cli("evaluate", out, "--test-subset", 20)
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "checkpoint.npz" in line]  # (the other: the tiny archive)
    assert len(warned) == 1 and warned[0].startswith("warning: ") and "width 2 (the run's: 1)" in warned[0]
    assert "WRN-8-2" in proc.stdout  # what it evaluates: the checkpoint
    assert snapshot(out) == before


def test_a_moved_run_folder_still_resumes(stopped, archive, tmp_path):
    out = copy(stopped, "w1", tmp_path / "moved")  # run.json and the checkpoint still agree
    result = run(archive, out, resume=True, stop_after=None)
    assert result["epochs_done"] == 2


@pytest.mark.parametrize("text,result", [
    ('{"a": 1}\n{"b": 2}\n', ([{"a": 1}, {"b": 2}], False)),
    ('{"a": 1}\n{"b": 2}', ([{"a": 1}, {"b": 2}], False)),   # complete, only its newline missing
    ('{"a": 1}\n{"b": ', ([{"a": 1}], True)),                 # cut off mid-write
    ('{"a": 1}\n{"b": \n{"c": 3}\n', "line 2 is not a JSON record"),
    ('{"a": 1}\n{"b": 2\n', "line 2 is not a JSON record"),   # a whole line, but not a record
    ('{"a": 1}\n7\n', r"line 2 is not a JSON record \(not an object\)"),
])
def test_reading_a_log(text, result, tmp_path):
    from tinybin.train.logs import read_jsonl

    (tmp_path / "log.jsonl").write_text(text)
    if isinstance(result, str):
        with pytest.raises(ValueError, match=result):
            read_jsonl(tmp_path / "log.jsonl")
    else:
        assert read_jsonl(tmp_path / "log.jsonl") == result
