"""Issue 2: `zoo list`, `zoo detect`, user checkpoints and every bad input, through the real CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import CKPT_DIR, IMAGES, REFERENCE, assert_clean_error, ort_run, zoo


def test_list_json():
    cp = zoo("list", "--json", check=0)
    data = json.loads(cp.stdout)
    assert [m["id"] for m in data["models"]] == ["slim-320", "rfb-320", "slim-640", "rfb-640"]
    names = {t["name"] for t in data["targets"]}
    assert {"onnx", "caffe"} <= names
    for t in data["targets"]:
        # what to install: a pip line, or for the web targets Node.js and the npm packages (scripts/install.sh)
        assert t["available"] or t["install"].startswith("pip install") or "npm ci" in t["install"], t


@pytest.mark.smoke
@pytest.mark.parametrize("model_id,ref", [("rfb-320", "version-RFB-320.onnx"), ("slim-320", "version-slim-320.onnx")])
def test_detect_json_equals_original_onnx(model_id, ref, batch_cache):
    """Same detections as the original's ONNX file with the same post-processing (0.7 / 0.3 / 200)."""
    from zoo.core.model.processing import postprocess

    cp = zoo("detect", IMAGES, "--model", model_id, "--json", check=0)
    data = json.loads(cp.stdout)
    assert set(data) == {"results"}
    x, paths, sizes = batch_cache((320, 240))
    scores, boxes = ort_run(REFERENCE / "onnx" / ref, x)
    assert [r["image"] for r in data["results"]] == [str(p) for p in paths]
    total = 0
    for i, r in enumerate(data["results"]):
        assert set(r) == {"image", "width", "height", "detections"}
        assert (r["width"], r["height"]) == sizes[i]
        expected = postprocess(scores[i], boxes[i], *sizes[i], ["BACKGROUND", "face"], 0.7, 0.3, 200)
        assert len(r["detections"]) == len(expected), r["image"]
        for got, exp in zip(r["detections"], expected):
            assert set(got) == {"box", "score", "label"}
            assert got["label"] == "face"
            assert got["score"] == pytest.approx(exp.score, abs=1e-4)
            np.testing.assert_allclose(got["box"], exp.box, atol=0.02)
        total += len(expected)
    assert total > 200  # the photos hold hundreds of faces


def test_detect_draws_boxes(tmp_path):
    import cv2

    src = sorted(IMAGES.glob("*.jpg"))[0]
    zoo("detect", src, "--model", "slim-320", "--out", tmp_path / "drawn", check=0)
    drawn = cv2.imread(str(tmp_path / "drawn" / src.name))
    orig = cv2.imread(str(src))
    assert drawn.shape == orig.shape
    assert (np.abs(drawn.astype(int) - orig.astype(int)).sum(-1) > 60).mean() > 0.001  # boxes were drawn


@pytest.fixture(scope="module")
def three_class_ckpt(tmp_path_factory, resolved):
    """A 3-class checkpoint of the family (BACKGROUND, face, masked_face), made from our model:
    the face weights are kept and a masked_face channel is added to every classification head."""
    from zoo.core.model.nets import UltraFace

    sd = resolved("rfb-320").state_dict
    net = UltraFace("rfb", num_classes=3)
    new = {}
    g = torch.Generator().manual_seed(0)
    for k, v in net.state_dict().items():
        old = sd[k]
        if k.startswith("classification_headers") and old.shape != v.shape:
            anchors = v.shape[0] // 3
            o, n = old.reshape(anchors, 2, *old.shape[1:]), torch.empty(anchors, 3, *old.shape[1:])
            n[:, :2] = o
            n[:, 2] = o[:, 1] * 0.5 + 0.01 * torch.randn(o[:, 1].shape, generator=g)
            new[k] = n.reshape(v.shape)
        else:
            new[k] = old.clone()
    path = tmp_path_factory.mktemp("ckpt") / "mask-rfb.pth"
    torch.save(new, path)
    return path


def test_three_class_checkpoint_detects(three_class_ckpt):
    cp = zoo("detect", IMAGES / "1.jpg", "--checkpoint", three_class_ckpt, "--arch", "rfb",
             "--labels", "BACKGROUND,face,masked_face", "--input-size", "640x480", "--json", check=0)
    dets = json.loads(cp.stdout)["results"][0]["detections"]
    assert dets and {d["label"] for d in dets} <= {"face", "masked_face"}
    assert any(d["label"] == "face" for d in dets)


# ----------------------------------------------------------------------------- bad input

def test_unknown_model_suggests():
    assert_clean_error(zoo("detect", IMAGES / "1.jpg", "--model", "rfb-32"), "unknown model", "did you mean 'rfb-320'")


def test_missing_checkpoint_file(tmp_path):
    assert_clean_error(zoo("detect", IMAGES / "1.jpg", "--checkpoint", tmp_path / "nope.pth", "--arch", "rfb"), "not found")


def test_truncated_checkpoint(tmp_path):
    p = tmp_path / "trunc.pth"
    p.write_bytes((CKPT_DIR / "version-RFB-320.pth").read_bytes()[:50000])
    assert_clean_error(zoo("detect", IMAGES / "1.jpg", "--checkpoint", p, "--arch", "rfb"), "truncated or corrupt")


def test_garbage_checkpoint(tmp_path):
    p = tmp_path / "garbage.pth"
    p.write_bytes(b"\x00\x01not a checkpoint" * 100)
    assert_clean_error(zoo("detect", IMAGES / "1.jpg", "--checkpoint", p, "--arch", "slim"), "corrupt")


def test_other_arch_checkpoint_names_it():
    assert_clean_error(
        zoo("detect", IMAGES / "1.jpg", "--checkpoint", CKPT_DIR / "version-slim-320.pth", "--arch", "rfb"),
        "'slim' model", "--arch slim",
    )


def test_labels_do_not_fit():
    assert_clean_error(
        zoo("detect", IMAGES / "1.jpg", "--checkpoint", CKPT_DIR / "version-RFB-320.pth", "--arch", "rfb",
            "--labels", "BACKGROUND,face,masked_face"),
        "3 labels", "2 classes",
    )


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    p = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, p, pickle_protocol=2)
    cp = zoo("detect", IMAGES / "1.jpg", "--checkpoint", p, "--arch", "rfb")
    assert_clean_error(cp, "weights_only")
    assert "pwned" not in cp.stdout


def test_whole_module_pickle_is_refused(tmp_path):
    from zoo.core.model.nets import UltraFace

    p = tmp_path / "module.pth"
    torch.save(UltraFace("slim"), p)
    assert_clean_error(zoo("detect", IMAGES / "1.jpg", "--checkpoint", p, "--arch", "slim"), "weights_only")


@pytest.mark.parametrize("size", ["0x0", "abc", "-320x240", "320x"])
def test_bad_input_size(size):
    assert_clean_error(zoo("detect", IMAGES / "1.jpg", "--model", "rfb-320", f"--input-size={size}"), "--input-size")


def test_sha256_mismatch_expected_vs_got(tmp_path):
    bad_dir = tmp_path / "ckpts"
    bad_dir.mkdir()
    data = bytearray((CKPT_DIR / "version-RFB-320.pth").read_bytes())
    data[-100] ^= 0xFF
    (bad_dir / "version-RFB-320.pth").write_bytes(bytes(data))
    cp = zoo("detect", IMAGES / "1.jpg", "--model", "rfb-320", env={"ZOO_CHECKPOINT_DIR": str(bad_dir)})
    assert_clean_error(cp, "sha256 mismatch", "expected c722b442", "got ")


def test_unreadable_image_warns_and_goes_on(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(IMAGES / "1.jpg", folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"this is not a jpeg")
    shutil.copy(IMAGES / "2.jpg", folder / "c.jpg")
    cp = zoo("detect", folder, "--model", "slim-320", "--json")
    assert cp.returncode == 1
    assert "Traceback" not in cp.stderr
    assert "cannot read image" in cp.stderr and "b.jpg" in cp.stderr
    assert [r["image"].rsplit("/", 1)[-1] for r in json.loads(cp.stdout)["results"]] == ["a.jpg", "c.jpg"]


def test_missing_image_path():
    assert_clean_error(zoo("detect", "/no/such/image.jpg", "--model", "rfb-320"), "not found")
