"""Question generators for monologue answers: a deterministic template generator and a client of an
OpenAI-compatible chat endpoint (with timeouts, retries and an on-disk cache keyed by hash).

A generator is a callable ``(answer_text, context) -> Question``; ``Question.source`` is what the
sample records as ``question_source`` (``template`` or ``llm:<model>``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from flameqa.assemble.config import QuestionGenConfig
from flameqa.security import redact_text

log = logging.getLogger(__name__)

ENV_URL, ENV_MODEL, ENV_KEY = "FLAMEQA_LLM_URL", "FLAMEQA_LLM_MODEL", "FLAMEQA_LLM_API_KEY"

_STOP = frozenset(
    """a an the and or but if so of to in on at by for with from as is are was were be been being am i you he
    she it we they me him her us them my your his its our their this that these those there here then than
    very really just also not no yes do does did done have has had will would can could should may might
    must what which who whom whose when where why how all any some each every more most much many such
    about into over after before because while again well like yeah okay oh um uh so know think said get got
    going go went one two thing things lot kind sort""".split()
)

TEMPLATES: tuple[str, ...] = (
    "Can you tell me about {topic}?",
    "What can you say about {topic}?",
    "How would you describe {topic}?",
    "What do you think about {topic}?",
    "Could you talk a little about {topic}?",
)
TEMPLATES_NO_TOPIC: tuple[str, ...] = (
    "What would you like to tell us?",
    "Can you tell me more?",
    "What happened next?",
)


@dataclass(frozen=True)
class Question:
    text: str
    source: str
    """``template`` or ``llm:<model>``."""
    failed: bool = False
    """True when the LLM failed and a template stood in."""


class QuestionGenerator(Protocol):
    def __call__(self, answer: str, context: Sequence[str] = ()) -> Question: ...


def _topic(answer: str) -> str | None:
    """A topic phrase from the answer's first sentence, addressed to the answerer.

    ``my <words>`` becomes ``your <words>`` (up to two words, stopping at punctuation or a stop
    word); otherwise the sentence's longest non-stop word with ``the``. None when nothing is found.
    """
    first = re.split(r"(?<=[.?!])\s+", answer.strip(), maxsplit=1)[0]
    raw = first.split()
    toks = [t.strip(".,;:!?\"'()[]").lower() for t in raw]
    for i, t in enumerate(toks[:-1]):
        if t in ("my", "our"):
            phrase = []
            for k in range(i + 1, min(i + 3, len(toks))):
                if not toks[k].isalpha() or toks[k] in _STOP:
                    break
                phrase.append(toks[k])
                if raw[k][-1:] in ",;:.!?":
                    break
            if phrase:
                return " ".join(["your", *phrase])
    cands = [t for t in toks if len(t) > 2 and t.isalpha() and t not in _STOP]
    if not cands:
        return None
    return "the " + max(cands, key=len)  # max() keeps the first of equal lengths: deterministic


class TemplateQuestions:
    """Deterministic questions from templates: the same answer always gets the same question."""

    source = "template"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, answer: str, context: Sequence[str] = ()) -> Question:
        h = int.from_bytes(hashlib.sha256(f"{self.seed}\0{answer}".encode()).digest()[:8], "big")
        topic = _topic(answer)
        if topic is None:
            return Question(TEMPLATES_NO_TOPIC[h % len(TEMPLATES_NO_TOPIC)], self.source)
        return Question(TEMPLATES[h % len(TEMPLATES)].format(topic=topic), self.source)


class LLMError(RuntimeError):
    """The endpoint could not produce a question (after retries); the message never holds the key."""


class ChatEndpointQuestions:
    """Questions from an OpenAI-compatible ``/chat/completions`` endpoint.

    Each request is cached on disk under ``cache_dir/<sha256>.json`` (key: url, model, prompt,
    answer, context, temperature), so reruns and resumed runs make no new calls. Timeouts,
    connection errors, 429 and 5xx are retried with exponential backoff; other HTTP errors raise
    at once. The API key is sent as a bearer token and never logged.
    """

    def __init__(self, cfg: QuestionGenConfig, url: str, model: str, api_key: str | None, cache_dir: Path | None) -> None:
        self.cfg = cfg
        self.url = url.rstrip("/")
        self.model = model
        self._key = api_key
        self.cache_dir = cache_dir
        self.source = f"llm:{model}"
        self.calls = 0
        """HTTP requests made (cache hits do not count)."""

    def __repr__(self) -> str:  # never show the key
        return f"ChatEndpointQuestions(url={self.url!r}, model={self.model!r})"

    def _endpoint(self) -> str:
        return self.url if self.url.endswith("/chat/completions") else f"{self.url}/chat/completions"

    def _shown(self) -> str:
        """The endpoint for messages: no query string or user info (either may carry a key)."""
        p = urllib.parse.urlsplit(self._endpoint())
        host = p.hostname or ""
        if p.port is not None:
            host = f"{host}:{p.port}"
        return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))

    def _payload(self, answer: str, context: Sequence[str]) -> dict:
        user = f"Answer:\n{answer}"
        if context:
            user = "Conversation so far:\n" + "\n".join(context) + "\n\n" + user
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": self.cfg.system_prompt}, {"role": "user", "content": user}],
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.reply_max_len,
        }

    def _cache_path(self, payload: dict) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(json.dumps({"url": self._endpoint(), **payload}, sort_keys=True).encode()).hexdigest()
        return self.cache_dir / f"{key}.json"

    def _post(self, payload: dict) -> dict:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        delay = self.cfg.backoff_s
        last = ""
        for attempt in range(self.cfg.retries + 1):
            req = urllib.request.Request(self._endpoint(), data=data, headers=headers, method="POST")
            self.calls += 1
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:  # noqa: S310 - URL from config
                    return json.loads(resp.read(4 << 20))
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} from {self._shown()}"
                if e.code != 429 and e.code < 500:
                    raise LLMError(last) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as e:
                last = f"{type(e).__name__} talking to {self._shown()}: {redact_text(str(getattr(e, 'reason', e)))}"
            if attempt < self.cfg.retries:
                log.warning("question endpoint: %s (retry %d/%d in %.1fs)", last, attempt + 1, self.cfg.retries, delay)
                time.sleep(delay)
                delay *= 2
        raise LLMError(f"{last} (after {self.cfg.retries} retries)")

    @staticmethod
    def _text(resp: dict) -> str:
        try:
            text = resp["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMError("the endpoint's reply has no choices[0].message.content") from None
        text = " ".join(str(text).strip().strip('"').split())
        if not text:
            raise LLMError("the endpoint replied with an empty question")
        return text

    def __call__(self, answer: str, context: Sequence[str] = ()) -> Question:
        payload = self._payload(answer, context)
        path = self._cache_path(payload)
        if path is not None and path.is_file():
            try:
                return Question(json.loads(path.read_text())["question"], self.source)
            except (json.JSONDecodeError, KeyError):
                log.warning("ignoring unreadable question cache entry %s", path)
        text = self._text(self._post(payload))
        if path is not None:
            from flameqa.io.shards import atomic_write_bytes

            atomic_write_bytes(path, json.dumps({"question": text, "model": self.model}).encode())
        return Question(text, self.source)


class FallbackQuestions:
    """The LLM generator, with a template question when it fails (``Question.failed`` set)."""

    def __init__(self, primary: ChatEndpointQuestions, fallback: TemplateQuestions) -> None:
        self.primary, self.fallback = primary, fallback
        self.source = primary.source

    def __call__(self, answer: str, context: Sequence[str] = ()) -> Question:
        try:
            return self.primary(answer, context)
        except LLMError as e:
            log.warning("question endpoint failed, using a template question: %s", e)
            q = self.fallback(answer, context)
            return Question(q.text, q.source, failed=True)


def _secret(v) -> str | None:
    s = v.get_secret_value() if v is not None and hasattr(v, "get_secret_value") else v
    # a key that went through a JSON dump (worker processes, OUT/config.yaml) is only asterisks
    return None if not s or set(s) == {"*"} else s


def make_generator(cfg: QuestionGenConfig, cache_dir: Path | None = None, seed: int = 0) -> QuestionGenerator:
    """Build the configured generator; URL/model/key fall back to ``FLAMEQA_LLM_*`` env variables."""
    url = cfg.url or os.environ.get(ENV_URL) or None
    model = cfg.model or os.environ.get(ENV_MODEL) or None
    key = _secret(cfg.api_key) or os.environ.get(ENV_KEY) or None
    use_llm = cfg.backend == "llm" or (cfg.backend == "auto" and url)
    template = TemplateQuestions(seed)
    if not use_llm:
        return template
    if not url or not model:
        raise ValueError(
            "assemble.generator.backend=llm needs an endpoint URL and a model: set assemble.generator.url/model "
            f"or the {ENV_URL}/{ENV_MODEL} environment variables"
        )
    cache = Path(cfg.cache_dir) if cfg.cache_dir else cache_dir
    llm = ChatEndpointQuestions(cfg, url, model, key, cache)
    log.info("monologue questions from %s (model %s)", llm._shown(), model)
    return FallbackQuestions(llm, template) if cfg.fallback_to_template else llm


__all__ = [
    "ChatEndpointQuestions",
    "FallbackQuestions",
    "LLMError",
    "Question",
    "QuestionGenerator",
    "TemplateQuestions",
    "make_generator",
]
