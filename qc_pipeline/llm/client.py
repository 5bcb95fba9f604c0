"""OpenAI-compatible chat-completions client (vLLM, llama.cpp server, Ollama, Xinference, hosted Qwen).

Standard library only (``urllib``): nothing to install for an on-prem server.  What it guarantees:

* a request never raises: timeouts, refused connections, HTTP errors and unreadable bodies come back as an
  :class:`LlmReply` with an ``error`` code, so the caller falls back to rules and the call goes on;
* retries with exponential backoff on timeouts, connection errors, 429 and 5xx (never on other 4xx);
* at most ``llm.max_concurrency`` requests in flight per worker process;
* answers cached on disk by (model, prompt hash): a re-run sends nothing;
* a per-session call budget (cache hits count too, so a re-run gives the same answers);
* the API key is read from the environment variable named by ``llm.api_key_env`` at request time and
  is never stored on the client, logged, cached or written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from qc_pipeline.config import LlmConfig

log = logging.getLogger(__name__)

# error codes (also what an ``llm_error`` flag's detail says)
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"            # connection refused / DNS / reset: server down
HTTP_ERROR = "http_error"
BAD_RESPONSE = "bad_response"          # not an OpenAI-style JSON body
BUDGET = "budget_exhausted"            # the session's llm.max_calls_per_session is used up
BAD_ANSWER = "bad_answer"              # the model's text is not the JSON asked for (judge / summary)
NO_EVIDENCE = "evidence_not_found"     # the quote is not in the cited turns: answer rejected
OUT_OF_SCOPE = "evidence_out_of_scope"  # cited turns are outside the rule's scope

_RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class LlmReply:
    text: Optional[str] = None         # the assistant message content; None on error
    error: Optional[str] = None
    detail: str = ""
    status: Optional[int] = None       # the HTTP status of an http_error
    cached: bool = False
    attempts: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class CallBudget:
    """Requests one session may still make (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    @property
    def left(self) -> int:
        return self.limit - self.used

    def take(self, n: int = 1) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True


@dataclass
class LlmSession:
    """One session's LLM state, shared by every stage of this worker that asks about the same call."""

    call_id: str
    budget: CallBudget
    requests: int = 0
    cache_hits: int = 0


@dataclass
class ClientStats:
    requests: int = 0          # answered by the server (after retries)
    cache_hits: int = 0
    errors: int = 0
    retries: int = 0
    seconds: float = 0.0       # wall time spent in server requests
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ResponseCache:
    """One small JSON file per answer under ``root/ab/<key>.json``, written atomically (safe across workers)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).expanduser()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional[dict]:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # a cache that cannot be written costs money, never the call
            log.warning("llm cache not writable (%s): %s", self.root, exc.strerror or exc)
            tmp.unlink(missing_ok=True)


class LlmClient:
    def __init__(self, cfg: LlmConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if not cfg.base_url:
            raise ValueError("LlmClient needs llm.base_url")
        self.cfg = cfg
        self.endpoint = cfg.base_url.rstrip("/") + "/chat/completions"
        self.cache = ResponseCache(cfg.cache_dir) if cfg.cache_dir else None
        self.stats = ClientStats()
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(cfg.max_concurrency)
        self._sessions: OrderedDict[str, LlmSession] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows a key (there is none on the object anyway)
        return f"LlmClient({self.endpoint!r}, model={self.cfg.model!r})"

    # ---------------------------------------------------------------- sessions
    def session(self, call_id: str) -> LlmSession:
        """The budget/accounting of one call; the same object for every stage of this worker."""
        with self._lock:
            s = self._sessions.get(call_id)
            if s is None:
                s = self._sessions[call_id] = LlmSession(call_id, CallBudget(self.cfg.max_calls_per_session))
                while len(self._sessions) > 256:
                    self._sessions.popitem(last=False)
            return s

    # ---------------------------------------------------------------- requests
    def body(self, messages: list[dict]) -> dict:
        body = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                "max_tokens": self.cfg.max_tokens, "stream": False}
        if self.cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def cache_key(self, body: dict) -> str:
        """(model, prompt hash): everything that changes the answer, nothing else (no key, no URL)."""
        blob = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def chat(self, messages: list[dict], session: Optional[LlmSession] = None) -> LlmReply:
        body = self.body(messages)
        if session is not None and not session.budget.take():
            return LlmReply(error=BUDGET, detail=f"{self.cfg.max_calls_per_session} requests per session used")
        key = self.cache_key(body)
        cached = self.cache.get(key) if self.cache else None
        if cached is not None and isinstance(cached.get("text"), str):
            self.stats.cache_hits += 1
            if session is not None:
                session.cache_hits += 1
            return LlmReply(text=cached["text"], cached=True)
        with self._slots:
            reply = self._send(body)
        if session is not None:
            session.requests += 1
        if reply.ok and self.cache is not None:
            self.cache.put(key, {"model": self.cfg.model, "text": reply.text})
        return reply

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        name = self.cfg.api_key_env
        if name:
            key = os.environ.get(name)
            if key:
                headers["Authorization"] = "Bearer " + key
            else:
                log.warning("llm.api_key_env names %s, which is not set: sending no API key", name)
        return headers

    def _send(self, body: dict) -> LlmReply:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        t0 = time.perf_counter()
        wait = self.cfg.backoff_s
        last = LlmReply(error=UNREACHABLE)
        for attempt in range(1, self.cfg.max_retries + 2):
            last = self._attempt(data)
            retryable = last.error in (TIMEOUT, UNREACHABLE) or last.status in _RETRY_STATUS
            if last.ok or not retryable or attempt > self.cfg.max_retries:
                break
            self.stats.retries += 1
            log.info("llm request failed (%s %s); retry %d in %.1fs", last.error, last.detail, attempt, wait)
            self._sleep(wait)
            wait *= 2
        seconds = time.perf_counter() - t0
        self.stats.seconds += seconds
        if last.ok:
            self.stats.requests += 1
            self.stats.prompt_tokens += last.prompt_tokens
            self.stats.completion_tokens += last.completion_tokens
        else:
            self.stats.errors += 1
            log.warning("llm request to %s failed: %s %s", self.endpoint, last.error, last.detail)
        return replace(last, attempts=attempt, seconds=seconds)

    def _attempt(self, data: bytes) -> LlmReply:
        req = urllib.request.Request(self.endpoint, data=data, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            return LlmReply(error=HTTP_ERROR, detail=f"{exc.code} {exc.reason}", status=exc.code)
        except (TimeoutError, socket.timeout):
            return LlmReply(error=TIMEOUT, detail=f"no answer in {self.cfg.timeout_s:g}s")
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                return LlmReply(error=TIMEOUT, detail=f"no answer in {self.cfg.timeout_s:g}s")
            return LlmReply(error=UNREACHABLE, detail=str(exc.reason))
        except (ConnectionError, OSError) as exc:  # reset mid-read, broken pipe
            return LlmReply(error=UNREACHABLE, detail=f"{exc.__class__.__name__}: {exc}")
        try:
            payload = json.loads(raw.decode("utf-8"))
            text = payload["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
            return LlmReply(error=BAD_RESPONSE, detail=f"{exc.__class__.__name__}: {exc}"[:200])
        usage = payload.get("usage") or {}
        return LlmReply(text=text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0))


_CLIENTS: dict[LlmConfig, LlmClient] = {}
_CLIENTS_LOCK = threading.Lock()


def get_client(cfg: LlmConfig) -> Optional[LlmClient]:
    """The worker's client for this config (shared by its stages, so session budgets are shared);
    None when no LLM is configured."""
    if not cfg.base_url:
        return None
    with _CLIENTS_LOCK:
        if cfg not in _CLIENTS:
            _CLIENTS[cfg] = LlmClient(cfg)
        return _CLIENTS[cfg]
