"""The REST server of an exported bundle: FastAPI on uvicorn, inference on onnxruntime.

``POST /predict`` (an image upload, or JSON features for tables) -> top-k; ``GET /health``;
``GET /metadata``; OpenAPI docs at ``/docs``. Safe by default: loopback, an optional bearer
token (401), a body cap (413), a pixel cap (422), bounded concurrency (429 at once, never a
queue that hangs), timeouts (408/504), and a JSONL request log.

Copied into every ONNX bundle as ``serve.py`` (with ``runtime.py`` beside it), so it imports
nothing else from ``core``; ``core.deploy.serve`` builds the same app inside the project. No
``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations, and
``Request`` is imported inside ``create_app``.
"""

import argparse
import asyncio
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

try:  # inside the project
    from core.deploy.runtime import (
        BundleError,
        BundleModel,
        InputError,
        RequestLog,
        Settings,
        feature_array,
        image_array,
        open_image,
    )
except ModuleNotFoundError:  # inside an exported bundle: runtime.py sits next to this file
    from runtime import (  # type: ignore[no-redef]
        BundleError,
        BundleModel,
        InputError,
        RequestLog,
        Settings,
        feature_array,
        image_array,
        open_image,
    )

log = logging.getLogger("lab2market.serve")

Decoder = Callable[[bytes, int, str], Image.Image]

_PREDICT_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object", "required": ["features"], "properties": {
        "features": {"type": "array", "items": {"type": "number"}}}}},
}}


def create_app(model: BundleModel, settings: Settings, decode: Decoder = open_image,
               on_startup: Callable[[], None] | None = None):
    """The FastAPI app: ``POST /predict``, ``GET /health``, ``GET /metadata``, ``/docs``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse

    gate = threading.Semaphore(settings.max_concurrency)
    pool = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="predict")
    request_log = RequestLog(settings.log_path) if settings.log_path else None
    stats = {"requests": 0, "errors": 0, "started": time.time()}

    @asynccontextmanager
    async def lifespan(app):
        if on_startup:
            on_startup()
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"Lab2Market model {model.manifest.get('bundle')}", lifespan=lifespan,
                  version=model.version, description="Classifier exported by Lab2Market.")

    def authorize(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.token}".encode()):
            raise HTTPException(401, "A valid bearer token is required.",
                                headers={"WWW-Authenticate": "Bearer"})

    def infer(content_type: str, body: bytes) -> dict[str, Any]:
        if model.modality == "tabular":
            x = feature_array(_json(body).get("features"), model.spec)
        else:
            data = _image_bytes(content_type, body) if content_type else body
            x = image_array(decode(data, settings.max_pixels, model.spec["mode"]), model.spec)
        return {"predictions": model.top_k(model.predict(x[None])[0], settings.top_k)}

    async def guarded(request: Request) -> dict[str, Any]:
        authorize(request)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            raise HTTPException(413, _too_large(settings))
        if not gate.acquire(blocking=False):
            raise HTTPException(429, "The server is busy; retry shortly.",
                                headers={"Retry-After": "1"})
        submitted = False
        try:
            try:
                body = await asyncio.wait_for(_read_capped(request, settings), settings.timeout_s)
            except asyncio.TimeoutError:
                raise HTTPException(408, f"The body did not arrive within {settings.timeout_s:g}"
                                         " s.") from None
            content_type = request.headers.get("content-type", "")
            if model.modality == "image" and "multipart/form-data" in content_type:
                body, content_type = await _form_file(request, body), ""
            future = pool.submit(infer, content_type, body)
            future.add_done_callback(lambda _: gate.release())
            submitted = True
            return await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"No answer within {settings.timeout_s:g} s.") from None
        finally:
            if not submitted:
                gate.release()

    @app.post("/predict", openapi_extra={"requestBody": _PREDICT_BODY},
              summary="Top-k classes of an image upload (or of JSON features for tables)")
    async def predict(request: Request):
        start = time.perf_counter()
        record: dict[str, Any] = {"time": time.time()}
        headers = None
        try:
            result = await guarded(request)
            status = 200
        except HTTPException as exc:
            status, result, headers = exc.status_code, {"detail": exc.detail}, exc.headers
        except InputError as exc:
            status, result = 422, {"detail": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bug answers 500; the server stays up
            log.exception("predict failed")
            status, result = 500, {"detail": f"Internal error: {type(exc).__name__}"}
        latency = (time.perf_counter() - start) * 1000
        stats["requests"] += 1
        stats["errors"] += status >= 400
        record.update(latency_ms=round(latency, 3), status=status)
        if status == 200:
            best = result["predictions"][0]
            record.update({"class": best["class"], "confidence": round(best["probability"], 6)})
            result.update(model_version=model.version, latency_ms=round(latency, 3))
        else:
            record["error"] = str(result["detail"])[:200]
        if request_log:
            request_log.write(record)
        return JSONResponse(result, status_code=status, headers=headers)

    @app.get("/health", summary="Liveness: no token needed")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": model.version, "requests": stats["requests"],
                "errors": stats["errors"], "uptime_s": round(time.time() - stats["started"], 1)}

    @app.get("/metadata", summary="Classes, input spec and model version")
    def metadata(request: Request) -> dict[str, Any]:
        authorize(request)
        return {**model.metadata(), "top_k": settings.top_k,
                "max_body_bytes": settings.max_body_bytes, "max_pixels": settings.max_pixels}

    return app


async def _read_capped(request, settings: Settings) -> bytes:
    from fastapi import HTTPException

    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise HTTPException(413, _too_large(settings))
        chunks.append(chunk)
    return b"".join(chunks)


async def _form_file(request, body: bytes) -> bytes:
    """The ``file`` part of a multipart body already read (and size-checked) into memory."""
    from starlette.requests import Request

    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=4,
                                                         max_part_size=len(body) + 1)
    except Exception as exc:  # noqa: BLE001 - a malformed multipart body is the client's error
        raise InputError(f"The multipart body cannot be parsed ({exc}).") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InputError("Send the image as a multipart file field named 'file'.")
    return await upload.read()


def _image_bytes(content_type: str, body: bytes) -> bytes:
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        return body
    raise InputError("Send an image as multipart/form-data (field 'file') or as a raw image/* "
                     f"body; got {content_type or 'no content type'}.")


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise InputError('Send JSON like {"features": [1.0, 2.0, ...]}.') from None
    if not isinstance(data, dict):
        raise InputError('Send JSON like {"features": [1.0, 2.0, ...]}.')
    return data


def _too_large(settings: Settings) -> str:
    return f"The request body is larger than the cap of {settings.max_body_bytes:,} bytes."


def run(app, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn (a hard cap of 1000 connections; keep-alive 5 s)."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("Listening on %s: the server is reachable from other machines.", host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_keep_alive=5, limit_concurrency=1000,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run()


def settings_from_args(args: argparse.Namespace, log_path: Path | None) -> Settings:
    token = args.token or os.environ.get("LAB2MARKET_TOKEN") or None
    if args.token_file:
        token = Path(args.token_file).read_text().strip() or None
    return Settings(token=token, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                    max_pixels=args.max_pixels, max_concurrency=args.max_concurrency,
                    timeout_s=args.timeout, top_k=args.top_k, log_path=log_path,
                    threads=args.threads)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (or set "
                                        "$LAB2MARKET_TOKEN)")
    parser.add_argument("--token-file", help="read the token from this file")
    parser.add_argument("--max-concurrency", type=int, default=4,
                        help="requests in flight before 429")
    parser.add_argument("--max-body-mb", type=float, default=8.0, help="body cap (413 above)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="pixel cap (422)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: auto)")
    parser.add_argument("--log", help="JSONL request log (default: requests.jsonl in the bundle)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a Lab2Market ONNX bundle over HTTP.")
    parser.add_argument("--bundle", default=str(Path(__file__).resolve().parent))
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        model = BundleModel(args.bundle, threads=args.threads)
    except BundleError as exc:
        log.error("%s", exc)
        return 2
    log_path = Path(args.log) if args.log else Path(args.bundle) / "requests.jsonl"
    run(create_app(model, settings_from_args(args, log_path)), args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
