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
