"""Speech evaluation: WER (jiwer, Whisper-style English normalisation) and DER (pyannote.metrics).

Library functions used by the tests, the CLI (``flameqa eval asr`` / ``flameqa eval diarization``)
and the benchmarks. Scoring conventions are written into every result so numbers are comparable.
"""

from __future__ import annotations

import logging
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# text normalisation (compact take on Whisper's EnglishTextNormalizer, numbers → words)

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}

_CONTRACTIONS = [
    (r"\bwon't\b", "will not"),
    (r"\bcan't\b", "can not"),
    (r"\bcannot\b", "can not"),
    (r"\bain't\b", "is not"),
    (r"\blet's\b", "let us"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'m\b", " am"),
    (r"'ll\b", " will"),
    (r"'ve\b", " have"),
    (r"'d\b", " would"),
    (r"\b(he|she|it|that|there|what|where|who|how|here)'s\b", r"\1 is"),
]
_ABBREV = {"mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "st": "saint", "vs": "versus", "ok": "okay"}
_FILLERS = {"uh", "um", "hmm", "mm", "mhm", "ah", "eh", "er", "erm"}


def number_to_words(n: int) -> str:
    """0 ≤ n < 10¹²: ``1984`` → ``one thousand nine hundred eighty four``."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_to_words(n % 100))
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            return number_to_words(n // size) + " " + name + ("" if n % size == 0 else " " + number_to_words(n % size))
    raise ValueError(n)


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORD:
        last = _ORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return (head + " " + last).strip()


def _spell_number(m: re.Match) -> str:
    raw = m.group(0)
    digits, frac, suffix = m.group(1).replace(",", ""), m.group(2), (m.group(3) or "").lower()
    if len(digits) > 12:
        return raw
    n = int(digits)
    # 4-digit years read as pairs ("1984" → "nineteen eighty four"), as people say them
    if not frac and not suffix and len(digits) == 4 and 1100 <= n <= 2099 and n % 1000 >= 10 and not (2000 <= n <= 2009):
        w = number_to_words(n // 100) + " " + (("oh " + _ONES[n % 100]) if n % 100 < 10 else number_to_words(n % 100))
    else:
        w = number_to_words(n)
    if frac:
        w += " point " + " ".join(_ONES[int(d)] for d in frac)
    if suffix in ("st", "nd", "rd", "th"):
        w = _ordinal(w)
    elif suffix == "%":
        w += " percent"
    return f" {w} "


def normalize_text(text: str) -> str:
    """Whisper-style English normalisation for WER: lower case, no punctuation, contractions
    expanded, digits spelled out (``P2`` → ``p two``, ``10%`` → ``ten percent``, ``3rd`` →
    ``third``), hyphens split, fillers (uh, um) dropped, whitespace collapsed."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = s.replace("’", "'").replace("‘", "'")
    s = re.sub(r"[<\[(][^>\])]*[>\])]", " ", s)  # <s>, [noise], (comments)
    for pat, rep in _CONTRACTIONS:
        s = re.sub(pat, rep, s)
    s = re.sub(r"\$(\d[\d,]*(?:\.\d+)?)", r"\1 dollars", s)
    s = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])(?!(?:st|nd|rd|th)\b)", " ", s)  # a1 → a 1 (but 1st stays)
    s = re.sub(r"(\d[\d,]*)(?:\.(\d+))?(st|nd|rd|th|%)?", _spell_number, s)
    s = s.replace("&", " and ")
    s = re.sub(r"'s\b", "s", s)  # possessive: "country's" ~ "countrys" on both sides
    s = re.sub(r"[^\w\s']|_", " ", s)
    s = s.replace("'", "")
    words = [_ABBREV.get(w, w) for w in s.split()]
    return " ".join(w for w in words if w not in _FILLERS)


def wer(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus WER (errors / reference words) over parallel lists of texts."""
    return wer_details(refs, hyps, normalize)["wer"]


def wer_details(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> dict[str, Any]:
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    r = [normalize_text(x) if normalize else x for x in refs]
    h = [normalize_text(x) if normalize else x for x in hyps]
    keep = [i for i, x in enumerate(r) if x.strip()]
    if not keep:
        raise ValueError("every reference is empty after normalisation: nothing to score")
    r, h = [r[i] for i in keep], [h[i] for i in keep]
    out = jiwer.process_words(r, h)  # an empty hypothesis scores as deletions of every word
    n = sum(len(x.split()) for x in r)
    errors = out.substitutions + out.deletions + out.insertions
    return {
        "wer": errors / n,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "ref_words": n,
        "empty_hypotheses": sum(1 for x in h if not x.strip()),
    }


# ---------------------------------------------------------------------------------------------
# references


def load_refs(path: str | os.PathLike) -> dict[str, str]:
    """References by utterance id (file name without extension).

    Accepted layouts: TSV ``<file or id>\\t<text>`` (``#`` comments), CMU Sphinx ``.transcription``
    lines ``<s> text </s> (id)``, or a plain text file holding one reference whose id is the file's
    stem with a trailing ``.ref`` dropped (``jfk.ref.txt`` → ``jfk``).
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    lines = [x.rstrip("\n") for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    refs: dict[str, str] = {}
    sphinx = re.compile(r"^(.*)\(([^()]+)\)\s*$")
    if lines and all("\t" in x for x in lines):
        for x in lines:
            k, v = x.split("\t", 1)
            refs[Path(k.strip()).stem] = v.strip()
    elif lines and all(sphinx.match(x) for x in lines):
        for x in lines:
            m = sphinx.match(x)
            refs[m.group(2).strip()] = re.sub(r"</?s>", " ", m.group(1)).strip()
    else:
        stem = p.name.split(".")[0]
        refs[stem] = " ".join(lines)
    return refs


def _match_audio(audio: Path, refs: dict[str, str]) -> list[tuple[str, Path]]:
    if audio.is_file():
        key = audio.stem if audio.stem in refs else (audio.stem.split("_")[0] if audio.stem.split("_")[0] in refs else None)
        if key is None and len(refs) == 1:
            key = next(iter(refs))
        if key is None:
            raise ValueError(f"no reference for {audio.name} in the refs file (ids: {sorted(refs)[:10]})")
        return [(key, audio)]
    if not audio.is_dir():
        raise FileNotFoundError(f"audio path {audio} does not exist")
    by_stem = {f.stem: f for f in sorted(audio.iterdir()) if f.is_file()}
    missing = [k for k in refs if k not in by_stem]
    if missing:
        raise ValueError(f"{len(missing)} references have no audio file in {audio}: {missing[:5]}")
    return [(k, by_stem[k]) for k in refs]


# ---------------------------------------------------------------------------------------------
# ASR evaluation


@dataclass
class AsrItem:
    id: str
    path: str
    ref: str
    hyp: str
    duration_s: float
    seconds: float


def evaluate_asr(audio: str | os.PathLike | Iterable[tuple[str, str | os.PathLike]], refs: str | os.PathLike | dict[str, str], pipeline=None, config=None) -> dict[str, Any]:
    """WER and real-time factor of the configured recogniser (VAD + ASR, no diarization).

    ``audio``: a file, a folder (files matched to reference ids by stem) or (id, path) pairs.
    ``pipeline``: a loaded :class:`~flameqa.speech.pipeline.SpeechPipeline` (reused), else one is built
    from ``config`` with diarization off. RTF = transcription wall time / audio duration.
    """
    from flameqa.speech.config import SpeechConfig
    from flameqa.speech.pipeline import SpeechPipeline

    ref_map = load_refs(refs) if not isinstance(refs, dict) else refs
    if isinstance(audio, (str, os.PathLike)):
        items = _match_audio(Path(audio), ref_map)
    else:
        items = [(k, Path(p)) for k, p in audio]
    if pipeline is None:
        cfg = (config or SpeechConfig()).model_copy(update={"diarization_backend": "none"})
        pipeline = SpeechPipeline(cfg)
    results: list[AsrItem] = []
    for key, path in items:
        t0 = time.perf_counter()
        r = pipeline.process(path)
        dt = time.perf_counter() - t0
        hyp = " ".join(w.word.word for w in r.words)
        if r.status not in ("ok", "no_speech"):
            log.warning("%s: %s (%s)", path, r.status, r.error)
        results.append(AsrItem(key, str(path), ref_map[key], hyp, r.duration_s, dt))
    det = wer_details([x.ref for x in results], [x.hyp for x in results])
    total = sum(x.duration_s for x in results)
    secs = sum(x.seconds for x in results)
    return {
        "wer": round(det["wer"], 4),
        "rtf": round(secs / total, 4) if total else None,
        "audio_s": round(total, 2),
        "seconds": round(secs, 2),
        **{k: v for k, v in det.items() if k != "wer"},
        "files": len(results),
        "normalization": "whisper-style english: lower case, punctuation removed, contractions expanded, digits spelled out",
        "model": pipeline.describe(),
        "items": [{"id": x.id, "ref": x.ref, "hyp": x.hyp, "wer": round(wer([x.ref], [x.hyp]), 4)} for x in results],
    }


# ---------------------------------------------------------------------------------------------
# diarization evaluation


def read_rttm(path: str | os.PathLike) -> dict[str, "Any"]:
    """RTTM ``SPEAKER <uri> <chan> <start> <dur> ... <speaker>`` lines → {uri: pyannote Annotation}."""
    from pyannote.core import Annotation, Segment

    out: dict[str, Annotation] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        p = line.split()
        if not p or p[0] != "SPEAKER":
            continue
        if len(p) < 8:
            raise ValueError(f"{path}:{n}: RTTM line needs ≥ 8 fields, got {len(p)}")
        uri, start, dur, spk = p[1], float(p[3]), float(p[4]), p[7]
        out.setdefault(uri, Annotation(uri=uri))[Segment(start, start + dur)] = spk
    return out


def read_uem(path: str | os.PathLike) -> dict[str, "Any"]:
    """UEM ``<uri> <chan> <start> <end>`` lines → {uri: pyannote Timeline} of scored regions."""
    from pyannote.core import Segment, Timeline

    out: dict[str, Timeline] = {}
    for line in Path(path).read_text().splitlines():
        p = line.split()
        if len(p) >= 4:
            out.setdefault(p[0], Timeline(uri=p[0])).add(Segment(float(p[2]), float(p[3])))
    return out


def turns_annotation(turns, uri: str):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for i, t in enumerate(turns):
        ann[Segment(t.start_s, t.end_s), i] = t.speaker
    return ann


DER_CONVENTION = "no collar (0 s), overlapping speech scored"


def reference_uem(reference):
    """The scored region when no UEM is given: one segment over the reference's extent (seconds,
    first reference turn's start to the last one's end), as a pyannote ``Timeline``.

    Set explicitly because pyannote.metrics otherwise approximates it by the union of the reference
    *and hypothesis* extents, so hypothesis speech outside the reference would change the score.
    """
    from pyannote.core import Timeline

    if not reference.get_timeline():
        raise ValueError(f"reference {reference.uri!r} has no speaker turns: nothing to score (give a UEM?)")
    return Timeline([reference.get_timeline().extent()], uri=reference.uri)


def score_der(reference, hypothesis, uem=None) -> dict[str, Any]:
    """pyannote.metrics DER components (seconds) with no collar and overlap scored.

    ``uem`` (a pyannote ``Timeline``) limits scoring to its regions; default :func:`reference_uem`.
    """
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    from pyannote.metrics.diarization import DiarizationErrorRate

    if uem is None:
        uem = reference_uem(reference)
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    d = metric(reference, hypothesis, uem=uem, detailed=True)
    return {
        "der": round(d["diarization error rate"], 4),
        "confusion": round(d["confusion"], 3),
        "missed": round(d["missed detection"], 3),
        "false_alarm": round(d["false alarm"], 3),
        "total": round(d["total"], 3),
    }


def evaluate_diarization(
    audio: str | os.PathLike,
    rttm: str | os.PathLike,
    uem: str | os.PathLike | None = None,
    pipeline=None,
    config=None,
    num_speakers: int | None = None,
    uri: str | None = None,
) -> dict[str, Any]:
    """DER of the configured diarization on one recording against an RTTM reference.

    The recording's id is ``uri`` or the audio file's stem (or the only id in the RTTM). Component
    durations (confusion, missed, false_alarm, total) are in seconds; ``der`` is their ratio.
    Scored regions: the recording's lines of ``uem``, else the reference's extent
    (:func:`reference_uem`); ``uem`` in the result names the source, ``uem_regions_s`` lists them.
    """
    from flameqa.speech.config import SpeechConfig
    from flameqa.speech.pipeline import SpeechPipeline

    refs = read_rttm(rttm)
    uri = uri or Path(audio).stem
    if uri not in refs:
        if len(refs) != 1:
            raise ValueError(f"{rttm} has no recording {uri!r} (ids: {sorted(refs)}); pass uri=")
        uri = next(iter(refs))
    if uem:
        uems = read_uem(uem)
        if uri not in uems:  # silently scoring without it would change what is scored
            raise ValueError(f"{uem} has no lines for recording {uri!r} (ids: {sorted(uems)})")
        uem_tl = uems[uri]
    else:
        uem_tl = reference_uem(refs[uri])
    if pipeline is None:
        pipeline = SpeechPipeline(config or SpeechConfig())
    t0 = time.perf_counter()
    res = pipeline.process(audio, num_speakers=num_speakers)
    dt = time.perf_counter() - t0
    hyp = turns_annotation(res.turns, uri)
    out = score_der(refs[uri], hyp, uem_tl)
    out.update(
        {
            "uri": uri,
            "scoring": DER_CONVENTION,
            "collar_s": 0.0,
            "skip_overlap": False,
            "uem": str(uem) if uem else "reference extent",
            "uem_regions_s": [[round(seg.start, 3), round(seg.end, 3)] for seg in uem_tl],
            "num_speakers_given": num_speakers,
            "speakers_found": len({t.speaker for t in res.turns}),
            "speakers_ref": len(refs[uri].labels()),
            "status": res.status,
            "rtf": round(dt / res.duration_s, 4) if res.duration_s else None,
            "model": pipeline.describe(),
        }
    )
    return out


def pool_der(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Corpus DER over several recordings: summed components over summed reference speech."""
    tot = sum(r["total"] for r in results)
    comp = {k: round(sum(r[k] for r in results), 3) for k in ("confusion", "missed", "false_alarm")}
    return {"der": round(sum(comp.values()) / tot, 4) if tot else None, **comp, "total": round(tot, 3), "scoring": DER_CONVENTION}
