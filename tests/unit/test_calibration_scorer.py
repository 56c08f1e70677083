"""The int8 calibration scorer (`ExportRequest.quant_scorer`, `face_rich`, `calib_split`, and
`output_error` under them): what picks a quantizer setting is itself a measuring stick.

Real PyTorch runners of the RFB network with seeded random weights (no shared material): a candidate
equal to the reference scores 0, a perturbed one more, a more perturbed one more still; a dynamic
artifact is scored at its trained size and at every size its parity proves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zoo.core.images import builtin_images, load_batch  # noqa: E402
from zoo.core.meta import ArtifactMeta  # noqa: E402
from zoo.core.model import priors as P  # noqa: E402
from zoo.core.model.layers import output_error  # noqa: E402
from zoo.core.model.processing import postprocess  # noqa: E402
from zoo.core.runtime import Runner, TorchRunner  # noqa: E402
from zoo.exporters.base import ExportRequest  # noqa: E402


def _meta(dynamic: bool = False) -> ArtifactMeta:
    m = ArtifactMeta(model_id="rfb-320", arch="rfb", input_size=(320, 240), labels=("BACKGROUND", "face"),
                     head="raw", checkpoint_sha256="0" * 64, target="pytorch")
    if dynamic:
        m = m.with_(dynamic={"free_axes": ["N", "H", "W"]})
    return m


@pytest.fixture(scope="module")
def weights():
    from zoo.core.model.nets import UltraFace

    torch.manual_seed(40)
    return UltraFace("rfb", 2, 320, 240).state_dict()


def _perturbed(sd, scale: float) -> dict:
    g = torch.Generator().manual_seed(7)
    out = {k: v.clone() for k, v in sd.items()}
    for k in ("base_net.12.3.weight", "classification_headers.0.2.weight", "regression_headers.1.2.weight"):
        out[k] += scale * torch.randn(out[k].shape, generator=g)
    return out


class Counting(Runner):
    """A real runner (PyTorch) that counts its inferences and the sizes it was asked for."""

    def __init__(self, meta, sd):
        super().__init__(meta, 1)
        self.inner, self.sizes = TorchRunner(meta, sd), []

    def _load(self):
        self.inner.__enter__()

    def _release(self):
        self.inner.__exit__(None, None, None)

    def _run(self, x):
        self.sizes.append((x.shape[3], x.shape[2]))
        out = self.inner.infer(x)
        return [("scores", out["scores"]), ("boxes", out["locations"])]


def test_calib_split_holds_out_every_third_image():
    imgs = [Path(f"{c}.jpg") for c in "fbdaeghc"]  # unsorted on purpose
    req = ExportRequest(meta=_meta(), state_dict={}, out_dir=Path("."), stem="x", calib=imgs)
    fit, held = req.calib_split()
    srt = sorted(imgs)
    assert held == srt[2::3] == [Path("c.jpg"), Path("f.jpg")]
    assert fit == [p for p in srt if p not in held]
    one = ExportRequest(meta=_meta(), state_dict={}, out_dir=Path("."), stem="x", calib=[Path("a.jpg"), Path("b.jpg")])
    assert one.calib_split() == ([Path("a.jpg"), Path("b.jpg")], [Path("a.jpg"), Path("b.jpg")])  # too few to hold out


def test_scores_zero_for_the_reference_and_grow_with_the_change(weights):
    imgs = builtin_images()
    req = ExportRequest(meta=_meta(), state_dict=weights, out_dir=Path("."), stem="x")
    ref = Counting(_meta(), weights)
    score = req.quant_scorer(ref, imgs)
    assert ref.sizes == [(320, 240)]  # the reference runs once, on the held-out batch
    same = score(TorchRunner(_meta(), weights))
    small = score(TorchRunner(_meta(), _perturbed(weights, 0.02)))
    big = score(TorchRunner(_meta(), _perturbed(weights, 0.2)))
    assert same == 0.0 and 0 < small < big
    assert ref.sizes == [(320, 240)]  # however many candidates were scored
    # the figure is output_error on the images' batch (face scores and box offsets)
    x, _, _ = load_batch(imgs, 320, 240)
    with TorchRunner(_meta(), weights) as r0, TorchRunner(_meta(), _perturbed(weights, 0.2)) as r1:
        a, b = r0.infer(x), r1.infer(x)
    assert big == pytest.approx(output_error((a["scores"], a["locations"]), (b["scores"], b["locations"])))


def test_a_dynamic_candidate_is_scored_at_every_parity_size(weights):
    imgs = builtin_images()[:2]
    meta = _meta(dynamic=True)
    req = ExportRequest(meta=meta, state_dict=weights, out_dir=Path("."), stem="x")
    ref = Counting(meta, weights)
    score = req.quant_scorer(ref, imgs)
    want = [(320, 240)] + [s for _, s in P.parity_sizes((320, 240))]
    assert ref.sizes == want
    cand = Counting(meta, _perturbed(weights, 0.1))
    err = score(cand)
    assert cand.sizes == want and err > 0
    assert score(Counting(meta, weights)) == 0.0


def test_output_error_weighs_faces_and_ignores_background():
    s = np.zeros((1, 4, 2), np.float32)
    s[..., 0] = 1.0
    s[0, 0] = [0.1, 0.9]  # one face
    loc = np.zeros((1, 4, 4), np.float32)
    assert output_error((s, loc), (s, loc)) == 0.0
    far = loc.copy()
    far[0, 1] += 5.0  # a box that is no face moves: nothing lost
    assert output_error((s, loc), (s, far)) == 0.0
    moved = loc.copy()
    moved[0, 0] += 1.0  # the face's box moves by 1 in every offset: a tenth counts
    assert output_error((s, loc), (s, moved)) == pytest.approx(0.1)
    t = s.copy()
    t[0, 0] = [0.3, 0.7]  # the face's score drops by 0.2, on the one active prior
    assert output_error((s, loc), (t, loc)) == pytest.approx(0.2)
    u = s.copy()
    u[0, 2] = [0.8, 0.2]  # a background prior becomes active on the other side: averaged in
    assert output_error((s, loc), (u, loc)) == pytest.approx(0.1)
    assert output_error((s, loc), (s * 0 + [1.0, 0.0], loc)) == pytest.approx(0.9 + 0.0)


def test_face_rich_picks_the_images_with_most_faces(weights, tmp_path):
    imgs = builtin_images()
    req = ExportRequest(meta=_meta(), state_dict=weights, out_dir=Path("."), stem="x")
    assert req.face_rich(TorchRunner(_meta(), weights), imgs, k=3) == [(p, -1) for p in sorted(imgs)]
    x, _, _ = load_batch(sorted(imgs), 320, 240)
    with TorchRunner(_meta(), weights) as r:
        out = r.infer(x)
    counts = {p: len(postprocess(out["scores"][i], out["boxes"][i], 320, 240, ["BACKGROUND", "face"], candidate_size=10**6))
              for i, p in enumerate(sorted(imgs))}
    got = req.face_rich(TorchRunner(_meta(), weights), imgs, k=2)
    assert len(got) == 2 and all(counts[p] == n for p, n in got)
    assert [p for p, _ in got] == sorted(counts, key=lambda p: (-counts[p], p.name))[:2]


def test_a_decoded_candidate_is_scored_in_the_raw_heads_units(weights):
    """Issue 39: a decoded head returns no raw offsets; the scorer encodes its corners against the priors of the
    size run, so the figure is the raw head's (within the float32 round trip) and a decoded export can choose."""
    imgs = builtin_images()
    raw, dec = _meta(), _meta().with_(head="decoded")
    perturbed = _perturbed(weights, 0.2)
    want = ExportRequest(meta=raw, state_dict=weights, out_dir=Path("."), stem="x").quant_scorer(
        TorchRunner(raw, weights), imgs)(TorchRunner(raw, perturbed))
    score = ExportRequest(meta=dec, state_dict=weights, out_dir=Path("."), stem="x").quant_scorer(
        TorchRunner(dec, weights), imgs)
    assert score(TorchRunner(dec, weights)) == 0.0
    assert score(TorchRunner(dec, perturbed)) == pytest.approx(want, rel=1e-3) and want > 0


def test_output_error_of_nothing_seen_is_zero():
    bg = np.zeros((1, 50, 2), np.float32)
    bg[..., 0] = 1.0  # every prior background on both sides
    loc = np.zeros((1, 50, 4), np.float32)
    assert output_error((bg, loc), (bg, loc + 1.0)) == 0.0  # no face: box changes do not count
    faces = bg.copy()
    faces[0, :5] = (0.2, 0.8)
    assert output_error((faces, loc), (faces, loc + 1.0)) == pytest.approx(0.1)  # a tenth of the box change on faces
