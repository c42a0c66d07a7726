"""Question/answer pairing: pure functions on turns and words (no I/O, no logging).

Times are seconds from the video start, as in the ``speech`` and ``words`` tables. A *run* is a
sequence of consecutive turns of one speaker; dialogue pairs are (question run of A, answer run of
B); monologue segments are sentence-aligned word ranges of one speaker within length bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

QuestionRule = Literal["punctuation", "question_word", "either", "regex"]

_SENT_SPLIT = re.compile(r"(?:(?<=[.?!…])|(?<=[.?!…][\"'”’»›)\]]))\s+")
_TRAIL = "\"'”’»›)]} \t\n"
_LEAD = "\"'“‘«‹([{¿¡ \t\n-–—"


@dataclass(frozen=True)
class Turn:
    """One diarized turn."""

    turn_id: int
    speaker: str
    start_s: float
    end_s: float
    text: str
    overlap: bool = False


@dataclass(frozen=True)
class Word:
    """One ASR word; ``word`` keeps the punctuation the ASR attached."""

    word: str
    start_s: float
    end_s: float
    prob: float
    turn_id: int | None = None
    speaker: str | None = None
    segment_id: int = -1


@dataclass(frozen=True)
class Run:
    """Consecutive turns of one speaker (the unit of questions and answers)."""

    speaker: str
    turn_ids: tuple[int, ...]
    start_s: float
    end_s: float
    text: str
    overlap: bool


@dataclass(frozen=True)
class DialoguePair:
    """Index of the question run and of the answer run in the run list."""

    question: int
    answer: int


# ---------------------------------------------------------------------------------------------
# questions


def split_sentences(text: str) -> list[str]:
    """Split text after ``.?!…`` (and closing quotes) followed by whitespace; empty parts dropped."""
    return [s.strip() for s in _SENT_SPLIT.split(text.strip()) if s.strip()]


def is_question(
    text: str,
    rule: QuestionRule = "either",
    question_words: Iterable[str] = (),
    regex: str | None = None,
) -> bool:
    """Whether ``text`` ends with a question (its last sentence is one).

    ``punctuation``: the last sentence ends with '?'. ``question_word``: it starts with one of
    ``question_words`` (lower case) and is not explicitly punctuated as a statement ('.' or '!').
    ``either``: one or the other. ``regex``: ``regex`` is found in the last sentence (ignoring case).
    """
    sents = split_sentences(text)
    if not sents:
        return False
    last = sents[-1].rstrip(_TRAIL)
    if rule == "regex":
        if not regex:
            raise ValueError("assemble.question.rule=regex needs assemble.question.regex")
        return re.search(regex, last, flags=re.IGNORECASE) is not None
    punct = last.endswith("?") or last.endswith("？")
    if rule == "punctuation":
        return punct
    first = last.lstrip(_LEAD).split(maxsplit=1)
    first_word = first[0].lower().rstrip(",;:") if first else ""
    by_word = first_word in set(question_words) and not last.endswith((".", "!", "…"))
    if rule == "question_word":
        return by_word
    return punct or by_word


# ---------------------------------------------------------------------------------------------
# runs and dialogue pairs


def merge_runs(turns: Sequence[Turn], max_gap_s: float) -> list[Run]:
    """Merge consecutive turns of the same speaker with gaps ≤ ``max_gap_s`` into runs.

    ``turns`` are sorted by start time first; another speaker's turn in between always ends a run.
    """
    runs: list[Run] = []
    for t in sorted(turns, key=lambda t: (t.start_s, t.turn_id)):
        if runs and runs[-1].speaker == t.speaker and t.start_s - runs[-1].end_s <= max_gap_s:
            r = runs[-1]
            runs[-1] = Run(
                speaker=r.speaker,
                turn_ids=r.turn_ids + (t.turn_id,),
                start_s=r.start_s,
                end_s=max(r.end_s, t.end_s),
                text=f"{r.text} {t.text}".strip(),
                overlap=r.overlap or t.overlap,
            )
        else:
            runs.append(Run(t.speaker, (t.turn_id,), t.start_s, t.end_s, t.text.strip(), t.overlap))
    return runs


def pair_dialogue(
    runs: Sequence[Run],
    is_q: Sequence[bool],
    min_gap_s: float = -1.0,
    max_gap_s: float = 3.0,
) -> tuple[list[DialoguePair], list[tuple[int, str]]]:
    """Pair each question run with the next run when another speaker starts it in time.

    ``is_q[i]`` says whether run ``i`` asks. The answer is run ``i+1`` when its speaker differs and
    its start lies in ``[end_i + min_gap_s, end_i + max_gap_s]``. Returns the pairs and the
    rejected question runs as ``(run index, reason)`` with reason ``no_answer``.
    """
    pairs: list[DialoguePair] = []
    rejected: list[tuple[int, str]] = []
    for i, q in enumerate(runs):
        if not is_q[i]:
            continue
        nxt = runs[i + 1] if i + 1 < len(runs) else None
        if nxt is None or nxt.speaker == q.speaker or not (q.end_s + min_gap_s <= nxt.start_s <= q.end_s + max_gap_s):
            rejected.append((i, "no_answer"))
            continue
        pairs.append(DialoguePair(question=i, answer=i + 1))
    return pairs, rejected


# ---------------------------------------------------------------------------------------------
# sentences and segments over words


def _ends_sentence(word: str) -> bool:
    return word.rstrip(_TRAIL).endswith((".", "?", "!", "…", "。", "？", "！"))


def sentence_spans(words: Sequence[Word], max_pause_s: float = 1.5) -> list[tuple[int, int]]:
    """Sentences as half-open word index ranges ``[i, j)``.

    A sentence ends after a word with terminal punctuation, where the ASR segment changes, or
    before a pause longer than ``max_pause_s`` seconds. ``words`` must be in time order.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for k, w in enumerate(words):
        last = k == len(words) - 1
        nxt = None if last else words[k + 1]
        brk = (
            last
            or _ends_sentence(w.word)
            or (nxt is not None and nxt.segment_id != w.segment_id and w.segment_id >= 0)
            or (nxt is not None and nxt.start_s - w.end_s > max_pause_s)
        )
        if brk:
            spans.append((start, k + 1))
            start = k + 1
    return spans


def span_seconds(words: Sequence[Word], i: int, j: int) -> float:
    """Duration of words ``[i, j)``: first start to last end, seconds."""
    return float(words[j - 1].end_s - words[i].start_s) if j > i else 0.0


def head_within(words: Sequence[Word], spans: Sequence[tuple[int, int]], max_s: float) -> tuple[int, int] | None:
    """The longest prefix of whole sentences lasting ≤ ``max_s``: a word range, or None when the
    first sentence alone is longer."""
    best = None
    for _, j in spans:
        if span_seconds(words, spans[0][0], j) <= max_s:
            best = (spans[0][0], j)
        else:
            break
    return best


def tail_within(words: Sequence[Word], spans: Sequence[tuple[int, int]], max_s: float) -> tuple[int, int] | None:
    """The longest suffix of whole sentences lasting ≤ ``max_s`` (None when the last sentence alone
    is longer)."""
    best = None
    end = spans[-1][1]
    for i, _ in reversed(spans):
        if span_seconds(words, i, end) <= max_s:
            best = (i, end)
        else:
            break
    return best


def pack_segments(
    words: Sequence[Word],
    spans: Sequence[tuple[int, int]],
    min_s: float,
    max_s: float,
    max_pause_s: float = 1.5,
) -> tuple[list[tuple[int, int]], list[str]]:
    """Greedily pack consecutive sentences into segments lasting ``[min_s, max_s]`` seconds.

    A segment grows sentence by sentence while it stays ≤ ``max_s`` and the pause before the next
    sentence is ≤ ``max_pause_s``. Returns the kept word ranges and one reason per dropped segment
    (``too_short``: a finished segment under ``min_s``; ``too_long``: a single sentence over ``max_s``).
    """
    kept: list[tuple[int, int]] = []
    dropped: list[str] = []
    cur: tuple[int, int] | None = None

    def close(seg: tuple[int, int] | None) -> None:
        if seg is None:
            return
        if span_seconds(words, *seg) < min_s:
            dropped.append("too_short")
        else:
            kept.append(seg)

    for i, j in spans:
        if span_seconds(words, i, j) > max_s:
            close(cur)
            cur = None
            dropped.append("too_long")
            continue
        if cur is not None and span_seconds(words, cur[0], j) <= max_s and words[i].start_s - words[cur[1] - 1].end_s <= max_pause_s:
            cur = (cur[0], j)
        else:
            close(cur)
            cur = (i, j)
    close(cur)
    return kept, dropped


def join_words(words: Sequence[Word]) -> str:
    """Text of words as the ASR wrote them (punctuation attached), single-spaced."""
    return " ".join(w.word.strip() for w in words if w.word.strip())


# ---------------------------------------------------------------------------------------------
# spans, frames and metrics


def overlap_ratio(start_s: float, end_s: float, others: Iterable[tuple[float, float]]) -> float:
    """Fraction of ``[start_s, end_s)`` covered by the union of the ``others`` intervals."""
    dur = end_s - start_s
    if dur <= 0:
        return 0.0
    iv = sorted((max(a, start_s), min(b, end_s)) for a, b in others if b > start_s and a < end_s)
    covered, cur_a, cur_b = 0.0, None, None
    for a, b in iv:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                covered += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        covered += cur_b - cur_a
    return float(min(1.0, covered / dur))


def expected_frames(clip_start_s: float, fps: float, start_s: float, end_s: float) -> np.ndarray:
    """Clip frame indices ``k`` whose time ``clip_start_s + k/fps`` lies in ``[start_s, end_s)``."""
    eps = 1e-6
    k0 = max(0, int(np.ceil((start_s - clip_start_s) * fps - eps)))
    k1 = int(np.ceil((end_s - clip_start_s) * fps - eps))
    return np.arange(k0, max(k0, k1), dtype=np.int64)


def longest_false_run(mask: np.ndarray) -> int:
    """Length of the longest run of False in a boolean vector."""
    best = cur = 0
    for v in np.asarray(mask, bool):
        cur = 0 if v else cur + 1
        best = max(best, cur)
    return best


def sample_id(clip_id: str, mode: Literal["dialogue", "monologue"], turn_id: int, part: int = 0) -> str:
    """Deterministic sample id: ``<clip_id>.d<turn>`` (answer turn) or ``<clip_id>.m<turn>s<part>``."""
    if mode == "dialogue":
        return f"{clip_id}.d{turn_id:04d}"
    return f"{clip_id}.m{turn_id:04d}s{part:02d}"
