"""Write clinical description files with any OpenAI-compatible chat-completions endpoint.

:func:`generate_descriptions` asks ``POST {base_url}/chat/completions`` for sentences describing
each class as it appears in each imaging modality, until every (modality, class) pair has ``n``
distinct ones, and writes the usual ``{modality: {class: [sentence, ...]}}`` file (the format of
``kmat/knowledge/data/*.json``).

The user message sent for one (modality, class) batch is :data:`PROMPT_TEMPLATE`, filled in
(``{context}`` is ``"Context: <task_hint>"`` plus a new line when a hint is given, else empty;
``{avoid}`` lists up to :data:`AVOID_SHOWN` sentences already collected for the pair)::

    Imaging modality: {modality_name}. Finding: {class_name}.
    Write {count} distinct sentences describing how this finding appears in this modality.
    {context}Rules:
    - Describe what the finding looks like in {modality_name} specifically: the features a reader
      sees in this modality (for example dermoscopic structures rather than the naked-eye clinical
      appearance, or mammographic rather than sonographic features).
    - Be clinically accurate and specific; vary the features, wording and sentence structure.
    - Each sentence is self-contained, names the finding, and is 8 to 40 words long.
    - One sentence per item: no numbering, bullets, headings or commentary.
    - Do not name any other class of this task ({other_classes}) as the answer.
    {avoid}Answer with a JSON array of {count} strings and nothing else.

with the system message :data:`SYSTEM_PROMPT`. Answers are parsed leniently (code fences are
stripped; a JSON array, or failing that one sentence per line with list markers removed), items
outside 8-40 words are dropped, and exact or near-exact duplicates (same text after folding case,
whitespace and punctuation) are removed within each (modality, class) list, across requests.

Robustness: HTTP 429 (honouring ``Retry-After``), 5xx, connection errors, timeouts and malformed
answers are retried with exponential back-off up to ``max_retries`` times, then a
:class:`GeneratorError` says what happened. The output file is rewritten atomically after every
request that adds sentences, so it is always valid JSON; a new run loads it and requests only
what is still missing.

Offline, :func:`stub_descriptions` / :func:`write_stub_descriptions` write a template file instead:
:data:`STUB_TEMPLATES` filled with each class and modality name, marked with the top-level
``"_template"`` key (:data:`kmat.knowledge.descriptions.TEMPLATE_KEY`) so that runs using it are
recorded as template-only. A generator run whose output file is such a template replaces it.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import re
import string
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kmat.errors import ConfigError, GeneratorError
from kmat.knowledge.descriptions import TEMPLATE_KEY, is_template
from kmat.utils.progress import progress as progress_bar

__all__ = [
    "AVOID_SHOWN",
    "GeneratorError",
    "MAX_WORDS",
    "MIN_WORDS",
    "PROMPT_TEMPLATE",
    "SYSTEM_PROMPT",
    "backoff_delay",
    "build_messages",
    "generate_descriptions",
    "STUB_TEMPLATES",
    "stub_descriptions",
    "write_stub_descriptions",
    "normalise_sentence",
    "parse_sentences",
    "word_count_ok",
]

MIN_WORDS = 8
MAX_WORDS = 40
AVOID_SHOWN = 20  # at most this many already-collected sentences are quoted back in the prompt
MAX_RETRY_DELAY = 60.0  # cap of the exponential back-off, seconds
MAX_RETRY_AFTER = 300.0  # cap of a server's Retry-After, seconds

SYSTEM_PROMPT = (
    "You are an expert in medical imaging (radiology and dermatology) writing short, accurate "
    "descriptions of imaging findings for a medical image-text dataset. "
    "You always answer with a JSON array of strings and nothing else."
)

PROMPT_TEMPLATE = """\
Imaging modality: {modality_name}. Finding: {class_name}.
Write {count} distinct sentences describing how this finding appears in this modality.
{context}Rules:
- Describe what the finding looks like in {modality_name} specifically: the features a reader
  sees in this modality (for example dermoscopic structures rather than the naked-eye clinical
  appearance, or mammographic rather than sonographic features).
- Be clinically accurate and specific; vary the features, wording and sentence structure.
- Each sentence is self-contained, names the finding, and is 8 to 40 words long.
- One sentence per item: no numbering, bullets, headings or commentary.
- Do not name any other class of this task ({other_classes}) as the answer.
{avoid}Answer with a JSON array of {count} strings and nothing else.
"""

Descriptions = dict[str, dict[str, list[str]]]
Sleep = Callable[[float], object]


# --------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------


def build_messages(
    class_name: str,
    modality_name: str,
    count: int,
    other_classes: Iterable[str] = (),
    task_hint: str = "",
    avoid: Iterable[str] = (),
) -> list[dict[str, str]]:
    """The chat messages (system + user) asking for ``count`` sentences for one pair."""
    others = ", ".join(other_classes) or "none"
    context = f"Context: {task_hint.strip()}\n" if task_hint.strip() else ""
    shown = list(avoid)[-AVOID_SHOWN:]
    avoid_text = ""
    if shown:
        avoid_text = "Already written, do not repeat or paraphrase these:\n" + "".join(
            f"- {s}\n" for s in shown
        )
    user = PROMPT_TEMPLATE.format(
        count=count,
        class_name=class_name,
        modality_name=modality_name,
        other_classes=others,
        context=context,
        avoid=avoid_text,
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------------------------
# Parsing and filtering
# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_LIST_MARKER = re.compile(r"^\s*(?:[-*+\u2022\u2023\u2013\u2014]+|\(?\d{1,3}[.):]|#+)\s*")
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"
_PUNCT_CHARS = string.punctuation + "\u2013\u2014\u2018\u2019\u201c\u201d"
_PUNCT = str.maketrans({c: " " for c in _PUNCT_CHARS})


def _strip_fences(text: str) -> str:
    """The inside of the first fenced code block, if there is one; otherwise the text."""
    m = _FENCE.search(text)
    return m.group(1) if m else text


def _json_items(text: str) -> list[str] | None:
    """Strings of a JSON array (or of the first list inside a JSON object), else None."""
    candidates = [text]
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for cand in candidates:
        try:
            data = json.loads(cand)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if isinstance(data, list):
            return [x for x in data if isinstance(x, str)]
    return None


def _clean_item(item: str) -> str:
    """One sentence without list markers, surrounding quotes, trailing commas or extra spaces."""
    s = " ".join(item.split())
    s = _LIST_MARKER.sub("", s, count=1).strip().rstrip(",").strip()
    if len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES:
        s = s[1:-1].strip()
    return s


def parse_sentences(text: str) -> list[str]:
    """Sentences of a model answer: a JSON array (fenced or not), else one sentence per line.

    Items are cleaned (list markers, quotes and extra whitespace removed) but not filtered.
    """
    body = _strip_fences(text).strip()
    items = _json_items(body)
    if items is None:
        items = [line for line in body.splitlines() if line.strip() not in ("[", "]", "```")]
    return [s for s in (_clean_item(i) for i in items) if s]


def word_count_ok(sentence: str, lo: int = MIN_WORDS, hi: int = MAX_WORDS) -> bool:
    """Whether a sentence has between ``lo`` and ``hi`` words (inclusive)."""
    return lo <= len(sentence.split()) <= hi


def normalise_sentence(sentence: str) -> str:
    """The de-duplication key: lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(sentence.casefold().translate(_PUNCT).split())


def _add_new(target: list[str], seen: set[str], candidates: Iterable[str], limit: int) -> int:
    """Append valid, unseen candidates to ``target`` until it holds ``limit``; how many were added.

    Valid: 8-40 words and not a lead-in line ending in a colon ("Here are the sentences:").
    """
    added = 0
    for s in candidates:
        if len(target) >= limit:
            break
        key = normalise_sentence(s)
        if not key or key in seen or not word_count_ok(s) or s.endswith(":"):
            continue
        seen.add(key)
        target.append(s)
        added += 1
    return added


# --------------------------------------------------------------------------------------------
# HTTP with retries
# --------------------------------------------------------------------------------------------


class _Retryable(Exception):
    """A failed attempt worth repeating; ``wait`` is the server's Retry-After, if any."""

    def __init__(self, message: str, status: int | None = None, wait: float | None = None):
        super().__init__(message)
        self.status = status
        self.wait = wait


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - time.time()
    return min(max(secs, 0.0), MAX_RETRY_AFTER)


def backoff_delay(attempt: int, base: float = 1.0) -> float:
    """Delay before retry number ``attempt`` (1, 2, ...): doubling, capped, small fixed jitter."""
    jitter = 0.05 * base * ((attempt * 7) % 5)  # deterministic, de-synchronises parallel runs
    return min(base * 2 ** (attempt - 1), MAX_RETRY_DELAY) + jitter


def _redact(text: str, secret: str | None) -> str:
    """``text`` with the API key (if any) masked."""
    return text.replace(secret, "***") if secret else text


def _error_excerpt(err: urllib.error.HTTPError) -> str:
    """The start of an HTTP error body, for messages."""
    try:
        body = err.read(500).decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException):
        body = ""
    body = " ".join(body.split())
    return f": {body[:300]}" if body else ""


def _content_of(raw: bytes, status: int) -> str:
    """The message text of a chat-completions response body, or raise ``_Retryable``."""
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as err:
        snippet = " ".join(raw[:200].decode("utf-8", errors="replace").split())
        raise _Retryable(
            f"malformed answer (not JSON: {err}; body starts {snippet!r})", status=status
        ) from err
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise _Retryable(f"malformed answer (no 'choices'; got {keys})", status=status)
    choice = choices[0]
    content = None
    if isinstance(choice, dict):
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else choice.get("text")
    if not isinstance(content, str):
        raise _Retryable("malformed answer (choices[0].message.content is not a string)", status=status)
    return content


class _ChatClient:
    """POSTs chat-completions requests to one endpoint, retrying transient failures."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        temperature: float,
        timeout: float,
        max_retries: int,
        sleep: Sleep,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.temperature = temperature
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.sleep = sleep

    def _request(self, messages: list[dict[str, str]]) -> urllib.request.Request:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode("utf-8")
        return urllib.request.Request(self.url, data=data, headers=headers, method="POST")

    def _attempt(self, messages: list[dict[str, str]]) -> str:
        """One POST; the answer text, or ``_Retryable`` / ``GeneratorError``."""
        try:
            with urllib.request.urlopen(self._request(messages), timeout=self.timeout) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            detail = _redact(f"HTTP {err.code} {err.reason}{_error_excerpt(err)}", self.api_key)
            if err.code in (408, 429) or err.code >= 500:
                wait = _retry_after(err.headers.get("Retry-After")) if err.code == 429 else None
                raise _Retryable(detail, status=err.code, wait=wait) from err
            hint = " (check the API key)" if err.code in (401, 403) else ""
            hint = hint or (" (check the base URL and the model name)" if err.code == 404 else "")
            raise GeneratorError(
                f"{self.url}: request refused with {detail}{hint}; model {self.model!r}"
            ) from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout:g}s") from err
            raise _Retryable(f"connection error: {err.reason}") from err
        except TimeoutError as err:
            raise _Retryable(f"timed out after {self.timeout:g}s") from err
        except (OSError, http.client.HTTPException) as err:
            raise _Retryable(f"connection error: {type(err).__name__}: {err}") from err
        return _content_of(raw, status)

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The answer text, after up to ``max_retries`` retries; ``GeneratorError`` otherwise."""
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if last is not None:
                delay = last.wait if last.wait is not None else backoff_delay(attempt)
                self.sleep(delay)
            try:
                return self._attempt(messages)
            except _Retryable as err:
                last = err
        assert last is not None
        status = f"HTTP {last.status}" if last.status else "no HTTP status"
        hint = ""
        if last.status is None and "connection" in str(last):
            hint = "; is the server running and is the base URL right?"
        raise GeneratorError(
            f"{self.url}: giving up after {self.max_retries + 1} attempt(s) "
            f"({status}); last error: {_redact(str(last), self.api_key)}{hint}"
        )


# --------------------------------------------------------------------------------------------
# Output file
# --------------------------------------------------------------------------------------------


def _load_existing(path: Path) -> Descriptions:
    """A previous (possibly partial) output file, or an empty mapping if there is none (or if it
    is a template, which the generated descriptions replace)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise GeneratorError(
            f"{path}: existing output is not readable JSON ({err}); move it away or fix it"
        ) from err
    if is_template(data):
        return {}
    ok = isinstance(data, dict) and all(
        isinstance(block, dict)
        and all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in block.values())
        for block in data.values()
    )
    if not ok:
        raise GeneratorError(
            f"{path}: existing output is not of the form {{modality: {{class: [sentences]}}}}"
        )
    return data


def _write_atomic(path: Path, data: Descriptions) -> None:
    """Write JSON to a temporary file next to ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, mode)  # mkstemp makes 0600 files
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# Template (stub) descriptions, offline
# --------------------------------------------------------------------------------------------

STUB_TEMPLATES = (
    "{A_modality} image showing {classname}.",
    "{Classname} as seen in {a_modality} image.",
    "{A_modality} image of a case of {classname}.",
    "The {modality} appearance of {classname}.",
    "An example of {classname} in {modality}.",
    "{A_modality} image typical of {classname}.",
    "{A_modality} image with the features of {classname}.",
    "{Classname}, imaged by {modality}.",
    "A case of {classname} on {modality}.",
    "Findings of {classname} in {a_modality} image.",
)
STUB_NOTE = (
    "template-only: written by 'kmat describe --stub' from the class and modality names; these "
    "sentences describe no image, and every run that reads them records "
    "config.descriptions_template = true. Replace this file with real descriptions (kmat describe "
    "--task TASK --model MODEL ...), or rewrite the sentences yourself and then delete this key."
)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def stub_descriptions(classes: list[tuple[str, str]], modalities: list[tuple[str, str]]) -> dict:
    """A template descriptions file: ``{"_template": note, modality: {class: [sentence, ...]}}``
    with one sentence per :data:`STUB_TEMPLATES` entry, filled with the (key, display name) pairs
    of the classes and modalities."""
    _check_pairs(classes, "classes")
    _check_pairs(modalities, "modalities")
    out: dict = {TEMPLATE_KEY: STUB_NOTE}
    for mkey, mname in modalities:
        a_mod = f"{_article(mname)} {mname}"
        block = {}
        for ckey, cname in classes:
            fields = {
                "modality": mname,
                "a_modality": a_mod,
                "A_modality": a_mod[:1].upper() + a_mod[1:],
                "classname": cname,
                "Classname": cname[:1].upper() + cname[1:],
            }
            block[ckey] = [t.format(**fields) for t in STUB_TEMPLATES]
        out[mkey] = block
    return out


def write_stub_descriptions(
    out: Path | str,
    classes: list[tuple[str, str]],
    modalities: list[tuple[str, str]],
    overwrite: bool = False,
) -> dict:
    """Write :func:`stub_descriptions` to ``out`` (atomically); an existing file is kept unless
    ``overwrite`` (:class:`ConfigError`)."""
    path = Path(out).expanduser()
    if path.exists() and not overwrite:
        raise ConfigError(
            f"{path} already exists; it is kept (set overwrite to replace it)", field="overwrite"
        )
    data = stub_descriptions(classes, modalities)
    _write_atomic(path, data)
    return data


# --------------------------------------------------------------------------------------------
# Main entry point
# --------------------------------------------------------------------------------------------


def _default_api_key() -> str | None:
    """``KMAT_LLM_API_KEY`` if set, else ``OPENAI_API_KEY``, else None."""
    return os.environ.get("KMAT_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


def _check_pairs(pairs: list[tuple[str, str]], what: str) -> None:
    """Reject empty lists, empty names and repeated keys."""
    if not pairs:
        raise ConfigError(f"no {what} given")
    keys = [k for k, _ in pairs]
    if any(not k or not name for k, name in pairs):
        raise ConfigError(f"every entry of {what} needs a key and a display name: {pairs}")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"repeated {what} keys: {keys}")


def generate_descriptions(
    classes: list[tuple[str, str]],
    modalities: list[tuple[str, str]],
    out: Path | str,
    model: str,
    base_url: str = "https://api.openai.com/v1",
    api_key: str | None = None,
    n: int = 50,
    task_hint: str = "",
    max_retries: int = 5,
    timeout: float = 60,
    progress: bool = True,
    sleep: Sleep = time.sleep,
    *,
    temperature: float = 0.9,
    batch_size: int = 25,
    max_stalls: int = 5,
) -> Descriptions:
    """Collect ``n`` distinct descriptions per (modality, class) from an LLM and write ``out``.

    Args:
        classes: ``(class key, display name)`` pairs, e.g. ``("bcc", "basal cell carcinoma")``.
        modalities: ``(modality key, display name)`` pairs, e.g.
            ``("clin", "clinical photograph")``.
        out: the JSON file ``{modality key: {class key: [sentence, ...]}}``. If it exists it is
            loaded and only the missing sentences are requested (entries for other keys are kept).
        model: model name sent in the request body.
        base_url: an OpenAI-compatible API root; requests go to ``{base_url}/chat/completions``.
        api_key: bearer token; default ``$KMAT_LLM_API_KEY``, else ``$OPENAI_API_KEY``, else none
            (no Authorization header, for local servers). It is never printed.
        n: sentences wanted per (modality, class).
        task_hint: optional context added to every prompt (e.g. "skin lesion classification").
        max_retries: retries per request on 429, 408, 5xx, connection errors, timeouts and
            malformed answers (so at most ``max_retries + 1`` attempts per request).
        timeout: seconds per HTTP request.
        progress: show a tqdm bar of sentences collected.
        sleep: the waiting function between retries (tests pass a recorder).
        temperature: sampling temperature sent with each request.
        batch_size: at most this many sentences are asked for per request.
        max_stalls: give up on a pair after this many consecutive answers that add nothing new.

    Returns:
        Everything now in ``out`` (the requested pairs have exactly ``n`` sentences, or more if
        the existing file already held more).

    Raises:
        GeneratorError: the endpoint kept failing, refused the request, or stopped producing new
            sentences; ``out`` is left as valid JSON holding everything collected so far.
        ValueError: bad arguments.

    The user prompt is :data:`PROMPT_TEMPLATE` (shown in the module docstring).
    """
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
    _check_pairs(classes, "classes")
    _check_pairs(modalities, "modalities")
    if n < 1 or batch_size < 1 or max_stalls < 1:
        raise ConfigError("n, batch_size and max_stalls must be positive")
    key = api_key if api_key is not None else _default_api_key()
    job = _Job(
        client=_ChatClient(base_url, model, key, temperature, timeout, max_retries, sleep),
        out=Path(out),
        classes=list(classes),
        modalities=list(modalities),
        n=n,
        task_hint=task_hint,
        batch_size=batch_size,
        max_stalls=max_stalls,
    )
    data = job.ordered(_load_existing(job.out))
    missing = sum(max(0, n - len(data.get(m, {}).get(c, []))) for m, _ in modalities for c, _ in classes)
    with progress_bar(total=missing, desc="descriptions", unit="sent", disable=not progress) as bar:
        for m_key, m_name in job.modalities:
            for c_key, c_name in job.classes:
                data = job.fill_pair(data, m_key, m_name, c_key, c_name, bar.update)
    return data


@dataclass
class _Job:
    """The settings of one :func:`generate_descriptions` run."""

    client: _ChatClient
    out: Path
    classes: list[tuple[str, str]]
    modalities: list[tuple[str, str]]
    n: int
    task_hint: str
    batch_size: int
    max_stalls: int

    def ordered(self, data: Descriptions) -> Descriptions:
        """``data`` with the requested modalities and classes first, in the requested order."""
        result: Descriptions = {}
        for m, _ in self.modalities:
            block = data.get(m, {})
            result[m] = {c: block[c] for c, _ in self.classes if c in block}
            result[m].update({c: v for c, v in block.items() if c not in result[m]})
        result.update({m: block for m, block in data.items() if m not in result})
        return {m: block for m, block in result.items() if block}

    def fill_pair(
        self,
        data: Descriptions,
        m_key: str,
        m_name: str,
        c_key: str,
        c_name: str,
        advance: Callable[[int], object],
    ) -> Descriptions:
        """Request sentences for one pair until it has ``n``; save after each gain."""
        sentences = list(data.get(m_key, {}).get(c_key, []))
        if len(sentences) >= self.n:
            return data
        seen = {normalise_sentence(s) for s in sentences}
        others = [name for key, name in self.classes if key != c_key]
        where = f"{m_key}/{c_key}"
        stalls = 0
        while len(sentences) < self.n:
            count = min(self.batch_size, self.n - len(sentences))
            messages = build_messages(c_name, m_name, count, others, self.task_hint, sentences)
            try:
                answer = self.client.complete(messages)
            except GeneratorError as err:
                saved = f"; what was collected so far is in {self.out}" if self.out.exists() else ""
                raise GeneratorError(f"{where}: {err}{saved}") from err
            added = _add_new(sentences, seen, parse_sentences(answer), self.n)
            if added:
                stalls = 0
                block = {**data.get(m_key, {}), c_key: list(sentences)}
                data = self.ordered({**data, m_key: block})
                _write_atomic(self.out, data)
                advance(added)
                continue
            stalls += 1
            if stalls >= self.max_stalls:
                raise GeneratorError(
                    f"{where}: {stalls} answers in a row from {self.client.url} added no new valid "
                    f"sentence ({len(sentences)}/{self.n} collected; each must be "
                    f"{MIN_WORDS}-{MAX_WORDS} words and not a repeat); last answer starts "
                    f"{answer[:200]!r}"
                )
        return data
