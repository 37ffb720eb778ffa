"""EfficientNet-Lite0 written in PyTorch, the reference for ``examples/lite0.py``'s Keras port.

Its module names are the state dict's (``_conv_stem``, ``_blocks.3._depthwise_conv``...), so
``load_state_dict(strict=True)`` proves the two agree on every tensor. TensorFlow's "same"
padding is written out (``F.pad`` before each convolution): the port's ``padding="same"`` must
reproduce it, odd sizes and stride 2 included.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]  # fmt: skip


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding (more on the bottom and right)."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1],
                              strict=True):  # fmt: skip
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)


class Block(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, expand):
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out
        # Modules without weights, so that a layer's ReLU6 output can be hooked and explained.
        self.expand_relu, self.depthwise_relu = nn.ReLU6(), nn.ReLU6()

    def forward(self, x):
        y = self.expand_relu(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._bn2(self._project_conv(self.depthwise_relu(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.skip else y


class Lite0(nn.Module):
    """Inputs already scaled, ``(x - 127) / 128``, channels first."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks, c = [], 32
        for repeats, kernel, stride, expand, out in STAGES:
            for r in range(repeats):
                blocks.append(Block(c, out, kernel, stride if r == 0 else 1, expand))
                c = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self.features = nn.Identity()  # the head's ReLU6 output: the layer the maps explain
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.features(F.relu6(self._bn1(self._conv_head(x))))
        return self._fc(x.mean((2, 3)))


def imagenet_lite0(state: dict) -> Lite0:
    """The PyTorch Lite0 in eval mode, with ``state`` (tensors or arrays) loaded strictly."""
    model = Lite0()
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
    return model.eval()
