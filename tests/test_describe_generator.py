"""The description generator against a scripted local chat-completions server (loopback only)."""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kmat.knowledge.descriptions import validate_descriptions
from kmat.tools import describe as gen
from kmat.tools.describe import (
    GeneratorError,
    backoff_delay,
    build_messages,
    generate_descriptions,
    normalise_sentence,
    parse_sentences,
)

CLASSES = [("mel", "melanoma"), ("bcc", "basal cell carcinoma")]
MODALITIES = [("derm", "dermoscopy"), ("clin", "clinical photograph")]
KEY = "sk-test-secret-123"

Reply = tuple[int, dict[str, str], bytes]


def chat(content: str) -> Reply:
    """A well-formed chat-completions answer carrying ``content``."""
    body = {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }
    return 200, {}, json.dumps(body).encode()


def status(code: int, headers: dict[str, str] | None = None) -> Reply:
    """An error answer with a small JSON body."""
    return code, headers or {}, json.dumps({"error": {"message": f"status {code}"}}).encode()


class FakeLLM:
    """Scripted replies first, then ``default`` (fresh, distinct, valid sentences)."""

    def __init__(self) -> None:
        self.script: list[Reply | Callable[[], Reply]] = []
        self.requests: list[dict] = []
        self.counter = itertools.count(1)
        self.per_answer = 3
        self.fail_after: int | None = None  # after this many requests, answer 500
        self.delay_first: float = 0.0
        self.base_url = ""

    def sentence(self) -> str:
        i = next(self.counter)
        return f"Sample finding {i} shows a distinctive pattern number {i} typical of this view."

    def default(self) -> Reply:
        return chat(json.dumps([self.sentence() for _ in range(self.per_answer)]))

    def reply(self) -> Reply:
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            return status(500)
        if self.script:
            item = self.script.pop(0)
            return item() if callable(item) else item
        return self.default()

    def pairs(self) -> list[tuple[str, str]]:
        """(modality name, class name) of every request, from the prompt's first line."""
        out = []
        for r in self.requests:
            first = r["body"]["messages"][-1]["content"].splitlines()[0]
            m = re.match(r"Imaging modality: (.+)\. Finding: (.+)\.$", first)
            assert m, first
            out.append((m.group(1), m.group(2)))
        return out


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # client timeouts: broken pipes
        pass


@pytest.fixture()
def llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fake.requests.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(raw),
                }
            )
            if fake.delay_first and len(fake.requests) == 1:
                time.sleep(fake.delay_first)
            code, headers, body = fake.reply()
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run(fake: FakeLLM, out: Path, sleeps: list[float] | None = None, **kw) -> dict:
    kw.setdefault("n", 5)
    kw.setdefault("classes", CLASSES)
    kw.setdefault("modalities", MODALITIES)
    return generate_descriptions(
        out=out,
        model="test-model",
        base_url=fake.base_url,
        api_key=kw.pop("api_key", KEY),
        progress=False,
        sleep=(sleeps if sleeps is not None else []).append,
        timeout=5,
        **kw,
    )


def check_file(path: Path, n: int, classes=CLASSES, modalities=MODALITIES) -> dict:
    """The file is valid, complete, de-duplicated and within the word limits."""
    data = json.loads(path.read_text(encoding="utf-8"))
    validate_descriptions(data, [c for c, _ in classes], [m for m, _ in modalities], str(path), n)
    for m, _ in modalities:
        for c, _ in classes:
            items = data[m][c]
            assert len(items) == n
            assert len({normalise_sentence(s) for s in items}) == n
            assert all(8 <= len(s.split()) <= 40 for s in items)
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# Happy path
# ------------------------------------------------------------------------------------------------

GOOD_A = "Dermoscopy of melanoma shows an atypical pigment network with irregular streaks."
GOOD_B = "Blue-white veil over a raised area is a classic dermoscopic clue of melanoma."
GOOD_C = "An asymmetric lesion with many colours and irregular dots suggests melanoma."
LONG = " ".join(["word"] * 45)


def test_generates_complete_deduplicated_file(llm, tmp_path):
    fenced = (
        "Here you go:\n```json\n"
        + json.dumps(
            [
                GOOD_A,
                "  DERMOSCOPY of melanoma shows an atypical pigment  network, with irregular streaks!",
                "Too short to use.",
                LONG,
                GOOD_B,
            ]
        )
        + "\n```\n"
    )
    lines = f'Here are more sentences about this:\n1. {GOOD_C}\n- {GOOD_A}\n2) "{GOOD_C.upper()}"\n'
    llm.script = [chat(fenced), chat(lines)]
    out = tmp_path / "sub" / "descriptions.json"
    result = run(llm, out, task_hint="skin lesion classification", n=5)

    data = check_file(out, 5)
    assert result == data
    assert list(data) == ["derm", "clin"] and list(data["derm"]) == ["mel", "bcc"]
    mel = data["derm"]["mel"]
    assert mel[:3] == [GOOD_A, GOOD_B, GOOD_C]  # near-duplicates, short, long and lead-ins dropped
    assert not any(s.startswith(("1", "-", '"')) or s.endswith(":") for s in mel)

    first = llm.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["authorization"] == f"Bearer {KEY}"
    assert first["headers"]["content-type"] == "application/json"
    body = first["body"]
    assert body["model"] == "test-model" and isinstance(body["temperature"], float)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    prompt = body["messages"][-1]["content"]
    assert "dermoscopy" in prompt and "melanoma" in prompt and "basal cell carcinoma" in prompt
    assert "Context: skin lesion classification" in prompt and "JSON array" in prompt
    assert "Write 5 distinct sentences" in prompt
    # later requests for the same pair quote what was already collected
    assert GOOD_A in llm.requests[1]["body"]["messages"][-1]["content"]
    # pairs are filled in order: modality by modality, class by class
    order = list(dict.fromkeys(llm.pairs()))
    assert order == [
        ("dermoscopy", "melanoma"),
        ("dermoscopy", "basal cell carcinoma"),
        ("clinical photograph", "melanoma"),
        ("clinical photograph", "basal cell carcinoma"),
    ]
    assert not list(out.parent.glob("*.tmp"))  # atomic writes leave no temporaries


def test_api_key_from_environment(llm, tmp_path, monkeypatch):
    kw = {"classes": CLASSES[:1], "modalities": MODALITIES[:1], "n": 3, "api_key": None}
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key")
    monkeypatch.setenv("KMAT_LLM_API_KEY", "kmat-key")
    run(llm, tmp_path / "a.json", **kw)
    assert llm.requests[-1]["headers"]["authorization"] == "Bearer kmat-key"
    monkeypatch.delenv("KMAT_LLM_API_KEY")
    run(llm, tmp_path / "b.json", **kw)
    assert llm.requests[-1]["headers"]["authorization"] == "Bearer openai-key"
    monkeypatch.delenv("OPENAI_API_KEY")
    run(llm, tmp_path / "c.json", **kw)
    assert "authorization" not in llm.requests[-1]["headers"]


# ------------------------------------------------------------------------------------------------
# Retries
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        (200, {}, b"<html>oops, not json</html>"),
        (200, {}, json.dumps({"error": "no choices here"}).encode()),
        (200, {}, json.dumps({"choices": [{"message": {"role": "assistant"}}]}).encode()),
    ],
    ids=["not-json", "no-choices", "no-content"],
)
def test_malformed_answer_is_retried(llm, tmp_path, bad):
    llm.script = [bad]
    sleeps: list[float] = []
    out = tmp_path / "d.json"
    run(llm, out, sleeps, classes=CLASSES[:1], modalities=MODALITIES[:1], n=3)
    check_file(out, 3, CLASSES[:1], MODALITIES[:1])
    assert len(llm.requests) == 2
    assert sleeps == [backoff_delay(1)]


def test_429_honours_retry_after(llm, tmp_path):
    llm.script = [status(429, {"Retry-After": "7"}), status(429)]
    sleeps: list[float] = []
    out = tmp_path / "d.json"
    run(llm, out, sleeps, classes=CLASSES[:1], modalities=MODALITIES[:1], n=3)
    check_file(out, 3, CLASSES[:1], MODALITIES[:1])
    assert sleeps == [7.0, backoff_delay(2)]  # then the exponential back-off without a header


def test_500_then_success(llm, tmp_path):
    llm.script = [status(500), status(503)]
    sleeps: list[float] = []
    out = tmp_path / "d.json"
    run(llm, out, sleeps, n=3)
    check_file(out, 3)
    assert sleeps == [backoff_delay(1), backoff_delay(2)]
    assert 0 < sleeps[0] < sleeps[1]


def test_timeout_is_retried(llm, tmp_path):
    llm.delay_first = 0.8
    sleeps: list[float] = []
    out = tmp_path / "d.json"
    generate_descriptions(
        CLASSES[:1],
        MODALITIES[:1],
        out,
        "test-model",
        base_url=llm.base_url,
        api_key=KEY,
        n=3,
        timeout=0.3,
        progress=False,
        sleep=sleeps.append,
    )
    check_file(out, 3, CLASSES[:1], MODALITIES[:1])
    assert len(sleeps) == 1


def test_retries_exhausted_raise_clear_error(llm, tmp_path):
    llm.fail_after = 0
    sleeps: list[float] = []
    with pytest.raises(GeneratorError) as info:
        run(llm, tmp_path / "d.json", sleeps, max_retries=3)
    msg = str(info.value)
    assert f"{llm.base_url}/chat/completions" in msg and "HTTP 500" in msg
    assert "after 4 attempt(s)" in msg and "derm/mel" in msg
    assert len(llm.requests) == 4
    assert sleeps == [backoff_delay(i) for i in (1, 2, 3)]
    assert sleeps == sorted(sleeps)
    assert not (tmp_path / "d.json").exists()


def test_client_error_fails_fast_without_leaking_key(llm, tmp_path):
    llm.script = [(401, {}, json.dumps({"error": f"bad key {KEY}"}).encode())]
    sleeps: list[float] = []
    with pytest.raises(GeneratorError) as info:
        run(llm, tmp_path / "d.json", sleeps)
    msg = str(info.value)
    assert "HTTP 401" in msg and "API key" in msg and KEY not in msg
    assert len(llm.requests) == 1 and sleeps == []


def test_unreachable_endpoint_keeps_partial_file(tmp_path):
    out = tmp_path / "d.json"
    partial = {"derm": {"mel": [GOOD_A, GOOD_B]}}
    out.write_text(json.dumps(partial, indent=2), encoding="utf-8")
    before = out.read_bytes()
    port = free_port()
    sleeps: list[float] = []
    start = time.monotonic()
    with pytest.raises(GeneratorError) as info:
        generate_descriptions(
            CLASSES,
            MODALITIES,
            out,
            "test-model",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=KEY,
            n=5,
            max_retries=2,
            timeout=2,
            progress=False,
            sleep=sleeps.append,
        )
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in msg
    assert "after 3 attempt(s)" in msg and "connection" in msg.lower() and "refused" in msg.lower()
    assert KEY not in msg
    assert len(sleeps) == 2
    assert out.read_bytes() == before
    assert json.loads(out.read_text(encoding="utf-8")) == partial


# ------------------------------------------------------------------------------------------------
# Resumption and failure handling
# ------------------------------------------------------------------------------------------------


def test_resume_requests_only_missing(llm, tmp_path):
    out = tmp_path / "d.json"
    done = [f"Existing sentence number {i} about a dermoscopic melanoma pattern." for i in range(5)]
    partial = {
        "derm": {"mel": done, "bcc": [s.replace("melanoma", "carcinoma") for s in done]},
        "clin": {"mel": [GOOD_A, GOOD_B]},
        "extra_modality": {"x": ["kept as it is, even though nobody asked for it here ok"]},
    }
    out.write_text(json.dumps(partial), encoding="utf-8")
    result = run(llm, out, n=5)
    data = check_file(out, 5)
    assert result == data
    assert data["derm"] == partial["derm"]
    assert data["clin"]["mel"][:2] == [GOOD_A, GOOD_B]
    assert data["extra_modality"] == partial["extra_modality"]
    assert set(llm.pairs()) == {
        ("clinical photograph", "melanoma"),
        ("clinical photograph", "basal cell carcinoma"),
    }
    assert "Write 3 distinct sentences" in llm.requests[0]["body"]["messages"][-1]["content"]
    n_requests = len(llm.requests)
    run(llm, out, n=5)  # complete: nothing to ask
    assert len(llm.requests) == n_requests


def test_failure_midway_leaves_valid_file_and_resumes(llm, tmp_path):
    out = tmp_path / "d.json"
    llm.fail_after = 2  # two good answers (one per pair with n=3), then 500s
    with pytest.raises(GeneratorError, match="clin/mel"):
        run(llm, out, n=3, max_retries=1)
    partial = json.loads(out.read_text(encoding="utf-8"))
    assert partial == {"derm": {"mel": partial["derm"]["mel"], "bcc": partial["derm"]["bcc"]}}
    assert all(len(v) == 3 for v in partial["derm"].values())

    llm.fail_after = None
    llm.requests.clear()
    run(llm, out, n=3)
    data = check_file(out, 3)
    assert data["derm"] == partial["derm"]
    assert {m for m, _ in llm.pairs()} == {"clinical photograph"}


def test_stalled_model_gives_up_with_partial_file(llm, tmp_path):
    same = [GOOD_A, GOOD_B, GOOD_C]
    llm.script = [chat(json.dumps(same)) for _ in range(10)]
    out = tmp_path / "d.json"
    with pytest.raises(GeneratorError, match="added no new valid sentence"):
        run(llm, out, classes=CLASSES[:1], modalities=MODALITIES[:1], n=5, max_stalls=2)
    assert json.loads(out.read_text(encoding="utf-8")) == {"derm": {"mel": same}}
    assert len(llm.requests) == 3


def test_unreadable_existing_file_is_left_alone(llm, tmp_path):
    out = tmp_path / "d.json"
    out.write_text("{not json", encoding="utf-8")
    with pytest.raises(GeneratorError, match="not readable JSON"):
        run(llm, out)
    assert out.read_text(encoding="utf-8") == "{not json"
    assert llm.requests == []


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_descriptions([], MODALITIES, Path("x.json"), "m", progress=False)
    with pytest.raises(ValueError):
        generate_descriptions(CLASSES * 2, MODALITIES, Path("x.json"), "m", progress=False)
    with pytest.raises(ValueError):
        generate_descriptions(CLASSES, MODALITIES, Path("x.json"), "m", base_url="ftp://x")


# ------------------------------------------------------------------------------------------------
# Units: parsing, prompt
# ------------------------------------------------------------------------------------------------


def test_parse_sentences_variants():
    assert parse_sentences(json.dumps(["a b", " c  d "])) == ["a b", "c d"]
    assert parse_sentences('```json\n["one", "two"]\n```') == ["one", "two"]
    assert parse_sentences('Sure! ["one", "two"] Hope it helps.') == ["one", "two"]
    assert parse_sentences('{"descriptions": ["one", "two"]}') == ["one", "two"]
    text = '1. First one.\n2) Second one.\n- Third one.\n* "Fourth one."\n\n\u2022 Fifth one.'
    assert parse_sentences(text) == ["First one.", "Second one.", "Third one.", "Fourth one.", "Fifth one."]
    assert parse_sentences("") == []


def test_normalise_sentence():
    a, b = "  Blue-white VEIL,  seen!", "blue white veil seen"
    assert normalise_sentence(a) == normalise_sentence(b)


def test_prompt_is_documented_and_filled():
    for line in gen.PROMPT_TEMPLATE.splitlines():
        assert line.strip() in gen.__doc__
    msgs = build_messages(
        "melanoma", "dermoscopy", 7, ["nevus", "basal cell carcinoma"], task_hint="ISIC", avoid=[GOOD_A]
    )
    user = msgs[-1]["content"]
    assert user.startswith("Imaging modality: dermoscopy. Finding: melanoma.\nWrite 7 distinct")
    assert "(nevus, basal cell carcinoma)" in user and "Context: ISIC\n" in user
    assert f"- {GOOD_A}\n" in user and "8 to 40 words" in user
    assert "{" not in user


def test_retry_after_parsing():
    assert gen._retry_after("3") == 3.0
    assert gen._retry_after(None) is None and gen._retry_after("soon") is None
    assert gen._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a past date: no wait
    assert gen._retry_after("100000") == gen.MAX_RETRY_AFTER


def test_truncated_pretty_printed_array_is_salvaged():
    text = f'[\n  "{GOOD_A}",\n  "{GOOD_B}",\n  "An unfinished sent'
    assert parse_sentences(text)[:2] == [GOOD_A, GOOD_B]


def test_kmat_describe_command(llm, toy_task, tmp_path, capsys, monkeypatch):
    """`kmat describe --task FOLDER` against the local server writes a loadable descriptions file."""
    from kmat.cli import main
    from kmat.data.task import load_task
    from kmat.knowledge.descriptions import load_descriptions

    monkeypatch.setenv("KMAT_LLM_API_KEY", KEY)
    out = toy_task / "descriptions.json"
    out.unlink()
    code = main(
        [
            "describe",
            "--task",
            str(toy_task),
            "--model",
            "test-model",
            "--base-url",
            llm.base_url,
            "--n",
            "4",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = load_descriptions(load_task(toy_task), min_count=4)
    assert set(data) == {"hiscan", "loscan"} and all(len(v) == 4 for b in data.values() for v in b.values())
    assert llm.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert main(["describe", "--show", str(toy_task), "--limit", "1"]) == 0
    assert "[loscan / malignant] 4 descriptions" in capsys.readouterr().out


def test_kmat_describe_unreachable_endpoint(toy_task, tmp_path, capsys):
    from kmat.cli import main

    code = main(
        [
            "describe",
            "--task",
            str(toy_task),
            "--model",
            "m",
            "--base-url",
            f"http://127.0.0.1:{free_port()}/v1",
            "--max-retries",
            "0",
            "--out",
            str(tmp_path / "d.json"),
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "Connection refused" in err or "connection" in err.lower()
