"""The local executor's stage scheduling: independent stages run at the same time, dependent ones
wait, reports come back in pipeline order, a stage that cannot start stops the scheduling."""

from __future__ import annotations

import threading

import pytest

from flameqa.runner import StageReport, _run_concurrently, stage_dependencies
from flameqa.stages import ORDER


def test_dependencies_of_the_default_pipeline():
    assert stage_dependencies(ORDER) == {
        "ingest": set(),
        "speech": {"ingest"},
        "faces": {"ingest"},
        "speakers": {"faces", "speech"},
        "fit": {"faces"},
        "assemble": {"ingest", "speech", "speakers", "fit"},
    }
    # stages not being run are already on disk: nothing to wait for
    assert stage_dependencies(["speakers", "fit"]) == {"speakers": set(), "fit": set()}


def _recording_run(started: list, ended: list, overlap: dict[str, threading.Barrier], fail_start: str | None = None):
    def run(name: str) -> StageReport:
        started.append(name)
        if name in overlap:  # passes only when its partner runs at the same time
            overlap[name].wait(timeout=10)
        ended.append(name)
        return StageReport(stage=name, start_error="boom" if name == fail_start else None)

    return run


def test_independent_stages_overlap_dependent_ones_wait():
    started: list[str] = []
    ended: list[str] = []
    pair = threading.Barrier(2)
    reports = _run_concurrently(ORDER, _recording_run(started, ended, {"speech": pair, "faces": pair}))
    assert [r.stage for r in reports] == ORDER
    deps = stage_dependencies(ORDER)
    for s in ORDER:  # every stage started after all the stages it reads from had ended
        assert all(ended.index(d) < started.index(s) for d in deps[s]), (s, started, ended)


def test_a_stage_that_cannot_start_stops_later_stages():
    started: list[str] = []
    ended: list[str] = []
    pair = threading.Barrier(2)
    reports = _run_concurrently(ORDER, _recording_run(started, ended, {"speech": pair, "faces": pair}, fail_start="faces"))
    # speech ran beside faces and finished; nothing after faces started
    assert [r.stage for r in reports] == ["ingest", "speech", "faces"]
    assert reports[2].start_error == "boom"


def test_an_exception_in_a_stage_reaches_the_caller():
    class Interrupted(BaseException):
        pass

    def run(name: str) -> StageReport:
        if name == "faces":
            raise Interrupted()
        return StageReport(stage=name)

    with pytest.raises(Interrupted):
        _run_concurrently(["ingest", "faces", "fit"], run)
