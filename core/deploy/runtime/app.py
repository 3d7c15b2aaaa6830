"""The REST app of a bundle: FastAPI, inference on onnxruntime in a small thread pool.

``POST /predict`` (an image upload, or JSON features for tables) -> top-k; ``GET /health``;
``GET /metadata``; OpenAPI docs at ``/docs``. Safe by default: an optional bearer token (401),
a body cap (413), a pixel cap (422), a body deadline (408), a bounded wait queue (a request
waits at most ``queue_timeout_s`` for an inference slot, and at most ``max_queue`` are admitted
at once: 429 beyond either), an inference deadline (504), and a JSONL request log. Requests
that arrive together run as one onnxruntime batch (``batching.MicroBatcher``).

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations.
"""

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from .batching import MicroBatcher
from .errors import InputError
from .images import open_image
from .model import BundleModel, RequestLog
from .preprocess import feature_array, image_array
from .settings import Settings

log = logging.getLogger(__name__)

PREDICT_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object", "required": ["features"], "properties": {
        "features": {"type": "array", "items": {"type": "number"}}}}},
}}


def create_app(model: BundleModel, settings: Settings,
               on_startup: Callable[[], None] | None = None) -> FastAPI:
    """The FastAPI app: ``POST /predict``, ``GET /health``, ``GET /metadata``, ``/docs``."""
    routes = Routes(model, settings)
    app = FastAPI(title=f"Lab2Market model {model.manifest.get('bundle')}",
                  version=model.version, description="Classifier exported by Lab2Market.",
                  lifespan=routes.lifespan(on_startup))
    app.add_api_route("/predict", routes.predict, methods=["POST"],
                      openapi_extra={"requestBody": PREDICT_BODY},
                      summary="Top-k classes of an image upload (or of JSON features for tables)")
    app.add_api_route("/health", routes.health, methods=["GET"],
                      summary="Liveness: no token needed")
    app.add_api_route("/metadata", routes.metadata, methods=["GET"],
                      summary="Classes, input spec and model version")
    return app


class Routes:
    """The endpoints and the state they share: the admission count, the decoding threads, the
    micro-batcher (its inference slots), the log."""

    def __init__(self, model: BundleModel, settings: Settings):
        self.model, self.settings = model, settings
        self.pool = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="decode")
        self.batcher = MicroBatcher(model.predict, settings.max_concurrency, settings.max_batch,
                                    settings.batch_window_ms / 1000)
        self.admitted, self._lock = 0, threading.Lock()
        self.request_log = RequestLog(settings.log_path) if settings.log_path else None
        self.stats = {"requests": 0, "errors": 0, "shed": 0, "started": time.time()}

    def lifespan(self, on_startup: Callable[[], None] | None):
        @asynccontextmanager
        async def lifespan(app: FastAPI):
            if on_startup:
                on_startup()
            yield
            self.batcher.close()
            self.pool.shutdown(wait=False, cancel_futures=True)

        return lifespan

    # -- endpoints -------------------------------------------------------------------------------

    async def predict(self, request: Request) -> JSONResponse:
        start, when = time.perf_counter(), time.time()
        status, headers = 200, None
        try:
            result = await self._answer(request)
        except HTTPException as exc:
            status, result, headers = exc.status_code, {"detail": exc.detail}, exc.headers
        except InputError as exc:
            status, result = 422, {"detail": str(exc)}
        except ClientDisconnect:  # nobody is left to answer; the log still says what happened
            status, result = 499, {"detail": "The client disconnected before its body arrived."}
        except Exception as exc:  # noqa: BLE001 - a bug answers 500; the server stays up
            log.exception("predict failed")
            status, result = 500, {"detail": f"Internal error: {type(exc).__name__}"}
        latency_ms = round((time.perf_counter() - start) * 1000, 3)
        if status == 200:
            result.update(model_version=self.model.version, latency_ms=latency_ms)
        self._record(when, status, result, latency_ms)
        return JSONResponse(result, status_code=status, headers=headers)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model_version": self.model.version,
                "requests": self.stats["requests"], "errors": self.stats["errors"],
                "shed": self.stats["shed"], "admitted": self.admitted,
                "batching": self.batcher.snapshot(),
                "uptime_s": round(time.time() - self.stats["started"], 1)}

    def metadata(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {**self.model.metadata(), "top_k": self.settings.top_k,
                "max_body_bytes": self.settings.max_body_bytes,
                "max_pixels": self.settings.max_pixels,
                "max_concurrency": self.settings.max_concurrency,
                "max_queue": self.settings.max_queue,
                "queue_timeout_s": self.settings.queue_timeout_s,
                "max_batch": self.settings.max_batch}

    # -- the steps of a prediction ---------------------------------------------------------------

    async def _answer(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        body = await self._read_body(request)
        content_type = request.headers.get("content-type", "")
        if self.model.modality == "image" and "multipart/form-data" in content_type:
            body, content_type = await form_file(request, body), ""
        return await self._infer_in_slot(content_type, body)

    def _authorize(self, request: Request) -> None:
        if self.settings.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.settings.token}".encode()):
            raise HTTPException(401, "A valid bearer token is required.",
                                headers={"WWW-Authenticate": "Bearer"})

    async def _read_body(self, request: Request) -> bytes:
        cap, deadline = self.settings.max_body_bytes, self.settings.body_timeout_s
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cap:
            raise HTTPException(413, too_large(cap))
        try:
            return await asyncio.wait_for(read_capped(request, cap), deadline)
        except TimeoutError:
            raise HTTPException(408, f"The body did not arrive within {deadline:g} s.") from None

    async def _infer_in_slot(self, content_type: str, body: bytes) -> dict[str, Any]:
        # Admitted only now, with the whole body in memory: a client that stalls its body holds
        # no place, so slow clients cannot turn every other request into a 429.
        with self._lock:
            if self.admitted >= self.settings.max_queue:
                raise busy(f"{self.settings.max_queue} requests are already waiting")
            self.admitted += 1
        try:
            loop = asyncio.get_running_loop()
            x = await loop.run_in_executor(self.pool, self._prepare, content_type, body)
            probs = await self._predict(x)
        finally:
            with self._lock:
                self.admitted -= 1
        return {"predictions": self.model.top_k(probs, self.settings.top_k)}

    async def _predict(self, x: Any) -> Any:
        """``x``'s probabilities from the batcher: 429 when no slot came within the queue
        timeout (the request is then withdrawn, never computed), 504 when its batch ran past
        the inference deadline."""
        future = self.batcher.submit(x)
        waiter = asyncio.wrap_future(future)
        waiter.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({waiter}, timeout=self.settings.queue_timeout_s)
        if not done:
            if future.cancel():  # still waiting for a slot: withdrawn
                raise busy(f"no inference slot within {self.settings.queue_timeout_s:g} s")
            done, _ = await asyncio.wait({waiter}, timeout=self.settings.timeout_s)
            if not done:
                raise HTTPException(504, f"No answer within {self.settings.timeout_s:g} s.")
        return waiter.result()

    def _prepare(self, content_type: str, body: bytes) -> Any:
        """Decode and preprocess one request's payload (422 on a bad one)."""
        spec = self.model.spec
        if self.model.modality == "tabular":
            return feature_array(parse_json(body).get("features"), spec)
        data = image_bytes(content_type, body) if content_type else body
        return image_array(open_image(data, self.settings.max_pixels), spec)

    def _record(self, when: float, status: int, result: dict[str, Any],
                latency_ms: float) -> None:
        self.stats["requests"] += 1
        self.stats["errors"] += status >= 400
        self.stats["shed"] += status == 429
        if self.request_log is None:
            return
        record: dict[str, Any] = {"time": when, "latency_ms": latency_ms, "status": status}
        if status == 200:
            best = result["predictions"][0]
            record.update({"class": best["class"], "confidence": round(best["probability"], 6)})
        else:
            record["error"] = str(result["detail"])[:200]
        self.request_log.write(record)


def busy(why: str) -> HTTPException:
    return HTTPException(429, f"The server is busy ({why}); retry shortly.",
                         headers={"Retry-After": "1"})


def _retrieve(future: asyncio.Future) -> None:
    """Mark a waiter's outcome as seen: one nobody awaits any more (a 504) logs no warning."""
    if not future.cancelled():
        future.exception()


# -- bodies --------------------------------------------------------------------------------------


async def read_capped(request: Request, cap: int) -> bytes:
    """The body, refused with 413 as soon as it grows past ``cap`` (no Content-Length needed)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise HTTPException(413, too_large(cap))
        chunks.append(chunk)
    return b"".join(chunks)


async def form_file(request: Request, body: bytes) -> bytes:
    """The ``file`` part of a multipart body already read (and size-checked) into memory."""
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


def image_bytes(content_type: str, body: bytes) -> bytes:
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        return body
    raise InputError("Send an image as multipart/form-data (field 'file') or as a raw image/* "
                     f"body; got {content_type or 'no content type'}.")


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise InputError('Send JSON like {"features": [1.0, 2.0, ...]}.') from None
    if not isinstance(data, dict):
        raise InputError('Send JSON like {"features": [1.0, 2.0, ...]}.')
    return data


def too_large(cap: int) -> str:
    return f"The request body is larger than the cap of {cap:,} bytes."
