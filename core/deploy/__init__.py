"""Deployment: export bundles, int8 quantization, latency, and the REST server.

Torch-free at import (the Deploy page reads bundles and request logs through it):
``core.deploy.bundle`` (bundles on disk), ``core.deploy.monitor`` (the request log),
``core.deploy.serve`` (the server inside the project) and ``core.deploy.runtime`` (the serving
runtime: decoding, preprocessing, manifests, the app; the project imports it and every ONNX
bundle carries a copy of the folder). The torch side lives in ``core.deploy.convert``,
``core.deploy.quantize``, ``core.deploy.latency`` and ``core.deploy.export``.
"""
