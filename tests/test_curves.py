"""curves.png, drawn by both trainers from a run's logs: what it is titled, its epoch axis, and
where a run was resumed (which the log records)."""
import json

import pytest
from test_train import quiet, tiny_config, tiny_data

from tinybin.train import train


def drawn(monkeypatch, draw):
    """The figure `draw()` saves (kept instead of closed)."""
    from tinybin.figures import pyplot

    plt, figures = pyplot(), []
    monkeypatch.setattr(plt, "close", figures.append)
    draw()
    return figures[0]


def test_curves_of_a_one_epoch_run_say_what_was_trained_with_whole_epochs(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, "fold-name", epochs=1, variant="srelu", temperature=40)
    fig = drawn(monkeypatch, lambda: train(cfg, data=tiny_data(), log=quiet))
    assert fig._suptitle.get_text() == "WRN-8-1 srelu, T=40, 1-bit, seed 1"   # what is compared, not the folder
    accuracy = fig.axes[1]
    left, right = accuracy.get_xlim()
    assert left == 0 and 1 < right < 1.5                 # not 0.96–1.04 around the one point
    ticks = [t for t in accuracy.get_xticks() if left <= t <= right]
    assert ticks == [0, 1]
    assert (tmp_path / "fold-name" / "curves.png").stat().st_size > 1000


def test_curves_mark_where_a_run_was_resumed(tmp_path, monkeypatch):
    data = tiny_data()
    train(tiny_config(tmp_path, epochs=3, stop_after=1), data=data, log=quiet)
    train(tiny_config(tmp_path, epochs=3, stop_after=1), data=data, resume=True, log=quiet)
    fig = drawn(monkeypatch, lambda: train(tiny_config(tmp_path, epochs=3), data=data, resume=True, log=quiet))
    loss, accuracy = fig.axes
    marks = lambda ax: sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":")
    assert marks(loss) == [2, 4] and marks(accuracy) == [1, 2]   # 2 steps per epoch; resumed at epochs 1 and 2
    assert "resumed" in [t.get_text() for t in accuracy.get_legend().get_texts()]


def test_a_second_resume_at_the_same_epoch_is_recorded_once(tmp_path):
    data = tiny_data()
    train(tiny_config(tmp_path, epochs=3, stop_after=1), data=data, log=quiet)
    for _ in range(2):   # e.g. stopped during epoch 2, twice
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(tmp_path, epochs=3), data=data, resume=True, log=quiet, hooks=[Interrupt()])
    kinds = [json.loads(l)["kind"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert kinds == ["epoch", "resumed"]


class Interrupt:
    """A fit hook that stops the run at its first step, as Ctrl-C would."""

    def end_step(self, record):
        raise KeyboardInterrupt
