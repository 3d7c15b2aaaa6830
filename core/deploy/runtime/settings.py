"""The server's settings and their command-line flags, defined once: ``python -m core serve``
and a bundle's ``python -m runtime`` (or ``serve.py``) both add these flags to their parser."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import SettingsError
from .images import MAX_PIXELS

TOKEN_ENV = "LAB2MARKET_TOKEN"


@dataclass(frozen=True)
class Settings:
    token: str | None = None  # a bearer token required on /predict and /metadata
    max_body_bytes: int = 8 * 1024 * 1024
    max_pixels: int = MAX_PIXELS  # checked from the image header, before decoding
    max_concurrency: int = 4  # inference batches in flight; later requests wait in the queue
    max_queue: int = 256  # requests admitted (waiting or running); one more is 429 at once
    queue_timeout_s: float = 5.0  # how long a request may wait for a slot (429 beyond)
    max_batch: int = 32  # requests run as one onnxruntime batch at most
    batch_window_ms: float = 2.0  # how long a batch waits for late arrivals once a slot is free
    timeout_s: float = 10.0  # the inference itself, once its batch started (504 beyond)
    body_timeout_s: float = 10.0  # receiving the body (408 beyond); no slot is held meanwhile
    header_timeout_s: float = 10.0  # receiving the request line and headers (connection closed)
    top_k: int = 3
    log_path: Path | None = None  # JSONL request log (None: no log)
    threads: int = 0  # onnxruntime intra-op threads (0: its default)

    def __post_init__(self) -> None:
        if min(self.max_concurrency, self.top_k, self.max_pixels, self.max_queue,
               self.max_batch) < 1:
            raise SettingsError("--max-concurrency, --max-queue, --max-batch, --top-k and "
                                "--max-pixels must be >= 1.")
        if min(self.timeout_s, self.body_timeout_s, self.header_timeout_s,
               self.queue_timeout_s) <= 0:
            raise SettingsError("--timeout, --queue-timeout, --body-timeout and "
                                "--header-timeout must be > 0.")
        if not 0 <= self.batch_window_ms <= 1000:
            raise SettingsError("--batch-window-ms must be between 0 and 1000.")
        if self.max_body_bytes <= 0 or self.threads < 0:
            raise SettingsError("--max-body-mb must be > 0 and --threads >= 0.")


def add_server_arguments(parser: argparse.ArgumentParser,
                         log_help: str = "JSONL request log") -> None:
    """The flags of the server (host, port, token, limits, timeouts, log)."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="default: loopback only")
    add("--port", type=int, default=8000)
    add("--token", help=f"require 'Authorization: Bearer TOKEN' (also ${TOKEN_ENV}); prefer "
                        "--token-file")
    add("--token-file", help="read the bearer token from this file")
    add("--max-concurrency", type=int, default=4,
        help="inference batches in flight; later requests wait in the queue (4)")
    add("--max-queue", type=int, default=Settings.max_queue,
        help="requests admitted at once (waiting or running); one more is answered 429 "
             f"({Settings.max_queue})")
    add("--queue-timeout", type=float, default=Settings.queue_timeout_s,
        help=f"seconds a request may wait for an inference slot, 429 above "
             f"({Settings.queue_timeout_s:g})")
    add("--max-batch", type=int, default=Settings.max_batch,
        help=f"requests run together as one onnxruntime batch at most ({Settings.max_batch}; "
             "1 turns batching off)")
    add("--batch-window-ms", type=float, default=Settings.batch_window_ms,
        help=f"milliseconds a batch waits for late arrivals ({Settings.batch_window_ms:g})")
    add("--max-body-mb", type=float, default=8.0, help="body cap, 413 above (8)")
    add("--max-pixels", type=int, default=MAX_PIXELS, help="pixel cap, 422 above")
    add("--timeout", type=float, default=10.0,
        help="seconds per inference once its batch started, 504 above (10)")
    add("--body-timeout", type=float, default=10.0,
        help="seconds to receive a request body, 408 above (10)")
    add("--header-timeout", type=float, default=10.0,
        help="seconds to receive a request's headers before the connection is closed (10)")
    add("--top-k", type=int, default=3)
    add("--threads", type=int, default=0, help="onnxruntime threads (0: auto)")
    add("--log", help=log_help)


def settings_from_args(args: argparse.Namespace, log_path: Path | None) -> Settings:
    """``Settings`` from the flags above; ``SettingsError`` for a value out of range."""
    return Settings(token=read_token(args.token, args.token_file),
                    max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                    max_pixels=args.max_pixels, max_concurrency=args.max_concurrency,
                    max_queue=args.max_queue, queue_timeout_s=args.queue_timeout,
                    max_batch=args.max_batch, batch_window_ms=args.batch_window_ms,
                    timeout_s=args.timeout, body_timeout_s=args.body_timeout,
                    header_timeout_s=args.header_timeout, top_k=args.top_k,
                    log_path=log_path, threads=args.threads)


def read_token(token: str | None, token_file: str | None) -> str | None:
    """The token file wins, then ``--token``, then ``$LAB2MARKET_TOKEN``; empty means none."""
    if token_file:
        try:
            return Path(token_file).read_text().strip() or None
        except OSError as exc:
            raise SettingsError(f"Cannot read the token file {token_file}: "
                                f"{exc.strerror}.") from None
    return token or os.environ.get(TOKEN_ENV) or None
