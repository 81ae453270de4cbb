import numpy as np

from visloc_ros.core.encoder import Encoder, EncoderTraining, train_encoder


def clustered(n, d, k, rng, noise=0.15):
    centres = rng.normal(size=(k, d))
    lab = rng.integers(0, k, n)
    x = np.abs(centres[lab] + noise * rng.normal(size=(n, d)))  # CNN descriptors are non-negative
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), lab, centres


def test_encoder_trains_exports_and_keeps_neighbours(tmp_path):
    rng = np.random.default_rng(0)
    x, lab, centres = clustered(300, 128, 30, rng)
    summary = train_encoder(x, tmp_path / "enc.onnx", EncoderTraining(latent_dim=32, hidden_dim=64, steps=200))
    assert summary["latent_dim"] == 32 and summary["reconstruction_cosine"] > 0.8
    enc = Encoder(tmp_path / "enc.onnx", "onnxruntime", 1)
    z = enc.batch(x)
    assert z.shape == (300, 32)
    assert np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-4)
    # queries: fresh noisy samples of the same clusters find a map item of their cluster
    q = np.abs(centres[lab[:100]] + 0.15 * rng.normal(size=(100, 128)))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    zq = enc.batch(q)
    top = np.argmax(zq @ z.T, axis=1)
    assert np.mean(lab[top] == lab[:100]) > 0.9
    assert np.allclose(enc(x[0]), z[0], atol=1e-5)


def test_small_map_latent_larger_than_rank(tmp_path):
    rng = np.random.default_rng(1)
    x, _, _ = clustered(20, 64, 5, rng)
    train_encoder(x, tmp_path / "e.onnx", EncoderTraining(latent_dim=48, hidden_dim=32, steps=30))
    z = Encoder(tmp_path / "e.onnx", "onnxruntime", 1).batch(x)
    assert z.shape == (20, 48) and np.all(np.isfinite(z))


def test_training_device_is_recorded_and_a_missing_gpu_is_an_error(tmp_path):
    import pytest
    import torch

    from visloc_ros.core.encoder import train_device
    from visloc_ros.core.errors import MapError

    rng = np.random.default_rng(2)
    x, _, _ = clustered(40, 32, 4, rng)
    s = train_encoder(x, tmp_path / "e.onnx", EncoderTraining(latent_dim=8, hidden_dim=16, steps=5, device="cpu"))
    assert s["device"] == "cpu"
    assert train_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(MapError, match="unknown training device 'tpu'"):
        train_device("tpu")
    n = torch.cuda.device_count()  # cuda:0 on a machine without a GPU, one past the last GPU on one with
    with pytest.raises(MapError, match=f"cannot train the encoder on cuda:{n}: "):
        train_device(f"cuda:{n}")


def test_gpu_training_matches_cpu_training(tmp_path):
    """On a CUDA machine: the encoder trained on the GPU is as good as the CPU one, and as alike as two seeds."""
    import pytest
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU that torch sees")
    rng = np.random.default_rng(0)
    x, lab, _ = clustered(300, 128, 30, rng)
    conf = dict(latent_dim=32, hidden_dim=64, steps=200)
    s_cpu = train_encoder(x, tmp_path / "cpu.onnx", EncoderTraining(device="cpu", **conf))
    s_gpu = train_encoder(x, tmp_path / "gpu.onnx", EncoderTraining(device="cuda", **conf))
    train_encoder(x, tmp_path / "cpu1.onnx", EncoderTraining(device="cpu", seed=1, **conf))
    assert s_gpu["device"].startswith("cuda:0 (") and s_cpu["device"] == "cpu"
    assert abs(s_gpu["reconstruction_cosine"] - s_cpu["reconstruction_cosine"]) < 0.01
    z_cpu, z_gpu, z_cpu1 = (Encoder(tmp_path / f, "onnxruntime", 1).batch(x)
                            for f in ("cpu.onnx", "gpu.onnx", "cpu1.onnx"))
    # retrieval sees only the similarities between latents: the GPU's differ from the CPU's no more than two CPU
    # seeds' do (a principal direction's sign is LAPACK's or cuSOLVER's choice; float rounding differs)
    gram = lambda z: z @ z.T  # noqa: E731
    gpu_vs_cpu = np.abs(gram(z_gpu) - gram(z_cpu)).mean()
    seed_vs_seed = np.abs(gram(z_cpu1) - gram(z_cpu)).mean()
    assert gpu_vs_cpu < 1.5 * seed_vs_seed, (gpu_vs_cpu, seed_vs_seed)
    nn = lambda z: np.argsort(-(z @ z.T), axis=1)[:, 1]  # noqa: E731
    assert np.mean(lab[nn(z_gpu)] == lab) > 0.9 and np.mean(lab[nn(z_cpu)] == lab) > 0.9
