"""`zoo diff`, driven by the target registry: every target's artifacts compared with PyTorch layer by layer.

For each target with a tap, one `zoo diff` run takes three artifacts of the session's export (no new
export): the intact fp32 file (every layer within tolerance, nothing divergent), a copy of it whose
``extras.0.0`` convolution weights were changed inside the converted file itself (found by their
bytes: that 1x1 convolution has no BatchNorm, so every format stores the checkpoint's float32 values,
as they are or transposed), which must be named as the first divergent layer (or its fused group's
last module, ``extras.0.1``), and the int8 file when the target has one (where its error grows).
A runtime with no tap fails in one clear line.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import HALVES, IMAGES, assert_built, assert_clean_error, zoo
from zoo.exporters import get_target, target_names
from zoo.exporters.base import Target

#: the tampered convolution and its fused group (Conv2d, then the ReLU a runtime may fuse into it)
TAMPERED = "extras.0.0"
GROUP = ("extras.0.0", "extras.0.1")
#: the RFB network has 52 convolutions: each one's output (or its group's) is compared in every runtime
CONVS = 52


def tapped(target: str) -> bool:
    return type(get_target(target)).make_tap is not Target.make_tap


def refuses_tap(target: str, runtime: str) -> bool:
    """Whether ``target``'s tap refuses ``runtime`` (asked with no file: a refusal comes first)."""
    from zoo.core.errors import ZooError

    try:
        get_target(target).make_tap(runtime, Path("/nonexistent/artifact"), None, 1)
    except ZooError as e:
        return "cannot expose the intermediate tensors" in str(e)
    except Exception:  # noqa: BLE001 - a tap that got as far as the file (or the runtime's import) exists
        return False
    return False


TAP_TARGETS = [t for t in target_names() if tapped(t)]
#: every (target, runtime) whose runtime has no tap: targets without one, and runtimes a target's tap
#: refuses (OpenCV DNN for ONNX files)
NO_TAP = [(t, r) for t in target_names() for r in get_target(t).runtimes if not tapped(t) or refuses_tap(t, r)]


@pytest.fixture(scope="module")
def few_images(tmp_path_factory) -> Path:
    """Four of the gate photos: enough faces and scenes for layer statistics, quick to run."""
    d = tmp_path_factory.mktemp("diff-images")
    for n in HALVES["B"][:4]:
        (d / n).symlink_to(IMAGES / n)
    return d


def available(name: str):
    t = get_target(name)
    if not t.available():
        pytest.skip(f"{name} runtime not installed: {', '.join(t.missing())}")
    return t


def tamper_copy(folder: Path, art: dict, dest: Path, weight: np.ndarray) -> Path:
    """Copy an artifact's files to ``dest`` and negate ``weight`` wherever a file stores it as float32
    (in PyTorch's OIHW order, or TensorFlow's HWIO); returns the copy's primary file."""
    forms = [np.ascontiguousarray(weight, "<f4"), np.ascontiguousarray(weight.transpose(2, 3, 1, 0), "<f4")]
    hits = 0
    for f in art["files"]:
        src, out = folder / f["path"], dest / f["path"]
        out.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        for form in forms:
            n = data.count(form.tobytes())
            data = data.replace(form.tobytes(), (-form).tobytes())
            hits += n
        out.write_bytes(data)
    assert hits, f"the weights of {TAMPERED} were not found in {[f['path'] for f in art['files']]}"
    return dest / art["primary"]


@pytest.mark.parametrize("target", TAP_TARGETS)
def test_diff_finds_the_tampered_layer(target, export_dir, resolved, few_images, tmp_path):
    t = available(target)
    folder, manifest, cp = export_dir("rfb-320", target, ",".join(t.precisions))
    assert_built(manifest, cp)
    arts = {a["precision"]: a for a in manifest["artifacts"]}
    fp32 = arts["fp32"]
    weight = resolved("rfb-320").state_dict[f"{TAMPERED}.weight"].numpy()
    bad = tamper_copy(folder, fp32, tmp_path / "tampered", weight)
    int8 = next((a for p, a in sorted(arts.items()) if p.startswith("int8")), None)
    paths = [folder / fp32["primary"], bad] + ([folder / int8["primary"]] if int8 else [])
    png = tmp_path / "diff.png"
    out = json.loads(zoo("diff", *paths, "--images", few_images, "--json", "--plot", png, check=0).stdout)
    results = out["results"]
    assert len(results) == len(paths) and png.stat().st_size > 10_000
    for r in results:
        assert set(r) == {"artifact", "runtime", "images", "layers", "first_divergent", "largest_growth"}
        assert r["runtime"] == t.runtimes[0] and r["images"] == 4
        mapped = [l for l in r["layers"] if l["torch"]]
        assert len(mapped) >= CONVS, [l["runtime"] for l in r["layers"] if not l["torch"]]
        for l in r["layers"]:
            assert set(l) == {"torch", "runtime", "shape", "max_abs", "mean_abs", "rel_l2", "cosine", "over"}
        for l in r["layers"]:  # unmapped tensors are listed, after the mapped ones, with no numbers
            if not l["torch"]:
                assert l["rel_l2"] is None and l["over"] is False

    intact, tampered = results[0], results[1]
    assert intact["first_divergent"] is None and intact["largest_growth"] is None
    assert not any(l["over"] for l in intact["layers"])
    assert max(l["rel_l2"] for l in intact["layers"] if l["torch"]) < 1e-4
    assert min(l["cosine"] for l in intact["layers"] if l["torch"]) > 0.999999

    mapped = [l for l in tampered["layers"] if l["torch"]]
    first = tampered["first_divergent"]
    assert first in GROUP, (first, [(l["torch"], l["rel_l2"]) for l in mapped if l["over"]][:5])
    k = next(i for i, l in enumerate(mapped) if l["torch"] == first)
    assert not any(l["over"] for l in mapped[:k]) and mapped[k]["rel_l2"] > 0.1
    assert tampered["largest_growth"] in GROUP  # where the error appears from nothing
    assert all(l["over"] for l in mapped if l["torch"].startswith("extras.0.2."))  # downstream of it

    if int8:
        q = results[2]
        rows = [l for l in q["layers"] if l["torch"]]
        assert q["first_divergent"] is not None and q["largest_growth"] is not None
        assert all(l["cosine"] > 0.9 for l in rows)  # degraded, not broken (measured: >= 0.986 on rfb-320)


def test_a_runtime_without_a_tap_says_so(export_dir):
    """Every registered runtime without a tap (today OpenCV DNN for ONNX files; a new target until it
    implements one) is refused in one line by the CLI; the base class says the same in-process."""
    from zoo.core.errors import ZooError

    class Bare(Target):
        name, runtimes = "bare", ("bare-rt",)

    with pytest.raises(ZooError, match="cannot expose the intermediate tensors"):
        Bare().tap(Path("x.bin"), None)
    assert ("onnx", "opencv") in NO_TAP, NO_TAP  # the loop below is never empty while this runtime has no tap
    for target, runtime in NO_TAP:
        t = available(target)
        folder, manifest, _ = export_dir("rfb-320", target, ",".join(t.precisions))
        cp = zoo("diff", folder / manifest["artifacts"][0]["primary"], "--runtime", runtime)
        assert_clean_error(cp, "cannot expose the intermediate tensors", runtime)


def test_opencv_onnx_has_no_tap(export_dir, few_images):
    """The second runtime of the ONNX target (OpenCV DNN) exposes no intermediates here: one clear error."""
    available("onnx")
    folder, manifest, _ = export_dir("rfb-320", "onnx", ",".join(get_target("onnx").precisions))
    fp32 = next(a for a in manifest["artifacts"] if a["precision"] == "fp32")
    cp = zoo("diff", folder / fp32["primary"], "--runtime", "opencv", "--images", few_images)
    assert_clean_error(cp, "cannot expose the intermediate tensors", "opencv")


def test_a_failing_check_suggests_zoo_diff(export_dir, resolved, few_images, tmp_path):
    """`zoo check` of a folder whose file was tampered names the file and the `zoo diff` to run."""
    available("ncnn")
    folder, manifest, _ = export_dir("rfb-320", "ncnn", ",".join(get_target("ncnn").precisions))
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    fp32 = next(a for a in manifest["artifacts"] if a["precision"] == "fp32")
    weight = resolved("rfb-320").state_dict[f"{TAMPERED}.weight"].numpy()
    tamper_copy(folder, fp32, copy, weight)
    cp = zoo("check", copy, "--images", few_images, "--allow-weak-evidence")
    assert cp.returncode == 2
    assert f"zoo diff {copy / fp32['primary']}" in cp.stdout, cp.stdout[-2000:]
