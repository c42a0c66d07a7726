"""Without a UEM, DER is scored over the reference's extent, whatever the hypothesis says."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest

from flameqa.speech.diarize import Turn
from flameqa.speech.eval import evaluate_diarization, read_rttm, score_der, turns_annotation


class _FakePipeline:
    def __init__(self, turns):
        self.turns = turns

    def process(self, audio, num_speakers=None):
        return SimpleNamespace(turns=self.turns, status="ok", duration_s=10.0)

    def describe(self):
        return {"fake": True}


@pytest.fixture
def rttm(tmp_path):
    p = tmp_path / "r.rttm"
    p.write_text("SPEAKER f 1 1.0 3.0 <NA> <NA> A <NA> <NA>\nSPEAKER f 1 4.0 2.0 <NA> <NA> B <NA> <NA>\n")
    return p


def test_default_uem_is_the_reference_extent(rttm):
    ref = read_rttm(rttm)["f"]
    exact = [Turn("S1", 1.0, 4.0), Turn("S2", 4.0, 6.0)]
    extra = exact + [Turn("S1", 7.0, 9.0)]  # hypothesis speech past the reference's end
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pyannote warns when it has to approximate the UEM
        a = score_der(ref, turns_annotation(exact, "f"))
        b = score_der(ref, turns_annotation(extra, "f"))
    assert a == b and a["der"] == 0.0 and a["false_alarm"] == 0.0


def test_evaluate_diarization_reports_its_uem(rttm, tmp_path):
    pipe = _FakePipeline([Turn("S1", 1.0, 4.0), Turn("S2", 4.0, 6.0), Turn("S1", 7.0, 9.0)])
    r = evaluate_diarization(tmp_path / "f.wav", rttm, pipeline=pipe)
    assert r["uem"] == "reference extent" and r["uem_regions_s"] == [[1.0, 6.0]]
    assert r["der"] == 0.0
    json.dumps(r)
    uem = tmp_path / "r.uem"
    uem.write_text("f NA 0.000 10.000\n")
    r = evaluate_diarization(tmp_path / "f.wav", rttm, uem, pipeline=pipe)
    assert r["uem"] == str(uem) and r["uem_regions_s"] == [[0.0, 10.0]] and r["false_alarm"] == pytest.approx(2.0)
    uem.write_text("other NA 0.000 10.000\n")
    with pytest.raises(ValueError, match="no lines for recording 'f'"):
        evaluate_diarization(tmp_path / "f.wav", rttm, uem, pipeline=pipe)
