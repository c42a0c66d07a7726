"""Soak: the demo pipeline run 20 times in a row on the same OUT, most runs SIGKILLed at a random
place (a named kill point on a random stage/shard, or a random moment) and some with --overwrite,
ends with the clean run's tables; after every run, readers see only complete shards.

``make soak`` runs it (``pytest -m slow``). ``FLAMEQA_SOAK_RUNS`` (default 20) and
``FLAMEQA_SOAK_SEED`` (default: time-based, printed) change the number of runs and the draw.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.reliability.conftest import TALLY_NOTES, note_float_diffs, tally
from tests.reliability.helpers import (
    POINTS,
    STAGE_TABLES,
    STAGES,
    base_env,
    code_root,
    compare_outputs,
    leftover_temps,
    pipeline_args,
    run_flameqa,
    visible_problems,
)


@pytest.mark.slow
def test_soak_interrupted_runs_end_like_a_clean_run(clean_run, tmp_path):
    runs = int(os.environ.get("FLAMEQA_SOAK_RUNS", "20"))
    seed = int(os.environ.get("FLAMEQA_SOAK_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    out = tmp_path / "soak"
    log: list[str] = []
    kinds: Counter = Counter()
    crashes = 0
    complete = False  # whether the previous run finished the whole pipeline
    full_s = clean_run.seconds  # how long the latest uninterrupted run took (timed kills land inside it)
    for i in range(runs):
        last = i == runs - 1  # the last run is left alone: it must finish what the others left
        mode = "none" if last else rng.choices(["point", "moment", "none"], weights=[6, 4, 1])[0]
        # a finished OUT only has work again with --overwrite: without it a kill would never land
        overwrite = not last and ((complete and mode != "none") or rng.random() < 0.3)
        args = pipeline_args(clean_run.manifest, out) + (["--overwrite"] if overwrite else [])
        t0 = time.perf_counter()
        if mode == "point":
            stage = rng.choice(STAGES)
            point = rng.choice(POINTS)
            if point == "marker1" and len(STAGE_TABLES[stage]) == 1:
                point = "marker"
            name = rng.choice(STAGE_TABLES[stage]) if point == "rename" else stage
            spec = f"{name}:{point}:{rng.choice([0, 1])}"
            rc = run_flameqa(args, kill_at=spec).returncode
            what = f"kill at {spec}"
        elif mode == "moment":
            delay = rng.uniform(1.0, max(2.0, 0.9 * full_s))
            p = subprocess.Popen([sys.executable, "-m", "flameqa", *args], cwd=code_root(), env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                rc = p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                rc = p.wait()
            what = f"kill after {delay:.1f} s"
        else:
            rc = run_flameqa(args).returncode
            what = "uninterrupted"
        landed = rc == -signal.SIGKILL
        complete = rc == 0
        if mode == "none" and rc == 0 and overwrite:
            full_s = time.perf_counter() - t0
        kinds["killed" if landed else "finished"] += 1
        crashes += int(rc not in (0, -signal.SIGKILL))
        log.append(f"run {i + 1:2d}: {what}{' --overwrite' if overwrite else ''} → {'killed' if landed else f'rc {rc}'} ({time.perf_counter() - t0:.0f} s)")
        problems = visible_problems(out, clean_run.out, with_datasets=("samples",) if i % 5 == 4 else ())
        assert not problems, "\n".join(log + problems)
    c = compare_outputs(clean_run.out, out)
    note_float_diffs(c.max_float_diff)
    tally(**{"soak iterations": runs, "crashes": crashes, "rows lost": c.lost, "duplicate rows": c.extra})
    TALLY_NOTES.append(f"soak: seed {seed} (FLAMEQA_SOAK_SEED), {runs} runs, {kinds['killed']} killed, {kinds['finished']} finished")
    TALLY_NOTES.extend(f"  {line}" for line in log)
    assert crashes == 0, "\n".join(log)
    assert c.equal, "\n".join(log + c.problems)
    assert not leftover_temps(out), leftover_temps(out)
