"""The text table ``flameqa train`` / ``eval motion`` print: every cell stays a separate column."""

from __future__ import annotations

import math

from flameqa.train.evaluate import _COLUMNS, format_table


def test_wide_values_do_not_run_together_and_missing_ones_show_a_dash():
    # a value as wide as the old fixed 10-char column (-2.588e-08) used to butt onto its neighbour
    metrics = {
        "model": {"lve": 1.2e-3, "fd_expression": 0.395, "lipsync_corr": -2.588e-08, "jaw_energy_corr": None,
                  "jitter": math.nan, "jaw_energy_corr_gt": 0.8, "jitter_gt": 0.3},
        "mean_motion": {"fd_expression": 0.395, "lipsync_corr": -2.588e-08},
    }  # fmt: skip
    lines = format_table(metrics).splitlines()
    assert len(lines) == 2 + len(metrics) + 1  # header, rule, one row per method, ground truth
    n = len(_COLUMNS) + 1
    for line in lines[2:]:  # header names contain spaces
        cells = line.replace("ground truth", "ground_truth").split()
        assert len(cells) == n, line
    mm = lines[3].split()
    assert mm[0] == "mean_motion" and "0.395" in mm and "-2.588e-08" in mm
    assert lines[2].split()[1] == "1.2" and lines[2].split()[6] == "-"  # LVE in mm; None → "-"
    # right-aligned numeric columns: every row ends where the header ends
    assert len({len(x) for x in [lines[0], *lines[2:]]}) == 1


def test_empty_metrics_give_just_the_header():
    assert format_table({}).splitlines()[0].split()[0] == "method"
