"""Deployment: export bundles, int8 quantization, latency, and the REST server's runtime.

Torch-free at import (the Deploy page reads bundles and request logs through it):
``core.deploy.bundle`` (bundles on disk), ``core.deploy.monitor`` (the request log),
``core.deploy.runtime`` and ``core.deploy.webapp`` (the server, also copied into bundles).
The torch side lives in ``core.deploy.convert``, ``core.deploy.quantize``,
``core.deploy.latency`` and ``core.deploy.export``.
"""
