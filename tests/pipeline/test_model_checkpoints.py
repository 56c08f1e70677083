"""Networks, checkpoints and their resolution, against the original's own files (needs ../shared)."""
from __future__ import annotations

import hashlib
import tomllib

import numpy as np
import pytest
import torch

from conftest import CKPT_DIR, REFERENCE, ort_run
from zoo.core.model import priors as P
from zoo.core.model.processing import decode

REF_CASES = [
    ("rfb-320", "decoded", "version-RFB-320.onnx"),
    ("slim-320", "decoded", "version-slim-320.onnx"),
    ("rfb-640", "decoded", "version-RFB-640.onnx"),
    ("rfb-320", "raw", "version-RFB-320_simplified.onnx"),
    ("slim-320", "raw", "version-slim-320_simplified.onnx"),
]


@pytest.mark.parametrize("model_id,head,ref", REF_CASES)
def test_pytorch_equals_original_onnx(model_id, head, ref, resolved, batch_cache):
    rm = resolved(model_id)
    x, _, _ = batch_cache(rm.spec.input_size)
    net = rm.build(head)
    with torch.inference_mode():
        ours = [t.numpy() for t in net(torch.from_numpy(x))]
    theirs = ort_run(REFERENCE / "onnx" / ref, x)
    assert ours[0].shape == theirs[0].shape and ours[1].shape == theirs[1].shape
    # scores and decoded boxes to 1e-5. The `_simplified` files have BatchNorm folded into the
    # convolutions, whose float rounding moves raw offsets (|v| up to ~10, before exp) by up to 2e-5.
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours[1], theirs[1], atol=5e-5 if head == "raw" else 1e-5, rtol=0)


def test_decode_numpy_matches_torch(resolved, batch_cache):
    rm = resolved("rfb-320")
    x, _, _ = batch_cache((320, 240))
    with torch.inference_mode():
        _, loc = rm.build("raw")(torch.from_numpy(x[:2]))
        _, boxes = rm.build("decoded")(torch.from_numpy(x[:2]))
    np.testing.assert_allclose(decode(loc.numpy(), P.generate_priors(320, 240)), boxes.numpy(), atol=1e-6)


# ----------------------------------------------------------------------------- checkpoint manifest

def test_manifest_schema_recomputed():
    """Every derivable field of the manifest is recomputed from the files themselves."""
    from zoo.checkpoints.loader import MANIFEST_PATH, load_state_dict, manifest
    from zoo.core.model.nets import UltraFace, infer_arch, infer_num_classes
    from zoo.core.model.specs import MODELS

    raw = tomllib.loads(MANIFEST_PATH.read_text())
    assert raw["defaults"]["remote_dir"] == "models/pretrained"
    entries = manifest()
    assert {s.checkpoint for s in MODELS.values()} == set(entries)
    for e in entries.values():
        path = CKPT_DIR / e.name
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == e.sha256
        assert len(data) == e.bytes
        assert e.url.endswith("/models/pretrained/" + e.name) and e.url.startswith("https://")
        assert "/raw/dffdddda9794a50607cba8f318507a28c1c27cab/" in e.url  # the public URL, at the pinned commit
        assert e.licence == "MIT"
        sd = load_state_dict(path, e.sha256)
        assert infer_arch(sd) == e.arch
        assert infer_num_classes(sd) == len(e.labels)
        net = UltraFace(e.arch, len(e.labels))
        assert sum(p.numel() for p in net.parameters()) == e.params
        assert set(e.widerface_ap) == {"easy", "medium", "hard"}
    for s in MODELS.values():
        e = entries[s.checkpoint]
        assert (s.arch, s.labels, s.input_size) == (e.arch, e.labels, e.train_size)


def test_resolution_order_env_then_cache_then_download(tmp_path, monkeypatch):
    """ZOO_CHECKPOINT_DIR > cache > download through the pinned fetcher from ZOO_UPSTREAM_URL (a loopback mirror)."""
    import functools
    import http.server
    import threading

    from zoo.checkpoints import loader

    entry = loader.manifest()["version-slim-320.pth"]
    serve_dir = tmp_path / "www"
    (serve_dir / "models" / "pretrained").mkdir(parents=True)  # the original repository's layout
    (serve_dir / "models" / "pretrained" / entry.name).write_bytes((CKPT_DIR / entry.name).read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(serve_dir))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ZOO_UPSTREAM_URL", f"http://127.0.0.1:{srv.server_address[1]}")
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("ZOO_CHECKPOINT_DIR", str(tmp_path / "empty"))
        got = loader.resolve(entry)  # downloads
        assert got == tmp_path / "cache" / "checkpoints" / entry.name
        assert loader.sha256_file(got) == entry.sha256
        assert not [p for p in got.parent.iterdir() if p.name.endswith(".part")]
        srv.shutdown()
        assert loader.resolve(entry) == got  # cache hit: the server is gone
        monkeypatch.setenv("ZOO_CHECKPOINT_DIR", str(CKPT_DIR))
        assert loader.resolve(entry) == CKPT_DIR / entry.name  # env folder wins
    finally:
        srv.server_close()


def test_download_offline_and_bad_sha_errors(tmp_path, monkeypatch):
    import socket

    from zoo.checkpoints import loader
    from zoo.core.errors import ZooError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_UPSTREAM_URL", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("ZOO_CHECKPOINT_DIR", raising=False)
    entry = loader.manifest()["version-RFB-320.pth"]
    with pytest.raises(ZooError, match="ZOO_CHECKPOINT_DIR"):
        loader.resolve(entry)
    assert not list((tmp_path / "cache" / "checkpoints").glob("*"))
    # a cached file that does not match the published hash is refused, naming both hashes
    cached = tmp_path / "cache" / "checkpoints" / entry.name
    cached.write_bytes(b"not the checkpoint")
    with pytest.raises(ZooError, match=f"expected {entry.sha256}"):
        loader.resolve(entry)
