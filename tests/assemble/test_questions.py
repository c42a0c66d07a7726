"""Question generators: deterministic templates; the OpenAI-compatible client against a local fake
endpoint (auth header, cache by hash, retries, fallback), and the key never in logs or files."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flameqa.assemble.config import QuestionGenConfig
from flameqa.assemble.questions import (
    ChatEndpointQuestions,
    FallbackQuestions,
    LLMError,
    TemplateQuestions,
    make_generator,
)

KEY = "sk-TESTKEY-0123456789abcdef"


class FakeChat:
    """A local ``/v1/chat/completions``: answers with a question, or with queued error statuses."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_with: list[int] = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if fake.fail_with:
                    code = fake.fail_with.pop(0)
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                answer = body["messages"][-1]["content"]
                q = f"What about {answer.split()[-1].strip('.').lower()}?"
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": f' "{q}" '}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat():
    c = FakeChat()
    yield c
    c.close()


def _files_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_template_questions_are_deterministic():
    g = TemplateQuestions()
    a = "Cooking is my favourite hobby. I make pasta every weekend."
    assert g(a) == g(a)
    assert g(a).source == "template"
    assert "your favourite hobby" in g(a).text and g(a).text.endswith("?")
    assert g("Um, yeah.").text.endswith("?")  # no topic: a generic question


def test_auto_backend_without_url_is_template(monkeypatch):
    for k in ("FLAMEQA_LLM_URL", "FLAMEQA_LLM_MODEL", "FLAMEQA_LLM_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    assert isinstance(make_generator(QuestionGenConfig()), TemplateQuestions)
    with pytest.raises(ValueError, match="FLAMEQA_LLM_URL"):
        make_generator(QuestionGenConfig(backend="llm"))


def test_llm_client_env_auth_cache_and_no_key_leak(chat, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FLAMEQA_LLM_URL", chat.url)
    monkeypatch.setenv("FLAMEQA_LLM_MODEL", "tiny-chat")
    monkeypatch.setenv("FLAMEQA_LLM_API_KEY", KEY)
    gen = make_generator(QuestionGenConfig(backend="auto", backoff_s=0.01), cache_dir=tmp_path / "cache")
    assert isinstance(gen, FallbackQuestions) and KEY not in repr(gen.primary)
    q = gen("I walked home along the river.", ["A: hello"])
    assert q.text == "What about river?" and q.source == "llm:tiny-chat" and not q.failed
    req = chat.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {KEY}"
    assert req["body"]["model"] == "tiny-chat" and req["body"]["temperature"] == 0.0
    assert "A: hello" in req["body"]["messages"][-1]["content"]
    # same request again: served from the on-disk cache, no HTTP call
    gen2 = make_generator(QuestionGenConfig(backend="auto"), cache_dir=tmp_path / "cache")
    assert gen2("I walked home along the river.", ["A: hello"]).text == "What about river?"
    assert len(chat.requests) == 1 and gen2.primary.calls == 0
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    # retries: two 5xx/429 then success
    chat.fail_with = [503, 429]
    assert gen("A new answer about bread.").text == "What about bread?"
    assert len(chat.requests) == 4
    assert KEY not in caplog.text and KEY not in _files_text(tmp_path)


def test_llm_client_fails_fast_on_auth_error_and_falls_back(chat, tmp_path, caplog):
    cfg = QuestionGenConfig(backend="llm", url=chat.url, model="m", api_key=KEY, backoff_s=0.01, retries=2)
    assert KEY not in cfg.model_dump_json() and KEY not in repr(cfg)
    llm = ChatEndpointQuestions(cfg, chat.url, "m", KEY, tmp_path)
    chat.fail_with = [401]
    with pytest.raises(LLMError, match="HTTP 401") as e:
        llm("Some answer here.")
    assert KEY not in str(e.value) and len(chat.requests) == 1  # no retry on 4xx
    chat.fail_with = [500, 500, 500]
    gen = make_generator(cfg, cache_dir=tmp_path)
    q = gen("Cooking is my favourite hobby.")
    assert q.failed and q.source == "template" and len(chat.requests) == 4
    assert KEY not in caplog.text


def test_llm_client_unreachable_endpoint_raises_after_retries(tmp_path):
    cfg = QuestionGenConfig(backend="llm", url="http://127.0.0.1:9/v1?key=secret123", model="m", retries=1, backoff_s=0.01, timeout_s=2, fallback_to_template=False)
    gen = make_generator(cfg, cache_dir=tmp_path)
    with pytest.raises(LLMError, match="after 1 retries") as e:
        gen("An answer.")
    assert "secret123" not in str(e.value)  # the query string never shows
