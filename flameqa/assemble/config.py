"""Config of the assemble stage: pairing rules, question generation and quality filters."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from flameqa.configbase import Config

DEFAULT_QUESTION_WORDS: tuple[str, ...] = (
    "what", "why", "how", "when", "where", "who", "whom", "whose", "which",
    "do", "does", "did", "is", "are", "was", "were", "can", "could", "would", "will", "should",
    "have", "has", "had", "may", "might", "shall", "am", "isn't", "aren't", "don't", "doesn't",
    "didn't", "won't", "wouldn't", "can't", "couldn't", "shouldn't", "haven't", "hasn't",
)  # fmt: skip


class QuestionDetectConfig(Config):
    """How a turn is recognised as a question (applied to the last sentence of a speaker's run)."""

    rule: Literal["punctuation", "question_word", "either", "regex"] = "either"
    """``punctuation``: the sentence ends with '?'. ``question_word``: it starts with one of
    ``question_words`` and does not end with '.' or '!' (an ASR that punctuated it as a statement is
    trusted). ``either``: one or the other. ``regex``: ``regex`` matches the sentence."""
    question_words: tuple[str, ...] = DEFAULT_QUESTION_WORDS
    """Lower-case first words that open a question (wh-words and inverted auxiliaries)."""
    regex: str | None = None
    """Python regex (searched, case-insensitive) for ``rule=regex``."""


class DialogueConfig(Config):
    """Dialogue mode: speaker A asks, speaker B answers on camera."""

    merge_gap_s: float = 1.0
    """Consecutive turns of one speaker separated by at most this many seconds form one run."""
    min_response_gap_s: float = -1.0
    """The answer may start this many seconds before the question ends (negative: overlap)."""
    max_response_gap_s: float = 3.0
    """The answer must start at most this many seconds after the question ends."""
    max_question_s: float = 20.0
    """A longer question run keeps only its trailing sentences within this duration; the rest
    becomes context."""
    context_turns: int = 4
    """Runs before the question kept as ``context`` (0: none)."""
    min_listen_visible_ratio: float = 0.5
    """Listening motion is attached only when at least this fraction of the question span's frames
    of the answerer are valid."""


class MonologueConfig(Config):
    """Monologue mode: sentence-aligned answer segments of one on-camera speaker."""

    max_pause_s: float = 1.5
    """A pause between words longer than this ends a sentence and a segment."""
    min_segment_s: float = 3.0
    """Shortest monologue segment, seconds (short remarks make poor answers to a generated question;
    ``filters.min_answer_s`` applies too)."""
    source: Literal["unpaired", "single_speaker_clips"] = "unpaired"
    """``unpaired``: every run of an on-camera speaker that is neither a question nor used as a
    dialogue answer; ``single_speaker_clips``: only clips where one speaker talks."""
    context_turns: int = 2
    """Runs (of any speaker) before the segment kept as ``context``."""


class QuestionGenConfig(Config):
    """Question generator for monologue segments.

    The LLM backend speaks the OpenAI-compatible ``POST {url}/chat/completions`` API. URL, model and
    key come from this config or from the environment (``FLAMEQA_LLM_URL``, ``FLAMEQA_LLM_MODEL``,
    ``FLAMEQA_LLM_API_KEY``); the key is never logged nor written (it is dumped as ``**********``).
    """

    backend: Literal["auto", "template", "llm"] = "auto"
    """``auto``: the LLM when a URL is configured (here or in the environment), else templates."""
    url: str | None = None
    """Base URL of the endpoint, e.g. ``http://localhost:8000/v1``."""
    model: str | None = None
    api_key: SecretStr | None = None
    """Prefer the ``FLAMEQA_LLM_API_KEY`` environment variable: config files get shared."""
    timeout_s: float = 30.0
    """Per-request timeout, seconds."""
    retries: int = 3
    """Retries after the first attempt on timeouts, connection errors, 429 and 5xx."""
    backoff_s: float = 1.0
    """First retry delay, seconds (doubles each retry)."""
    temperature: float = 0.0
    reply_max_len: int = 64
    """Upper bound on the reply's length in tokens (sent as the request's ``max_tokens``)."""
    system_prompt: str = (
        "You write the interviewer's question for a spoken answer. Reply with exactly one short, natural "
        "question in the answer's language that this answer responds to, and nothing else."
    )
    cache_dir: str | None = None
    """Answer cache (one JSON file per request hash); default ``OUT/cache/questions``."""
    fallback_to_template: bool = True
    """When the endpoint fails after retries: use a template question (counted in the marker as
    ``llm_failed``) instead of failing the clip."""


class FilterConfig(Config):
    """Quality filters; a candidate failing one is counted under that reason in the marker."""

    min_answer_s: float = 1.0
    """Shortest answer, seconds."""
    max_answer_s: float = 30.0
    """Longest answer, seconds (dialogue answers are cut at the last sentence end within it)."""
    min_words: int = 2
    min_face_visible_ratio: float = 0.9
    """Valid fitted frames of the answerer / frames in the answer span."""
    max_nme_mean: float | None = 0.1
    """Mean fit NME (landmark error / inter-ocular distance) over valid frames; None: no limit."""
    max_nme_max: float | None = None
    """Worst frame's NME; None: no limit."""
    max_overlap_ratio: float = 0.2
    """Fraction of the answer span during which another speaker talks."""
    min_asr_prob_mean: float = 0.5
    """Mean ASR word probability of the answer."""
    max_missing_frames: int = 12
    """Longest run of consecutive answer frames without a valid fit (half a second at 25 fps)."""


class AssembleConfig(Config):
    modes: tuple[Literal["dialogue", "monologue"], ...] = ("dialogue", "monologue")
    min_answer_s: float | None = None
    """Deprecated alias of ``filters.min_answer_s`` (kept so older pipeline files still load)."""
    max_answer_s: float | None = None
    """Deprecated alias of ``filters.max_answer_s``."""
    question: QuestionDetectConfig = QuestionDetectConfig()
    dialogue: DialogueConfig = DialogueConfig()
    monologue: MonologueConfig = MonologueConfig()
    generator: QuestionGenConfig = QuestionGenConfig()
    filters: FilterConfig = FilterConfig()
    identity: Literal["video", "video_speaker", "clip_track"] = "video"
    """Key written to ``identity`` (splits never put one identity in two splits). ``video`` is the
    safe default: speaker labels and track ids are clip-local, so a person seen in two clips of a
    video would otherwise count as two identities."""
    audio_sample_rate: int = 16000
    """Sample rate of the answer/question wav bytes, Hz (input audio is resampled when it differs)."""

    def effective_filters(self) -> FilterConfig:
        """``filters`` with the deprecated top-level answer bounds folded in."""
        upd = {k: v for k, v in (("min_answer_s", self.min_answer_s), ("max_answer_s", self.max_answer_s)) if v is not None}
        return self.filters.model_copy(update=upd) if upd else self.filters
