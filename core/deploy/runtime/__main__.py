"""Serve the bundle this runtime sits in: ``python -m runtime`` (or ``python serve.py``) from the
bundle folder. Every file is checked against ``manifest.json`` first; a changed bundle exits 2."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .app import create_app
from .errors import BundleError, SettingsError
from .model import BundleModel
from .server import run
from .settings import add_server_arguments, settings_from_args

log = logging.getLogger(__name__)

# Inside a bundle this package is ``<bundle>/runtime/``, so its parent is the bundle.
HERE = Path(__file__).resolve().parent.parent
LOG_FILE = "requests.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime",
                                     description="Serve a Lab2Market ONNX bundle over HTTP.")
    parser.add_argument("--bundle", default=str(HERE),
                        help="the bundle folder (default: the one holding this runtime)")
    add_server_arguments(parser, f"JSONL request log (default: {LOG_FILE} in the bundle)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        model = BundleModel(args.bundle, threads=args.threads)
        settings = settings_from_args(args, Path(args.log) if args.log else model.folder / LOG_FILE)
    except (BundleError, SettingsError) as exc:
        log.error("%s", exc)
        return 2
    log.info("Serving %s on http://%s:%d (API docs at /docs)", model.version, args.host, args.port)
    run(create_app(model, settings), args.host, args.port, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
