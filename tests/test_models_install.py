"""`qc-pipeline models install|list|check` for real: a local HTTP server speaks the Hugging Face hub API (and
ModelScope's file API) to the real client code; `asr.model: NAME` then resolves to the installed folder.
No network: the server runs in this process on 127.0.0.1."""

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from qc_pipeline.asr.install import MANIFEST, check_folder, install_model, list_models, resolve_asr_model
from qc_pipeline.errors import SetupError
from qc_pipeline.models import INSTALL_ROOT, MODELS_DIR_ENV, models_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# A tiny repository in CTranslate2 Whisper layout (the files faster-whisper reads), plus a file the installer
# must not fetch.
FILES = {
    "model.bin": os.urandom(4096) + b"weights",
    "config.json": json.dumps({"alignment_heads": [[1, 0]], "lang_ids": [50260]}).encode(),
    "tokenizer.json": b'{"model": {"vocab": {}}}',
    "vocabulary.json": b'["<|endoftext|>"]',
    "README.md": b"# a model card that is not part of the model\n",
}


class _Hub(BaseHTTPRequestHandler):
    repos: dict = {}      # repo id -> {filename: bytes}
    requests: list = []
    corrupt: set = set()  # ModelScope: files served with a wrong published sha256

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, head: bool):
        url = urlparse(self.path)
        path = unquote(url.path)
        self.requests.append((self.command, path))
        for repo, files in self.repos.items():
            if path.startswith(f"/api/models/{repo}/revision/") or path == f"/api/models/{repo}":
                body = json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                                   "siblings": [{"rfilename": f} for f in files]}).encode()
                return self._send(200, body, {"Content-Type": "application/json"}, head)
            if path.startswith(f"/api/models/{repo}/tree/"):
                body = json.dumps([{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                                   for f, d in files.items()]).encode()
                return self._send(200, body, {"Content-Type": "application/json"}, head)
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix):].split("/", 1)[1]
                if name not in files:
                    return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head)
                data = files[name]
                return self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                              "Content-Type": "application/octet-stream"}, head)
            # ModelScope: file listing and file download
            if path == f"/api/v1/models/{repo}/repo/files":
                listing = [{"Path": f, "Type": "blob", "Size": len(d),
                            "Sha256": "0" * 64 if f in self.corrupt else hashlib.sha256(d).hexdigest()}
                           for f, d in files.items()]
                return self._send(200, json.dumps({"Code": 200, "Data": {"Files": listing}}).encode(),
                                  {"Content-Type": "application/json"}, head)
            if path == f"/api/v1/models/{repo}/repo":
                name = parse_qs(url.query)["FilePath"][0]
                return self._send(200, files[name], {"Content-Type": "application/octet-stream"}, head)
        return self._send(404, b"no such repo", {"X-Error-Code": "RepoNotFound"}, head)

    def do_GET(self):
        self._route(False)

    def do_HEAD(self):
        self._route(True)


@pytest.fixture(scope="module")
def hub():
    _Hub.repos = {"Systran/faster-whisper-large-v3": FILES, "acme/whisper-zh-callcenter": FILES}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def hf_env(hub, tmp_path, monkeypatch):
    """A mirror via HF_ENDPOINT (read by the installer at call time), no token, a private hub cache."""
    monkeypatch.setenv("HF_ENDPOINT", hub)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
    _Hub.requests = []
    return tmp_path / "models"


def test_install_by_name_from_a_hub_mirror_then_resolve_by_name(hf_env):
    path = install_model("large-v3")
    assert path == hf_env / "whisper-large-v3"
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["model.bin", "config.json", "tokenizer.json", "vocabulary.json", MANIFEST])
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.json"):
        assert (path / name).read_bytes() == FILES[name]
    assert ("GET", "/Systran/faster-whisper-large-v3/resolve/" + COMMIT + "/README.md") not in _Hub.requests
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["source"] == "huggingface" and manifest["revision"] == COMMIT
    assert manifest["files"]["model.bin"]["sha256"] == hashlib.sha256(FILES["model.bin"]).hexdigest()
    resolved = resolve_asr_model("large-v3")              # asr.model: large-v3
    assert resolved.path == path.resolve() and resolved.sha256 == manifest["files"]["model.bin"]["sha256"]
    assert [m.name for m in list_models()] == ["large-v3"]
    # a second install is a no-op; a damaged file is found by check and refused at load
    install_model("large-v3")
    (path / "model.bin").write_bytes(b"x" * len(FILES["model.bin"]))
    assert any("sha256" in p for p in check_folder(path))
    (path / "model.bin").write_bytes(b"short")
    with pytest.raises(SetupError, match="damaged"):
        resolve_asr_model("large-v3")
    assert install_model("large-v3", force=True) == path and not check_folder(path)


def test_install_from_a_repo_id_under_a_name(hf_env):
    path = install_model("zh-callcenter", "acme/whisper-zh-callcenter")
    assert path == hf_env / "zh-callcenter" and (path / "model.bin").read_bytes() == FILES["model.bin"]
    assert resolve_asr_model("zh-callcenter").path == path.resolve()
    install_model("whisper-zh", "acme/whisper-zh-callcenter")
    # every listed name is one asr.model accepts
    listed = [m.name for m in list_models()]
    assert sorted(listed) == ["whisper-zh", "zh-callcenter"]
    assert all(resolve_asr_model(n).path.parent == hf_env for n in listed)


def test_unknown_repo_and_unknown_name_fail_with_a_setup_error(hf_env):
    with pytest.raises(SetupError, match="could not download acme/nope from http://127.0.0.1"):
        install_model("x", "acme/nope")
    assert not (hf_env / "x").exists() and not any(p.name.startswith(".x-") for p in hf_env.iterdir())
    with pytest.raises(SetupError, match="unknown model"):
        install_model("large-v9")


def test_install_from_modelscope_checks_published_checksums(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_DOMAIN", hub)
    path = install_model("ms", "acme/whisper-zh-callcenter", root=tmp_path, hub="modelscope")
    assert (path / "model.bin").read_bytes() == FILES["model.bin"]
    assert json.loads((path / MANIFEST).read_text())["source"] == "modelscope"
    _Hub.corrupt = {"model.bin"}
    try:
        with pytest.raises(SetupError, match="sha256"):
            install_model("ms2", "acme/whisper-zh-callcenter", root=tmp_path, hub="modelscope")
    finally:
        _Hub.corrupt = set()
    assert not (tmp_path / "ms2").exists()


def test_install_from_a_local_ctranslate2_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, data in FILES.items():
        (src / name).write_bytes(data)
    path = install_model("mine", str(src), root=tmp_path / "models")
    assert not (path / "README.md").exists() and (path / "model.bin").read_bytes() == FILES["model.bin"]
    (src / "model.bin").unlink()
    with pytest.raises(SetupError, match="neither"):
        install_model("broken", str(src), root=tmp_path / "models")


def test_cli_install_list_check(hub, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub, "HF_HOME": str(tmp_path / "hf"), MODELS_DIR_ENV: str(tmp_path / "m"),
           "PYTHONPATH": str(REPO_ROOT)}
    env.pop("HF_HUB_OFFLINE", None)
    run = lambda *a: subprocess.run([sys.executable, "-m", "qc_pipeline", "models", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    r = run("install", "large-v3")
    assert r.returncode == 0, r.stderr
    r = run("list")
    assert "large-v3" in r.stdout and "huggingface" in r.stdout
    assert run("check", "large-v3").returncode == 0
    assert run("check", "tiny").returncode == 1


def test_models_dir_comes_from_the_installation_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)                     # a cron job started elsewhere
    assert models_dir() == INSTALL_ROOT / "models" == REPO_ROOT / "models"
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert models_dir() == tmp_path / "elsewhere"   # the environment variable still wins


def _tiny_transformers_whisper(out: Path, tokenizer_json: Path) -> dict:
    """A real (random-weight, 16-wide) Transformers Whisper checkpoint with whisper-base's tokenizer."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    tok = WhisperTokenizerFast(tokenizer_file=str(tokenizer_json))
    cfg = WhisperConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)
    WhisperForConditionalGeneration(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    WhisperFeatureExtractor().save_pretrained(out)
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


@pytest.mark.model
def test_a_transformers_checkpoint_on_the_hub_is_downloaded_converted_and_loads(hf_env, whisper_base, tmp_path):
    pytest.importorskip("transformers")
    files = _tiny_transformers_whisper(tmp_path / "hf", whisper_base / "tokenizer.json")
    assert "model.bin" not in files and "model.safetensors" in files
    _Hub.repos["acme/whisper-tiny-zh-hf"] = files
    path = install_model("tiny-zh", "acme/whisper-tiny-zh-hf")
    assert (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()
    assert "TransformersConverter" in json.loads((path / MANIFEST).read_text())["converted"]
    import numpy as np
    from faster_whisper import WhisperModel

    model = WhisperModel(str(resolve_asr_model("tiny-zh").path), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(np.zeros(16000, np.float32), language="zh", beam_size=1, max_new_tokens=4)
    list(segments)  # random weights: any text; what matters is that the converted folder decodes
