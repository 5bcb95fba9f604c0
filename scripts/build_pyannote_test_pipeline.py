"""Build a local pyannote.audio speaker-diarization pipeline folder with random weights (offline).

    python scripts/build_pyannote_test_pipeline.py OUT_DIR [--seed 0] [--segmentation-step 0.1]

pyannote's pretrained checkpoints are not on PyPI, so tests cannot fetch a real pipeline. This
script writes one with the same *structure* as ``pyannote/speaker-diarization-community-1``
(pyannote.audio 4.x) but randomly initialised, seeded weights: it loads and runs through the real
``Pipeline.from_pretrained(folder)`` → segmentation → embedding → PLDA/VBx clustering path, and
its speaker labels are meaningless (the segmentation classifier's bias is set to favour
single-speaker classes, only so that clustering is reached). It needs ``pyannote.audio`` (4.x,
torch 2.9.1) and nothing from the network.

Folder layout (the same layout a real pipeline folder follows; copy your licensed checkpoints
into it in place of the random ones)::

    OUT_DIR/
      config.yaml                    # pipeline definition, see below
      segmentation/pytorch_model.bin # pyannote Model checkpoint (Lightning format): PyanNet,
                                     #   powerset: 3 speakers per 10 s chunk, at most 2 at once
      embedding/pytorch_model.bin    # pyannote Model checkpoint: WeSpeakerResNet34, 256-d
      plda/xvec_transform.npz        # VBx x-vector transform: mean1 (256,), mean2 (128,), lda (256, 128)
      plda/plda.npz                  # VBx PLDA: mu (128,), tr (128, 128), psi (128,)

``config.yaml``::

    dependencies:
      pyannote.audio: <installed version>   # major version must match at load time
    pipeline:
      name: pyannote.audio.pipelines.SpeakerDiarization
      params:
        segmentation: $model/segmentation   # "$model/X" = subfolder X of this folder
        embedding: $model/embedding
        plda: $model/plda
        clustering: VBxClustering
        embedding_exclude_overlap: true
        segmentation_step: 0.1              # --segmentation-step; fraction of the 10 s chunk
        segmentation_batch_size: 32
        embedding_batch_size: 32
    params:
      segmentation: {min_duration_off: 0.0}
      clustering: {threshold: 0.6, Fa: 0.07, Fb: 0.8}

``$model/X`` entries are resolved against the folder the config was loaded from, so the folder
can be moved anywhere (qc-pipeline's backend also accepts paths relative to the folder, e.g.
``./segmentation/pytorch_model.bin``, and rejects hub ids and missing entries: no hub access). Each ``pytorch_model.bin`` is a ``torch.save``d dict with
``state_dict``, ``hyper_parameters``, ``pytorch-lightning_version`` and a ``pyannote.audio``
entry (version, architecture module/class, task specifications), which is what
``pyannote.audio.Model.from_pretrained`` reads.

The output is deterministic for a given seed and the same torch / pyannote.audio versions.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

SEGMENTATION_CHUNK_S = 10.0
EMBEDDING_DIM = 256   # WeSpeakerResNet34 output
PLDA_DIM = 128        # pyannote's PLDA default lda_dimension


def _save_model(model, path: Path) -> None:
    """Write ``model`` the way pyannote's own converters do (Lightning-compatible checkpoint)."""
    import lightning
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)   # adds the "pyannote.audio" entry (version, class, specifications)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def _segmentation(path: Path, seed: int) -> None:
    import itertools

    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(seed)
    model = PyanNet(sample_rate=16000, num_channels=1)
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME,
        duration=SEGMENTATION_CHUNK_S, min_duration=SEGMENTATION_CHUNK_S, warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2, permutation_invariant=True)
    model.build()   # adds the (random) powerset classifier: 7 classes {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}
    # With a plain random init, (almost) no frame decodes as one speaker alone, so pyannote finds
    # no embedding to cluster and skips clustering.  Bias the classifier towards the single-speaker
    # classes (the weights stay random: the output is still meaningless) so that the PLDA + VBx
    # clustering stage runs too.
    sizes = [len(c) for k in range(3) for c in itertools.combinations(range(3), k)]
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([{0: 0.0, 1: 2.0, 2: -4.0}[n] for n in sizes]))
    _save_model(model, path)


def _embedding(path: Path, seed: int) -> None:
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    torch.manual_seed(seed + 1)
    model = WeSpeakerResNet34(sample_rate=16000, num_channels=1)
    # as pyannote's models/embedding/wespeaker/convert.py does (duration unused at inference)
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    _save_model(model, path)


def _plda(folder: Path, seed: int) -> None:
    """A well-conditioned random VBx transform + PLDA (W and B positive definite)."""
    rng = np.random.default_rng(seed + 2)
    lda, _ = np.linalg.qr(rng.standard_normal((EMBEDDING_DIM, PLDA_DIM)))   # orthonormal columns
    tr, _ = np.linalg.qr(rng.standard_normal((PLDA_DIM, PLDA_DIM)))        # orthogonal, invertible
    psi = np.sort(rng.uniform(0.5, 50.0, PLDA_DIM))[::-1].copy()           # between-class variances > 0
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "xvec_transform.npz", mean1=0.01 * rng.standard_normal(EMBEDDING_DIM),
             mean2=0.01 * rng.standard_normal(PLDA_DIM), lda=lda)
    np.savez(folder / "plda.npz", mu=0.01 * rng.standard_normal(PLDA_DIM), tr=tr, psi=psi)


def config_yaml(pyannote_version: str, segmentation_step: float = 0.1) -> str:
    return f"""\
# Built by scripts/build_pyannote_test_pipeline.py: RANDOM weights, for testing the load/run path only.
dependencies:
  pyannote.audio: {pyannote_version}
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    segmentation: $model/segmentation
    embedding: $model/embedding
    plda: $model/plda
    clustering: VBxClustering
    embedding_exclude_overlap: true
    segmentation_step: {segmentation_step}
    segmentation_batch_size: 32
    embedding_batch_size: 32
params:
  segmentation:
    min_duration_off: 0.0
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
"""


def build_pipeline(out_dir: str | os.PathLike, seed: int = 0, segmentation_step: float = 0.1) -> Path:
    """Write the pipeline folder (layout in the module docstring) into ``out_dir``; returns it.

    ``segmentation_step``: sliding-window step as a fraction of the 10 s chunk (pyannote's default
    0.1); tests use a larger step so the CPU run takes seconds, not a minute.
    """
    import pyannote.audio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _segmentation(out / "segmentation" / "pytorch_model.bin", seed)
    _embedding(out / "embedding" / "pytorch_model.bin", seed)
    _plda(out / "plda", seed)
    (out / "config.yaml").write_text(config_yaml(pyannote.audio.__version__, segmentation_step), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", help="folder to write (created; existing files are overwritten)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--segmentation-step", type=float, default=0.1,
                    help="sliding-window step, fraction of the 10 s chunk (default 0.1, as pyannote's)")
    args = ap.parse_args(argv)
    out = build_pipeline(args.out_dir, seed=args.seed, segmentation_step=args.segmentation_step)
    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:>10}  {p.relative_to(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
