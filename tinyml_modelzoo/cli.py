"""The command line: arguments in, exit status out. Errors the user can fix become a
short message and exit status 2; ``--debug`` shows the traceback instead."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

USAGE_EXAMPLES = """examples:
  ./run_tinyml_modelzoo.sh examples/hello_world/config.yaml
  ./run_tinyml_modelzoo.sh examples/hello_world/config.yaml --set training.training_epochs=5
  ./run_tinyml_modelzoo.sh --resume runs/hello_world/run/20261123-101500
  ./run_tinyml_modelzoo.sh --list-models
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_tinyml_modelzoo.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train, test, quantize and compile tiny time-series classifiers for TI MCUs "
                    "from one YAML config.", epilog=USAGE_EXAMPLES)
    parser.add_argument("config", nargs="?", help="YAML config file (see examples/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (YAML-typed); repeatable")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its folder")
    parser.add_argument("--nas-worker", metavar="RUN_DIR",
                        help="join the multi-trial search of RUN_DIR as an extra worker (shared nas.storage)")
    parser.add_argument("--list-models", action="store_true", help="list the model zoo and exit")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    args = parser.parse_args(argv)
    if not (args.config or args.resume or args.list_models or args.nas_worker):
        parser.error("give a CONFIG.yaml (or --resume RUN_DIR)")
    return args


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is now (it may be replaced, e.g. by test capture)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_console_logging(debug: bool) -> None:
    logger = logging.getLogger("tinyml_modelzoo")
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in list(logger.handlers):  # one console handler, and no file handler of an earlier run
        logger.removeHandler(handler)
        handler.close()
    console = _ConsoleHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_console_logging(args.debug)
    try:
        return _run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; continue later with --resume RUN_DIR", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # an unexpected failure: short message unless --debug
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n(run again with --debug for the traceback, "
              f"and please report it)", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from .config import config_from_dict, load_config
    from .config.loader import apply_overrides
    from .report import print_report
    from .rundir import RunDir

    if args.list_models:
        from .zoo import get_entry, list_models
        for name in list_models():
            entry = get_entry(name)
            print(f"{name:14s} {entry.size_class:3s} {'NPU' if entry.npu_ready else '   '}  {entry.description}")
        return 0
    if args.nas_worker:
        return _nas_worker(Path(args.nas_worker), args.overrides)
    if args.resume:
        run = RunDir.open_existing(args.resume)
        raw, source = run.config_for_resume()
        apply_overrides(raw, args.overrides, "--set")
        config = config_from_dict(raw, source if source and source.exists() else run.path / "config_resolved.yaml")
        logging.getLogger("tinyml_modelzoo").info("resuming run %s", run.path)
    else:
        config = load_config(args.config, args.overrides)
        run = RunDir.create(config)
    run.attach_log()
    logging.getLogger("tinyml_modelzoo").info("run folder: %s", run.path)
    from .pipeline import run_pipeline
    try:
        summary = run_pipeline(config, run)
    except UserError:
        _mark_failed(run)
        raise
    print_report(summary)
    return 0


def _mark_failed(run) -> None:
    import json
    try:
        summary = json.loads(run.summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    summary["status"] = "failed"
    run.write_summary(summary)


def _nas_worker(run_path: Path, overrides: list[str]) -> int:
    from .nas_multitrial import join_as_worker
    return join_as_worker(run_path, overrides)
