"""Static checks of the two Dockerfiles (CI has no container engine; scripts/build_images.sh builds them):
the run stage keeps the offline settings, every COPY source exists and is not dockerignored, and the
extras they install exist in pyproject.toml."""

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")


def _instructions(name: str) -> list[tuple[str, str]]:
    text = (REPO / name).read_text("utf-8")
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _stages(name: str) -> list[list[tuple[str, str]]]:
    """Each stage's instructions, including those it inherits through ``FROM <earlier stage>``."""
    stages: list[list[tuple[str, str]]] = []
    named: dict[str, list[tuple[str, str]]] = {}
    for op, rest in _instructions(name):
        if op == "FROM":
            image, _, alias = rest.partition(" AS ")
            stages.append(list(named.get(image.strip(), [])))
            if alias:
                named[alias.strip()] = stages[-1]
        if stages:
            stages[-1].append((op, rest))
    return stages


@pytest.mark.parametrize("name", DOCKERFILES)
def test_run_stage_is_offline_and_has_the_models(name):
    run = _stages(name)[-1]
    env = " ".join(rest for op, rest in run if op == "ENV")
    for setting in ("HF_HUB_OFFLINE=1", "PYANNOTE_METRICS_ENABLED=0", "QC_PIPELINE_MODELS_DIR=/opt/qc/models"):
        assert setting in env, f"{name}: run stage lacks ENV {setting}"
    assert any(op == "RUN" and "models check" in rest for op, rest in run), f"{name}: run stage never checks the model"
    # pip settings are build args of the build stage only; none may leak into the image's ENV
    assert "PIP_" not in env


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist_and_are_not_dockerignored(name):
    ignored = [p.strip() for p in (REPO / ".dockerignore").read_text("utf-8").splitlines() if p.strip()]
    for op, rest in _instructions(name):
        if op != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = rest.split()
        for src in sources:
            assert (REPO / src).exists(), f"{name}: COPY {src} does not exist"
            assert not any(fnmatch(src, pat) or src.startswith(pat.rstrip("/") + "/") for pat in ignored), \
                f"{name}: COPY {src} is excluded by .dockerignore"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_installed_extras_exist(name):
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["optional-dependencies"])
    wanted = [e for op, rest in _instructions(name) if op == "RUN"
              for group in re.findall(r"'\.\[([a-z,]+)\]'", rest) for e in group.split(",")]
    assert wanted, f"{name} installs no extras"
    assert set(wanted) <= extras, f"{name}: unknown extras {set(wanted) - extras}"
    if name.endswith(".cuda"):
        assert "gpu" in wanted  # cuBLAS 12 for CTranslate2 comes from the [gpu] wheel


@pytest.mark.parametrize("name", DOCKERFILES)
def test_model_cache_is_baked_where_the_run_stage_looks(name):
    """The build stage fills $QC_PIPELINE_CACHE_DIR (the CAM++ ONNX export needs torch and a minute) inside
    /opt/qc, which the run stage copies; both stages name the same folder."""
    stages = _stages(name)
    build, run = stages[-2], stages[-1]
    cache = [rest for op, rest in run if op == "ENV" for m in [re.search(r"QC_PIPELINE_CACHE_DIR=(\S+)", rest)] if m]
    assert cache, f"{name}: the run stage does not set QC_PIPELINE_CACHE_DIR"
    folder = re.search(r"QC_PIPELINE_CACHE_DIR=(\S+)", cache[0]).group(1)
    assert folder.startswith("/opt/qc/"), f"{name}: cache {folder} is not under /opt/qc (not copied to the run stage)"
    assert any(op == "COPY" and rest.startswith("--from=build /opt/qc ") for op, rest in run)
    warm = [rest for op, rest in build if op == "RUN" and "qc-pipeline run samples/" in rest]
    assert warm and f"{folder}/campp-" in warm[0], f"{name}: the build stage does not fill and check the cache"
