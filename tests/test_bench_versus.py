"""bench train --vs-torch's table, targets and load warning, from fake measurements (no PyTorch, no timing)."""
import itertools

import pytest

from tinybin.bench import versus
from tinybin.bench.train import CONFIG_SETS, parse_configs

PEERS = ("bridge-nchw", "bridge-cl", "plain-cl")


def fake_engine(speeds, peaks=None):
    """run_one returning images/s speeds[(width, variant)][kind] (kind "" is tinybin); records the calls."""
    calls = []

    def run_one(width, variant, kind):
        calls.append((width, variant, kind))
        ips = speeds[(width, variant)][kind]
        ips = ips[sum(c == (width, variant, kind) for c in calls) - 1] if isinstance(ips, list) else ips
        return {"images_per_s": ips, "peak_mb": (peaks or {}).get(kind, 100.0), "threads": 2}
    return run_one, calls


def fixed_ticks(steal_share=0.0, per_process=1000):
    """cpu_ticks() of a machine whose host takes steal_share of the CPU time: (stolen, total), read in pairs."""
    state = {"stolen": 0, "total": 0}

    def ticks():
        state["stolen"] += int(steal_share * per_process / 2)
        state["total"] += per_process // 2
        return state["stolen"], state["total"]
    return ticks


def fixed_loads(values):
    it = itertools.cycle(values)
    return lambda: next(it)


def test_the_fastest_peer_kind_is_the_reference_and_targets_follow_it(capsys):
    speeds = {(1, "baseline2"): {"": 110.0, "bridge-nchw": 80.0, "bridge-cl": 90.0, "plain-cl": 100.0},
              (1, "srelu"): {"": 104.0, "bridge-nchw": 70.0, "bridge-cl": 100.0, "plain-cl": 95.0},
              (10, "srelu"): {"": 10.0, "bridge-nchw": 9.0, "bridge-cl": 10.0, "plain-cl": 9.5}}
    run_one, calls = fake_engine(speeds, peaks={"": 90.0, "plain-cl": 95.0, "bridge-cl": 80.0, "bridge-nchw": 50.0})
    table = versus.compare_with_torch([(1, "baseline2"), (1, "srelu"), (10, "srelu")], run_one, rounds=2,
                                      peers=PEERS, loadavg=fixed_loads([0.2, 0.4]), cpus=2, ticks=fixed_ticks())
    out = capsys.readouterr().out
    b2, sr, wide = table["WRN-20-1 baseline2"], table["WRN-20-1 srelu"], table["WRN-20-10 srelu"]
    assert b2["best"] == "plain-cl" and b2["ratio"] == pytest.approx(1.10)
    assert sr["best"] == "bridge-cl" and sr["ratio"] == pytest.approx(1.04)
    assert wide["ratio"] == pytest.approx(1.0)
    assert b2["peak_mb_best"] == 95.0 and sr["peak_mb_best"] == 80.0      # the fastest kind's memory
    assert len(calls) == 3 * 2 * 4 and b2["load"] == (0.2, 0.4) and len(b2["loads"]) == 2 * 2 * 4
    lines = out.splitlines()
    assert "target WRN-20-1 baseline2 >= 1.05x the best PyTorch (plain-cl): 1.10x OK" in lines
    assert "target WRN-20-1 srelu >= 1.05x the best PyTorch (bridge-cl): 1.04x MISSED" in lines
    assert "target WRN-20-10 srelu >= 1.00x the best PyTorch (bridge-cl): 1.00x OK" in lines
    assert any(line.startswith("target WRN-20-1 baseline2 peak memory") and line.endswith("OK") for line in lines)
    assert any(line.startswith("target WRN-20-1 srelu peak memory") and line.endswith("MISSED") for line in lines)
    assert any(line.startswith("target WRN-20-1 srelu at least as fast as baseline2") and line.endswith("MISSED")
               for line in lines)
    assert not any("WRN-20-10 srelu at least as fast" in line for line in lines)   # no WRN-20-10 baseline2 ran
    assert "0.2–0.4" in next(line for line in lines if line.startswith("WRN-20-1 srelu"))
    assert "busy" not in out


def test_rounds_alternate_and_the_median_is_taken():
    speeds = {(4, "srelu"): {"": [10.0, 30.0, 20.0], "bridge-nchw": 5.0, "bridge-cl": 5.0, "plain-cl": [1.0, 9.0, 2.0]}}
    run_one, calls = fake_engine(speeds)
    row = versus.compare_with_torch([(4, "srelu")], run_one, rounds=3, peers=PEERS, loadavg=fixed_loads([0.1]),
                                    ticks=fixed_ticks())["WRN-20-4 srelu"]
    assert row["tinybin"] == 20.0 and row["speed"]["plain-cl"] == 2.0 and row["best"] in ("bridge-nchw", "bridge-cl")
    firsts = [calls[i][2] for i in (0, 4, 8)]
    assert firsts == ["", "bridge-nchw", "bridge-cl"]                      # each round starts with the next engine


def test_a_busy_machine_is_named_with_how_far_the_load_moved(capsys):
    speeds = {(1, "srelu"): {"": 1.0, "bridge-nchw": 1.0, "bridge-cl": 1.0, "plain-cl": 1.0}}
    run_one, _ = fake_engine(speeds)
    loads = iter([0.5, 0.9, 1.0, 3.5, 3.0, 3.2, 2.0, 2.4])
    versus.compare_with_torch([(1, "srelu")], run_one, rounds=1, peers=PEERS, loadavg=lambda: next(loads), cpus=2,
                             ticks=fixed_ticks())
    warning = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("warning"))
    assert "busy" in warning and "0.5–3.5" in warning and "favours tinybin" in warning
    assert "up to 2.5 during one process" in warning and "from 0.5 to 2.4" in warning


def test_a_quiet_machine_has_no_warning_but_the_threshold_scales_with_cores():
    row = {"loads": [1.5, 1.8], "width": 1}
    assert versus.busy_warning({"r": row}, cpus=4) is None                 # 1.8 <= 4 / 2
    assert versus.busy_warning({"r": row}, cpus=2) is not None             # 1.8 > 2 / 2


def test_speed_targets_by_width():
    assert versus.speed_target(1) == versus.speed_target(4) == 1.05 and versus.speed_target(10) == 1.0


def test_config_set_all_has_the_six_rows_and_the_default_four():
    assert parse_configs("all") == [(1, "baseline2"), (1, "srelu"), (4, "baseline2"), (4, "srelu"),
                                    (10, "baseline2"), (10, "srelu")]
    assert parse_configs(CONFIG_SETS["default"]) == parse_configs("all")[:4]
    with pytest.raises(ValueError, match="'alll'"):
        parse_configs("alll")


def test_time_stolen_by_the_host_is_shown_and_warned_about(capsys):
    speeds = {(1, "srelu"): {"": 1.0, "bridge-nchw": 1.0, "bridge-cl": 1.0, "plain-cl": 1.0}}
    run_one, _ = fake_engine(speeds)
    table = versus.compare_with_torch([(1, "srelu")], run_one, rounds=1, peers=PEERS, loadavg=fixed_loads([0.1]),
                                      cpus=2, ticks=fixed_ticks(0.2))
    out = capsys.readouterr().out
    assert table["WRN-20-1 srelu"]["steal"] == pytest.approx(0.2)
    assert next(line for line in out.splitlines() if line.startswith("WRN-20-1 srelu")).endswith("20 %")
    warning = next(line for line in out.splitlines() if line.startswith("warning"))
    assert "20 %" in warning and "steal" in warning and "busy" not in out   # a quiet load, a noisy host
    quiet = versus.compare_with_torch([(1, "srelu")], run_one, rounds=1, peers=PEERS, loadavg=fixed_loads([0.1]),
                                      cpus=2, ticks=fixed_ticks(0.01))
    assert quiet["WRN-20-1 srelu"]["steal"] == pytest.approx(0.01) and "warning" not in capsys.readouterr().out


def test_steal_is_unknown_without_proc_stat_or_for_a_blink():
    assert versus.timed(lambda: 7, lambda: 0.0, lambda: None) == (7, 0.0, 0.0, None)
    assert versus.timed(lambda: 7, lambda: 0.0, fixed_ticks(0.5, per_process=10))[3] is None   # 10 ticks
    stolen, total = versus.cpu_ticks() or (0, 1)                          # the real one, where it exists
    assert 0 <= stolen <= total


def ticks_stealing(shares, per_process=1000):
    """cpu_ticks() whose host takes shares[k] of the CPU time during the k-th measured process."""
    state, it = {"stolen": 0, "total": 0, "reads": 0}, iter(shares)

    def ticks():
        if state["reads"] % 2 == 0:
            state["share"] = next(it)
        state["reads"] += 1
        state["stolen"] += int(state["share"] * per_process / 2)
        state["total"] += per_process // 2
        return state["stolen"], state["total"]
    return ticks


def test_a_process_the_host_stole_from_is_measured_again_and_the_clean_try_counts(capsys):
    speeds = {(1, "srelu"): {"": [50.0, 100.0], "bridge-nchw": 80.0, "bridge-cl": 80.0, "plain-cl": 80.0}}
    run_one, calls = fake_engine(speeds)
    # tinybin's first try loses 30 % to the host (and runs at half speed), its second is clean
    table = versus.compare_with_torch([(1, "srelu")], run_one, rounds=1, peers=PEERS, loadavg=fixed_loads([0.1]),
                                      cpus=2, ticks=ticks_stealing([0.3, 0.0, 0.0, 0.0, 0.0]))
    out = capsys.readouterr().out
    row = table["WRN-20-1 srelu"]
    assert calls.count((1, "srelu", "")) == 2 and len(calls) == 5
    assert row["tinybin"] == 100.0 and row["steal"] == 0.0 and "warning" not in out
    assert "(1 process(es) measured again" in out


def test_retries_are_bounded_and_a_host_that_keeps_stealing_is_still_warned_about(capsys):
    speeds = {(1, "srelu"): {"": [60.0, 50.0, 70.0, 99.0], "bridge-nchw": 80.0, "bridge-cl": 80.0,
                             "plain-cl": 80.0}}
    run_one, calls = fake_engine(speeds)
    steals = [0.3, 0.2, 0.25] + [0.0] * 3             # tinybin: three stolen tries, the least stolen counts
    table = versus.compare_with_torch([(1, "srelu")], run_one, rounds=1, peers=PEERS, loadavg=fixed_loads([0.1]),
                                      cpus=2, ticks=ticks_stealing(steals), steal_retries=2)
    out = capsys.readouterr().out
    assert calls.count((1, "srelu", "")) == 3 and table["WRN-20-1 srelu"]["tinybin"] == 50.0
    assert table["WRN-20-1 srelu"]["steal"] == pytest.approx(0.2) and "20 %" in out and "warning: the host" in out
    run_one, calls = fake_engine(speeds)
    versus.compare_with_torch([(1, "srelu")], run_one, rounds=1, peers=PEERS, loadavg=fixed_loads([0.1]),
                              cpus=2, ticks=ticks_stealing(steals), steal_retries=0)
    assert calls.count((1, "srelu", "")) == 1 and "measured again" not in capsys.readouterr().out
