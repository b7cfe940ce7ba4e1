"""`bench train --vs-torch`: tinybin's training step beside PyTorch's, with targets and the load.

Each (configuration, engine) is one fresh process; within a configuration the engines take turns
for `rounds` rounds (the order rotates each round, so no engine profits from a quiet moment), and
a row shows each engine's median images/s. The PyTorch engines are the peer kinds of bench.peer;
"best PyTorch" is the fastest of them on that row, and the row's ratio and memory target are
against that kind.

The 1-minute load average is read just before and just after every measured process and printed
per row. Above cpu_count/2 (1.0 per 2 cores) the table warns: on a busy machine tinybin's idle
threads sleep while PyTorch's OpenMP threads spin, so the ratio flatters tinybin.

The load average sees only this machine. On a virtual machine the host may also take CPU time
from it ("steal" in /proc/stat), which slows whichever process runs then: a quiet load with
20-30 % steal measured the same WRN-20-1 step at 98-195 images/s. Each row also shows the
largest share of CPU time stolen during one of its processes, and the table warns above
STEAL_LIMIT: such figures are noisy whatever the load. The host's steal comes in bursts of a
minute or more, so a process during which it took more than STEAL_LIMIT is measured again, up
to `steal_retries` more times (`--steal-retries`, default 2), and the least-stolen try counts;
the table says how many processes were measured again.

Targets (issue 23 §2, for a quiet machine and >= 3 rounds):
  speed    tinybin >= 1.05x the best PyTorch for widths below 10 (WRN-20-1, WRN-20-4),
           >= 1.0x from width 10 (WRN-20-10);
  memory   tinybin's peak memory <= that of the fastest PyTorch kind, on every row;
  srelu    tinybin's srelu at least as fast as its baseline2 at every width where both ran.
"""
from __future__ import annotations

import os
from statistics import median

SPEED_TARGET, WIDE_SPEED_TARGET, WIDE = 1.05, 1.0, 10
MIN_TICKS = 100        # CPU ticks (all CPUs; 100 per CPU-second) a process must span for its steal share
STEAL_LIMIT = 0.05     # the share of CPU time the host may take before the figures count as noisy
STEAL_RETRIES = 2      # more tries of a process the host stole more than STEAL_LIMIT from


def speed_target(width) -> float:
    return WIDE_SPEED_TARGET if width >= WIDE else SPEED_TARGET


def busy_threshold(cpus=None) -> float:
    """The load average above which a machine counts as busy: 1.0 per 2 cores."""
    return (cpus or os.cpu_count() or 1) / 2


def cpu_ticks():
    """(stolen, total) CPU ticks since boot from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (ticks[7], sum(ticks)) if len(ticks) == 8 else None


def timed(measure, loadavg=None, ticks=None):
    """measure() with the 1-minute load average just before and after, and the share of CPU time
    stolen by the host meanwhile (None where unknown): (result, before, after, steal)."""
    loadavg = loadavg or (lambda: os.getloadavg()[0])
    ticks = ticks or cpu_ticks
    before, start = loadavg(), ticks()
    result = measure()
    end, after = ticks(), loadavg()
    known = start and end and end[1] - start[1] >= MIN_TICKS     # too short a process: a tick is noise
    return result, before, after, (end[0] - start[0]) / (end[1] - start[1]) if known else None


def least_stolen(measure, loadavg=None, ticks=None, retries=STEAL_RETRIES):
    """timed(measure), tried again while the host stole more than STEAL_LIMIT, at most `retries`
    more times: (the least-stolen try's (result, before, after, steal), how many tries were repeated)."""
    best = None
    for repeated in range(retries + 1):
        tried = timed(measure, loadavg, ticks)
        if best is None or (tried[3] or 0.0) < (best[3] or 0.0):
            best = tried
        if tried[3] is None or tried[3] <= STEAL_LIMIT:
            break
    return best, repeated


def summarise(seen: dict, loads: list, width: int, peers, steals=()) -> dict:
    """One row from {kind: [measurements]} ("" is tinybin), the loads read around them and the
    shares of CPU time stolen during them (None where unknown)."""
    speed = {k: median(m["images_per_s"] for m in v) for k, v in seen.items()}
    peak = {k: max(m["peak_mb"] for m in v) for k, v in seen.items()}
    best = max(peers, key=lambda k: speed[k])
    return dict(width=width, tinybin=speed[""], speed={k: speed[k] for k in peers}, best=best,
                ratio=speed[""] / speed[best], peak_mb=peak[""], peak_mb_peers={k: peak[k] for k in peers},
                peak_mb_best=peak[best], load=(min(loads), max(loads)), loads=list(loads),
                steal=max((x for x in steals if x is not None), default=None))


def targets(table: dict) -> list:
    """[(text, ok)] for every target the rows allow (see the module docstring)."""
    out = []
    for name, row in table.items():
        goal = speed_target(row["width"])
        out.append((f"{name} >= {goal:.2f}x the best PyTorch ({row['best']}): {row['ratio']:.2f}x",
                    row["ratio"] >= goal))
    for name, row in table.items():
        out.append((f"{name} peak memory <= the fastest PyTorch's ({row['best']}): {row['peak_mb']:.0f} vs "
                    f"{row['peak_mb_best']:.0f} MB", row["peak_mb"] <= row["peak_mb_best"]))
    for name, row in table.items():
        if name.endswith(" srelu") and name[:-len("srelu")] + "baseline2" in table:
            base = table[name[:-len("srelu")] + "baseline2"]
            out.append((f"{name} at least as fast as baseline2 in tinybin: {row['tinybin']:.1f} vs "
                        f"{base['tinybin']:.1f} images/s", row["tinybin"] >= base["tinybin"]))
    return out


def steal_warning(table: dict):
    """The warning line when the host took more than STEAL_LIMIT of the CPU time during a process."""
    steals = [row["steal"] for row in table.values() if row.get("steal") is not None]
    if not steals or max(steals) <= STEAL_LIMIT:
        return None
    return (f"warning: the host took up to {100 * max(steals):.0f} % of this machine's CPU time (steal) during a "
            f"process: the figures are noisy whatever the load average says; measure again")


def busy_warning(table: dict, cpus=None):
    """The warning line when any load read exceeded busy_threshold, else None."""
    loads = [x for row in table.values() for x in row["loads"]]
    limit = busy_threshold(cpus)
    if not loads or max(loads) <= limit:
        return None
    moved = max(abs(b - a) for row in table.values() for a, b in zip(row["loads"][::2], row["loads"][1::2]))
    return (f"warning: the machine was busy (1-min load average {min(loads):.1f}–{max(loads):.1f}, above "
            f"{limit:g} for {cpus or os.cpu_count()} CPUs; it moved by up to {moved:.1f} during one process and "
            f"from {loads[0]:.1f} to {loads[-1]:.1f} over the run): a busy machine favours tinybin (its idle "
            f"threads sleep, PyTorch's spin), so these ratios overstate it")


def compare_with_torch(configs, run_one, depth=20, rounds=3, peers=None, loadavg=None, cpus=None,
                       ticks=None, steal_retries=STEAL_RETRIES) -> dict:
    """The --vs-torch table. run_one(width, variant, peer) measures one configuration in a fresh
    process (peer "" is tinybin, else a kind of bench.peer) and returns its figures."""
    from .peer import PEERS

    peers = tuple(peers or PEERS)
    kinds = ("",) + peers
    print(f"{'model':<22}{'tinybin':>9}" + "".join(f"{k:>13}" for k in peers) + f"{'tinybin /':>11}"
          f"{'peak MB':>9}{'peak MB':>9}  load     steal\n{'':<22}{'img/s':>9}"
          + "".join(f"{'img/s':>13}" for _ in peers)
          + f"{'best PT':>11}{'tinybin':>9}{'best PT':>9}  (1-min)  (max)")
    table, repeated = {}, 0
    for width, variant in configs:
        seen, loads, steals = {k: [] for k in kinds}, [], []
        for r in range(rounds):
            for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                (result, before, after, steal), again = least_stolen(lambda: run_one(width, variant, kind),
                                                                     loadavg, ticks, steal_retries)
                repeated += again
                seen[kind].append(result)
                loads += [before, after]
                steals.append(steal)
        name = f"WRN-{depth}-{width} {variant}"
        row = table[name] = summarise(seen, loads, width, peers, steals)
        row["torch_threads"] = seen[peers[0]][0].get("threads")
        print(f"{name:<22}{row['tinybin']:9.1f}" + "".join(f"{row['speed'][k]:13.1f}" for k in peers)
              + f"{row['ratio']:10.2f}x{row['peak_mb']:9.0f}{row['peak_mb_best']:9.0f}  "
              f"{row['load'][0]:.1f}–{row['load'][1]:.1f}  "
              + ("  n/a" if row["steal"] is None else f"{100 * row['steal']:4.0f} %"), flush=True)
    threads = next(iter(table.values()))["torch_threads"] if table else None
    print(f"(median images/s of {rounds} alternated processes each; best PT: the fastest PyTorch kind of the row, "
          f"whose peak memory is shown; PyTorch on {threads} threads)")
    if repeated:
        print(f"({repeated} process(es) measured again: the host took more than {100 * STEAL_LIMIT:.0f} % of the "
              f"CPU time during them; the least-stolen try counts)")
    for warning in (busy_warning(table, cpus), steal_warning(table)):
        if warning:
            print(warning)
    for text, ok in targets(table):
        print(f"target {text} {'OK' if ok else 'MISSED'}")
    return table
