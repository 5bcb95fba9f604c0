"""pyannote.audio backend: a speaker-diarization pipeline loaded from a local folder.

No hub access: ``Pipeline.from_pretrained(folder)`` reads ``folder/config.yaml`` whose model
entries point at checkpoint files inside the folder (see models/README.md for the layout).
Telemetry is switched off (``PYANNOTE_METRICS_ENABLED=0``) before pyannote is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.diarize.base import SpeakerSegment, name_by_first_appearance
from qc_pipeline.errors import SetupError


class PyannoteDiarizer:
    def __init__(self, pipeline_dir: str, max_speakers: int = 2) -> None:
        self.pipeline_dir = pipeline_dir
        self.max_speakers = max_speakers
        self.pipeline = None

    def setup(self) -> None:
        if self.pipeline is not None:
            return
        folder = Path(self.pipeline_dir).expanduser()
        if not (folder / "config.yaml").is_file():
            raise SetupError(f"diarization.pyannote_pipeline: no config.yaml in {folder}. Put a pyannote "
                             "speaker-diarization pipeline folder there (models/README.md explains the layout)")
        os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from pyannote.audio import Pipeline
        except ImportError:
            raise SetupError("diarization.backend 'pyannote' needs pyannote.audio: "
                             "install pyannote.audio with torch 2.9.1 + torchaudio 2.9.1 in its own environment (models/README.md)") from None
        config = _local_config(folder)
        try:
            self.pipeline = Pipeline.from_pretrained(config)
        except Exception as e:
            raise SetupError(f"pyannote could not load the pipeline in {folder}: {type(e).__name__}: {e}") from e
        if self.pipeline is None:
            raise SetupError(f"pyannote could not build a pipeline from {folder}")

    def diarize(self, audio: np.ndarray, speech: Sequence[tuple[float, float]]) -> list[SpeakerSegment]:
        import torch

        self.setup()
        waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)[None, :])
        result = self.pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, max_speakers=self.max_speakers)
        annotation = getattr(result, "speaker_diarization", result)
        tracks = list(annotation.itertracks(yield_label=True))
        names = name_by_first_appearance(label for *_, label in tracks)
        segments = [SpeakerSegment(round(turn.start, 3), round(turn.end, 3), names[label]) for turn, _, label in tracks]
        return sorted(segments, key=lambda s: s.start)


# pipeline.params entries that name a checkpoint (pyannote 4.x SpeakerDiarization; 3.x has no plda)
_CHECKPOINT_PARAMS = ("segmentation", "embedding", "plda")


def _local_config(folder: Path) -> dict:
    """``folder/config.yaml`` with every checkpoint reference pinned to an absolute local path.

    pyannote itself resolves ``$model/X`` against the pipeline folder, but a plain relative path
    (``./segmentation/pytorch_model.bin``, as in models/README.md) against the *current working
    directory*, and anything else as a hub id; a checkpoint entry left out means the pipeline's
    hub default.  Here ``$model/X`` and relative paths become ``{"checkpoint": <absolute path>}``
    (a dict also keeps pyannote from choosing an embedding loader by substrings of a path string,
    e.g. "wespeaker" or "nvidia"), and a reference that is not an existing local path (a hub id),
    or a missing entry, is a SetupError instead of a hub download.
    """
    import yaml

    cfg_file = folder / "config.yaml"
    try:
        config = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SetupError(f"{cfg_file} is not readable YAML: {e}") from None
    pipeline = config.get("pipeline") if isinstance(config, dict) else None
    if not isinstance(pipeline, dict) or not pipeline.get("name"):
        raise SetupError(f"{cfg_file} has no 'pipeline: name:' entry; is it a pyannote pipeline config.yaml?")
    params = pipeline.get("params") or {}
    pipeline["params"] = params
    for key in _CHECKPOINT_PARAMS:
        value = params.get(key)
        if isinstance(value, str):
            ref = value[len("$model/"):] if value.startswith("$model/") else value
        elif isinstance(value, dict) and isinstance(value.get("checkpoint"), str):
            ref = str(Path(value["checkpoint"]) / value.get("subfolder", "")) if value.get("subfolder") else value["checkpoint"]
        else:
            continue
        path = Path(ref).expanduser()
        path = path if path.is_absolute() else folder / path
        if not path.exists():
            raise SetupError(f"{cfg_file}: pipeline.params.{key} = {value!r} is not a file or folder in {folder}; "
                             "there is no hub access, so copy that checkpoint into the folder and reference it "
                             f"as $model/{key} (layout: models/README.md)")
        params[key] = {"checkpoint": str(path.resolve())}
    missing = [k for k in _CHECKPOINT_PARAMS if k not in params and k in _init_params(pipeline["name"])]
    if missing:
        raise SetupError(f"{cfg_file}: pipeline.params has no {', '.join(missing)} entry, so pyannote would fetch "
                         f"its default from the hub; add e.g. '{missing[0]}: $model/{missing[0]}' with that "
                         "checkpoint inside the folder")
    return config


def _init_params(pipeline_name: str) -> set[str]:
    """Constructor parameter names of the pipeline class (empty if it cannot be imported: pyannote reports that)."""
    import inspect

    try:
        from pyannote.core.utils.helper import get_class_by_name

        klass = get_class_by_name(pipeline_name, default_module_name="pyannote.pipeline.blocks")
        return set(inspect.signature(klass).parameters)
    except Exception:
        return set()
