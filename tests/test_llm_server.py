"""The LLM layer against a REAL OpenAI-compatible server: llama.cpp's server (llama-cpp-python) started on
127.0.0.1 with the small Qwen2.5-Coder-0.5B-Instruct GGUF test model (``llmtest`` extra; sha256-verified
against the publisher's file).  The 0.5B model is a plumbing fixture: these tests check requests, JSON mode,
evidence verification, caching and the written tables — not the quality of its QA judgements.

Skipped when the extra is not installed; ``QC_REQUIRE_LLM=1`` (set by .ci/run after installing it) turns the
skip into a failure."""

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from qc_pipeline.config import LlmConfig
from qc_pipeline.llm import client as C
from qc_pipeline.llm.client import LlmClient
from qc_pipeline.llm.judge import judge
from tests.test_llm import DIALOGUE, utts

REPO = Path(__file__).resolve().parents[1]
MODEL_ALIAS = "qwen2.5-coder-0.5b-fixture"


def _need(what: str) -> None:
    if os.environ.get("QC_REQUIRE_LLM") == "1":
        pytest.fail(f"QC_REQUIRE_LLM=1 but {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None:
        _need("llama-cpp-python is not installed (pip install -e '.[llmtest]')")
    from qc_pipeline.errors import SetupError
    from qc_pipeline.llm.fixture import fixture_model

    try:
        model = fixture_model()
    except SetupError as exc:
        _need(str(exc))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                                 "--port", str(port), "--n_ctx", "4096", "--n_threads", "1", "--n_threads_batch", "1",
                                 "--model_alias", MODEL_ALIAS], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_WAIT_POLICY": "passive"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _need(f"llama.cpp server did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def cfg(url, tmp_path, **kw):
    return LlmConfig(**{**dict(base_url=url, model=MODEL_ALIAS, timeout_s=300.0, max_retries=0,
                               cache_dir=str(tmp_path / "cache"), max_tokens=160), **kw})


def test_judge_on_a_real_server_verifies_evidence_and_caches(server, tmp_path):
    c = LlmClient(cfg(server, tmp_path))
    v = judge(c, c.session("c1"), "坐席是否在给出解决方案之前先安抚了客户的情绪", utts(),
              scope_turns=[1, 2, 4])
    assert c.stats.requests == 1 and c.stats.completion_tokens > 0 and c.stats.errors == 0
    # json mode: the server's grammar makes the text JSON; what the 0.5B model says is not asserted, only that
    # an answer is either accepted with its quote found in a cited in-scope turn, or rejected with a reason
    assert v.ok or v.error in (C.BAD_ANSWER, C.NO_EVIDENCE, C.OUT_OF_SCOPE), v
    if v.ok and v.quote:
        assert any(v.quote.replace(" ", "") in DIALOGUE[t][1] for t in v.turns) and set(v.turns) <= {1, 2, 4}
    rerun = LlmClient(cfg(server, tmp_path))
    v2 = judge(rerun, rerun.session("c1"), "坐席是否在给出解决方案之前先安抚了客户的情绪", utts(),
               scope_turns=[1, 2, 4])
    assert (rerun.stats.requests, rerun.stats.cache_hits) == (0, 1) and v2 == v


def test_pipeline_writes_summaries_with_a_real_server(server, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "qc_pipeline", "run", str(REPO / "samples" / "chats"), "--out", str(out),
           "--set", f"llm.base_url={server}", "--set", f"llm.model={MODEL_ALIAS}", "--set", "llm.max_tokens=200",
           "--set", f"llm.cache_dir={tmp_path / 'cache'}", "--set", "llm.timeout_s=300"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    from qc_pipeline.sinks.parquet import read_table

    sessions = read_table(out, "sessions").to_pylist()
    rows = {r["call_id"]: r for r in read_table(out, "summaries").to_pylist()}
    assert len(rows) == len(sessions) == 3 and all(s["status"] == "ok" for s in sessions)
    for s in sessions:
        r = rows[s["call_id"]]
        assert r["call_type"] in ("咨询", "投诉", "建议", "办理") and r["llm_requests"] >= 1
        assert r["llm_model"] == MODEL_ALIAS
        if r["llm_error"] is None:      # the model's answer was used: it named a taxonomy entry
            assert r["call_type_source"] == "llm" and r["resolved"] is not None and "llm_error" not in s["flags"]
        else:                           # rejected: keyword fallback, flagged
            assert r["call_type_source"] == "keywords" and "llm_error" in s["flags"]
