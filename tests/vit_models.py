"""Tiny, randomly initialised Vision Transformers for tests (no presets, no downloads).

- :func:`functional_vit`: a Functional ViT from Keras layers, in the style of the
  keras.io "Image classification with Vision Transformer" example; every block's
  layers are top-level, so the model can be split at any of them.
- :func:`hub_vit`: keras-hub's ``ViTImageClassifier`` on a tiny ``ViTBackbone``.
- :func:`hub_dinov2`: keras-hub's ``DINOV2Backbone`` (register tokens) with a class-token head.
- :func:`hub_swin`: keras-hub's ``SwinTransformerBackbone`` with a pooled head.

keras-hub builders return ``None`` where the installed keras-hub lacks the model.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


class ClassToken(keras.layers.Layer):
    """Prepends a learned class token to ``[b, n, d]`` patch embeddings."""

    def __init__(self, initializer: str = "random_normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initializer = initializer

    def build(self, input_shape: Any) -> None:
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]), initializer=self.initializer, name="token"
        )

    def call(self, x: Any) -> Any:
        token = keras.ops.tile(keras.ops.cast(self.token, x.dtype), (keras.ops.shape(x)[0], 1, 1))
        return keras.ops.concatenate([token, x], axis=1)


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding to ``[b, tokens, d]``."""

    def __init__(self, initializer: str = "random_normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initializer = initializer

    def build(self, input_shape: Any) -> None:
        self.pos = self.add_weight(
            shape=(1, input_shape[1], input_shape[2]), initializer=self.initializer, name="pos"
        )

    def call(self, x: Any) -> Any:
        return x + keras.ops.cast(self.pos, x.dtype)


class TakeToken(keras.layers.Layer):
    """The class token ``[b, d]`` of ``[b, tokens, d]``."""

    def call(self, x: Any) -> Any:
        return x[:, 0]


def functional_vit(
    *,
    image: int = 32,
    patch: int = 8,
    dim: int = 16,
    depth: int = 2,
    heads: int = 2,
    classes: int = 3,
    class_token: bool = True,
    seed: int | None = 0,
    random_init: bool = True,
) -> keras.Model:
    """A keras.io-style ViT: patches -> (class token) -> blocks -> class token or GAP -> Dense.

    Layer names: ``patches``, ``tokens``, ``block{i}_ln1``, ``block{i}_mha``,
    ``block{i}_add1``, ``block{i}_ln2``, ``block{i}_mlp1``, ``block{i}_mlp2``,
    ``block{i}_out`` (i from 1), ``final_ln``, ``pool``, ``logits``.
    The head is linear (logits); with ``class_token`` it reads token 0. ``seed=None``
    leaves the seed alone (``keras.utils.set_random_seed`` imports TensorFlow), and
    ``random_init=False`` starts every weight at zero, for a model whose weights are then
    loaded from a file (on JAX each random initializer compiles an XLA program: seconds).

    Example:
        >>> functional_vit().get_layer("block2_out").output.shape  # doctest: +SKIP
        (None, 17, 16)
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    n = (image // patch) ** 2
    kernel = {} if random_init else {"kernel_initializer": "zeros"}
    token = "random_normal" if random_init else "zeros"
    inp = keras.Input((image, image, 3))
    x = keras.layers.Conv2D(dim, patch, strides=patch, name="patches", **kernel)(inp)
    x = keras.layers.Reshape((n, dim), name="tokens")(x)
    if class_token:
        x = ClassToken(token, name="class_token")(x)
    x = PositionEmbedding(token, name="position")(x)
    for i in range(1, depth + 1):
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        y = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_mha",
                                            **kernel)(y, y)  # fmt: skip
        x = keras.layers.Add(name=f"block{i}_add1")([x, y])
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        y = keras.layers.Dense(2 * dim, activation="gelu", name=f"block{i}_mlp1", **kernel)(y)
        y = keras.layers.Dense(dim, name=f"block{i}_mlp2", **kernel)(y)
        x = keras.layers.Add(name=f"block{i}_out")([x, y])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = TakeToken(name="pool")(x) if class_token else keras.layers.GlobalAveragePooling1D(
        name="pool"
    )(x)
    out = keras.layers.Dense(classes, name="logits", **kernel)(x)
    return keras.Model(inp, out, name="functional_vit")


def _hub() -> Any:
    try:
        import keras_hub
    except ImportError:
        return None
    return keras_hub


def hub_vit(
    *, image: int = 32, patch: int = 8, depth: int = 2, classes: int = 3, seed: int = 0
) -> keras.Model | None:
    """keras-hub's ``ViTImageClassifier`` (class-token head) on a tiny ``ViTBackbone``.

    Paths: ``vi_t_backbone/vit_encoder/transformer_block_{i}``, and inside each block
    ``ln_1``, ``mha``, ``ln_2``, ``mlp``.

    Example:
        >>> hub_vit().backbone.name  # doctest: +SKIP
        'vi_t_backbone'
    """
    hub = _hub()
    if hub is None:
        return None
    keras.utils.set_random_seed(seed)
    backbone = hub.models.ViTBackbone(
        image_shape=(image, image, 3), patch_size=patch, num_layers=depth, num_heads=2,
        hidden_dim=16, mlp_dim=32,
    )  # fmt: skip
    return hub.models.ViTImageClassifier(backbone=backbone, num_classes=classes, preprocessor=None)


def hub_dinov2(
    *, image: int = 28, patch: int = 7, registers: int = 4, classes: int = 3, seed: int = 0
) -> keras.Model | None:
    """keras-hub's ``DINOV2Backbone`` with ``registers`` register tokens and a class-token head.

    Example:
        >>> hub_dinov2().output.shape  # doctest: +SKIP
        (None, 3)
    """
    hub = _hub()
    if hub is None or not hasattr(hub.models, "DINOV2Backbone"):
        return None
    keras.utils.set_random_seed(seed)
    backbone = hub.models.DINOV2Backbone(
        patch_size=patch, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32,
        num_register_tokens=registers, image_shape=(image, image, 3),
        position_embedding_shape=(image, image, 3),
    )  # fmt: skip
    inp = keras.Input((image, image, 3))
    x = TakeToken(name="pool")(backbone({"images": inp}))
    return keras.Model(inp, keras.layers.Dense(classes, name="logits")(x), name="dinov2_clf")


def hub_swin(*, image: int = 32, classes: int = 3, seed: int = 0) -> keras.Model | None:
    """keras-hub's ``SwinTransformerBackbone`` (two stages, windows of 2) with a pooled head.

    Example:
        >>> hub_swin().output.shape  # doctest: +SKIP
        (None, 3)
    """
    hub = _hub()
    if hub is None or not hasattr(hub.models, "SwinTransformerBackbone"):
        return None
    keras.utils.set_random_seed(seed)
    backbone = hub.models.SwinTransformerBackbone(
        image_shape=(image, image, 3), embed_dim=16, depths=(1, 1), num_heads=(2, 2),
        window_size=2, patch_size=4, drop_path=0.0,
    )  # fmt: skip
    inp = keras.Input((image, image, 3))
    feats = backbone(inp)
    pool = (
        keras.layers.GlobalAveragePooling1D(name="pool")
        if len(feats.shape) == 3
        else keras.layers.GlobalAveragePooling2D(name="pool")
    )
    out = keras.layers.Dense(classes, name="logits")(pool(feats))
    return keras.Model(inp, out, name="swin_clf")


def images(n: int = 4, size: int = 32, seed: int = 1) -> np.ndarray:
    """``n`` random float32 images ``[n, size, size, 3]`` in [0, 1)."""
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)
