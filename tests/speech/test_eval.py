"""WER normalisation, reference formats, DER scoring conventions (no models)."""

from __future__ import annotations

import pytest

from flameqa.speech.diarize import Turn
from flameqa.speech.eval import load_refs, normalize_text, pool_der, read_rttm, read_uem, score_der, turns_annotation, wer, wer_details


@pytest.mark.parametrize(
    "raw,norm",
    [
        ("And so, my fellow Americans: ask not!", "and so my fellow americans ask not"),
        ("Set white with P2 soon.", "set white with p two soon"),
        ("4. Queen of clubs", "four queen of clubs"),
        ("5-5", "five five"),
        ("It's 10% on the 3rd, won't you?", "it is ten percent on the third will not you"),
        ("In 1984 we paid $12", "in nineteen eighty four we paid twelve dollars"),
        ("<s> ten of clubs </s>", "ten of clubs"),
        ("Uh, I think so [laughs]", "i think so"),
        ("2,500 people", "two thousand five hundred people"),
    ],
)
def test_normalize(raw, norm):
    assert normalize_text(raw) == norm


def test_wer_counts():
    assert wer(["set white with p two soon"], ["Set white with P2 soon."]) == 0.0
    d = wer_details(["a b c d", "e f"], ["a x c", ""])
    assert (d["substitutions"], d["deletions"], d["insertions"], d["ref_words"]) == (1, 3, 0, 6)
    assert d["wer"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="references but"):
        wer(["a"], [])


def test_reference_formats(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("bbaf2n.mpg\tbin blue at f two now\n# comment\nx\ty z\n")
    assert load_refs(tsv) == {"bbaf2n": "bin blue at f two now", "x": "y z"}
    sph = tmp_path / "cards.transcription"
    sph.write_text("<s> ten of clubs  </s> (001)\n<s> five five </s> (004)\n")
    assert load_refs(sph) == {"001": "ten of clubs", "004": "five five"}
    one = tmp_path / "jfk.ref.txt"
    one.write_text("And so my fellow Americans.\n")
    assert load_refs(one) == {"jfk": "And so my fellow Americans."}


def test_der_conventions(tmp_path):
    rttm = tmp_path / "r.rttm"
    rttm.write_text("SPEAKER f 1 0.0 4.0 <NA> <NA> A <NA> <NA>\nSPEAKER f 1 3.0 3.0 <NA> <NA> B <NA> <NA>\n")
    uem = tmp_path / "r.uem"
    uem.write_text("f NA 0.000 6.000\n")
    ref, tl = read_rttm(rttm)["f"], read_uem(uem)["f"]
    perfect = [Turn("S1", 0.0, 4.0), Turn("S2", 3.0, 6.0)]
    assert score_der(ref, turns_annotation(perfect, "f"), tl)["der"] == 0.0
    # no overlap in the hypothesis: the 1 s of overlap is missed (overlap is scored), no collar
    single = [Turn("S1", 0.0, 3.5), Turn("S2", 3.5, 6.0)]
    r = score_der(ref, turns_annotation(single, "f"), tl)
    assert r["missed"] == pytest.approx(1.0) and r["total"] == pytest.approx(7.0)
    assert r["confusion"] == pytest.approx(0.0) and r["der"] == pytest.approx(1 / 7, abs=1e-3)
    pooled = pool_der([r, r])
    assert pooled["der"] == pytest.approx(r["der"], abs=1e-3) and "no collar" in pooled["scoring"]
