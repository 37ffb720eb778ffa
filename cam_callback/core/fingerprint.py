"""A fingerprint of a model's weights: equal only for the same weights, bit for bit.

The tracker keeps one per recorded epoch (which weights a record describes, see
:mod:`cam_callback.tracker.lineage`) and ``evaluate`` one per saved table (which weights
it scored).
"""

from __future__ import annotations

import hashlib

import keras
import numpy as np

__all__ = ["CHUNK", "weights_fingerprint"]

CHUNK = 2**24  # bytes hashed per update: bounds the extra memory of one large array


def weights_fingerprint(model: keras.Model) -> str:
    """A short hash of every bit of ``model.weights`` (trainable and not, e.g. BatchNorm
    statistics): the first 16 hex digits of SHA-256 over each array's dtype, shape and bytes.

    Why every byte, and why SHA-256: the record's promise is that a fit continues
    only from weights it holds *bit for bit*. A strided sample misses changes
    between its samples (one weight of a 64x128 kernel changed by +123 went
    unseen); a random projection computed on the device sums in floating point,
    where a small change is lost to rounding, so it cannot promise bit-for-bit
    equality either. A hash of the bytes can, and SHA-256 runs at the speed of
    the copy off the device on CPUs with SHA extensions (x86 SHA-NI, ARMv8): the
    cost is one copy of the weights to the host and about 0.1 to 0.2 s per 100 MB,
    once per epoch (``benchmarks/bench_fingerprint.py``: MobileNetV2 and ResNet50).
    Arrays are read one at a time and hashed in slices of :data:`CHUNK` bytes, so
    the extra host memory is one array at most.

    Example:
        >>> a = weights_fingerprint(model)  # doctest: +SKIP
        >>> model.set_weights([w * 0 for w in model.get_weights()])  # doctest: +SKIP
        >>> a == weights_fingerprint(model)  # doctest: +SKIP
        False
    """
    h = hashlib.sha256()
    for variable in model.weights:
        h.update(f"{variable.dtype}{tuple(variable.shape)};".encode())
        flat = np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value)).reshape(-1)
        data = flat.view(np.uint8).data  # any dtype (bfloat16 too) as its raw bytes
        for i in range(0, len(data), CHUNK):
            h.update(data[i : i + CHUNK])  # hashlib releases the GIL over large buffers
    return h.hexdigest()[:16]
