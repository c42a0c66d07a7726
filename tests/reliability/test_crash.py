"""Crash safety: ``flameqa run pipelines/demo.yaml`` SIGKILLed inside every stage, then rerun, ends
with exactly the clean run's tables; after the kill, table readers never see a partial shard.

Kills land at exact places through ``FLAMEQA_TEST_KILL_AT`` (``flameqa.io.shards.fault_point``):
``start`` (mid-shard, markers cleared, nothing written), ``write`` (an output table's shard renamed,
the next not written), ``rename`` (temp file complete, not renamed), ``marker`` (every shard
written, no marker), ``marker1`` (the first of two markers written), ``done``. The fast tests kill
each stage once at a fixed point (one of each kind across the stages); the slow loop draws random
points, shards and wall-clock moments.

Every run here starts from the shared clean run's folder with the killed stage's outputs removed
(its upstream tables are what a run killed inside that stage would have), so a test pays for one
stage twice, not for the whole pipeline.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    seed_from,
    visible_problems,
)

FAST = [
    ("ingest", "ingest:write:1"),  # videos shard renamed, clips shard not written
    ("speech", "speech:marker1:1"),  # speech marker written, words marker not
    ("faces", "faces:rename:1"),  # temp file complete, rename not done
    ("speakers", "speakers:marker:1"),  # shard in place, marker not written
    ("fit", "fit:start:1"),  # mid-shard: markers cleared, nothing written yet
    ("assemble", "samples:rename:0"),  # the first shard, before its rename
]


def test_stage_tables_match_the_stage_classes():
    from flameqa.stages import ORDER, stage_class

    assert tuple(ORDER) == STAGES
    for s in STAGES:
        assert stage_class(s).output_tables == STAGE_TABLES[s], s


def kill_and_resume(clean, work: Path, stage: str, kill_at: str | None, drop: list[str], kill_after_s: float | None = None) -> dict:
    """Seed ``work`` without the outputs of ``drop``, run the pipeline killed at ``kill_at`` (or after
    ``kill_after_s`` seconds), check what readers see, rerun, compare with the clean run."""
    seed_from(clean.out, work, drop)
    args = pipeline_args(clean.manifest, work)
    if kill_after_s is None:
        r = run_flameqa(args, kill_at=kill_at)
        assert r.killed, f"the kill point was not reached: {r.describe()}"
    else:
        p = subprocess.Popen([sys.executable, "-m", "flameqa", *args], cwd=code_root(), env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
    problems = visible_problems(work, clean.out, tables=[t for s in drop for t in STAGE_TABLES[s]], with_datasets=STAGE_TABLES[stage][:1])
    tally(**{"unreadable visible shards": sum("unreadable" in p or "differs" in p for p in problems)})
    assert not problems, f"after the kill at {kill_at or f'{kill_after_s:.1f} s'}:\n" + "\n".join(problems)
    r2 = run_flameqa(args)
    tally(**{"kill/resume runs": 1, "crashes": int(r2.returncode != 0)})
    assert r2.returncode == 0, r2.describe()
    c = compare_outputs(clean.out, work)
    tally(**{"rows lost": c.lost, "duplicate rows": c.extra})
    note_float_diffs(c.max_float_diff)
    assert c.equal, "\n".join(c.problems)
    assert not leftover_temps(work), leftover_temps(work)
    assert not visible_problems(work, clean.out, with_datasets=STAGE_TABLES[stage][:1])
    return c.tables


@pytest.mark.parametrize("stage,kill_at", FAST, ids=[s for s, _ in FAST])
def test_kill_inside_stage_then_resume(clean_run, tmp_path, stage, kill_at):
    kill_and_resume(clean_run, tmp_path / "work", stage, kill_at, drop=[stage])


@pytest.mark.slow
def test_kill_whole_pipeline_from_scratch(clean_run, tmp_path):
    """No seeding: a fresh OUT, killed between the speech shard and its marker, rerun from the CLI."""
    kill_and_resume(clean_run, tmp_path / "work", "speech", "speech:marker:0", drop=list(STAGES))


@pytest.mark.slow
def test_kill_at_random_points(clean_run, tmp_path):
    """Every stage × random kill points (named points on random shards and random moments)."""
    seed = int(os.environ.get("FLAMEQA_CRASH_SEED", time.time_ns() % 100_000))
    rounds = int(os.environ.get("FLAMEQA_CRASH_ROUNDS", "3"))
    rng = random.Random(seed)
    TALLY_NOTES.append(f"random kill points: seed {seed} (FLAMEQA_CRASH_SEED), {rounds} rounds × {len(STAGES)} stages")
    n = 0
    for rnd in range(rounds):
        for stage in STAGES:
            i = STAGES.index(stage)
            drop = list(STAGES[i:]) if rng.random() < 0.5 else [stage]  # downstream redone or kept
            work = tmp_path / f"r{rnd}-{stage}"
            if rng.random() < 0.2:
                # a moment: somewhere in this stage's run (model loading included), or not at all
                kill_and_resume(clean_run, work, stage, None, drop, kill_after_s=rng.uniform(1.0, 12.0))
            else:
                point = rng.choice(POINTS)
                shard = rng.choice([0, 1])
                name = rng.choice(STAGE_TABLES[stage]) if point == "rename" else stage
                if point == "marker1" and len(STAGE_TABLES[stage]) == 1:
                    point = "marker"
                kill_and_resume(clean_run, work, stage, f"{name}:{point}:{shard}", drop)
            n += 1
    assert n == rounds * len(STAGES)
