"""Flavours withheld from the default release matrix (zoo.core.withheld): the shipped list names real
flavours with a measured reason, the release matrix leaves them out unless asked, `zoo list` names them,
and a damaged list is one clear error. (That each entry FAILs and that nothing else in the CI matrix does
is proven on real exports: the ``rfb_release`` fixture, tests/conftest.py.)"""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import zoo
from fuzzing import fuzz
from zoo.core.errors import ZooError
from zoo.core.model.specs import MODELS
from zoo.core.withheld import parse, withheld, withheld_for
from zoo.exporters import get_target, target_names
from zoo.pipeline.plan import matrix, withheld_in

ALL = target_names()
ENTRY = ('[[withheld]]\nmodel = "rfb-320"\ntarget = "mnn"\nprecision = "int8"\nreason = "r"\n'
         'instead = "int8-weight"\nmeasured = "MNN 3.6.1"\n')


def base(precision: str) -> str:
    return precision.split("-")[0]


def test_the_shipped_list_names_real_int8_flavours_with_a_measured_reason():
    for w in withheld():
        assert w.model in MODELS, w
        t = get_target(w.target)
        assert w.precision in [v for p in t.precisions for v in t.expand(p)], w
        assert base(w.precision) == "int8", w  # fp32 and fp16 must pass: never withheld
        assert "%" in w.reason or "/" in w.reason, w  # a measured count, not an opinion
        assert w.instead and w.measured


@pytest.mark.parametrize("w", withheld(), ids=lambda w: w.label)
def test_the_release_matrix_leaves_a_withheld_flavour_out_unless_asked(w):
    default = matrix([w.model], [w.target], [base(w.precision)])
    full = matrix([w.model], [w.target], [base(w.precision)], with_withheld=True)
    assert (w.model, w.precision) not in {(m, j.precision) for m, j in default}
    assert (w.model, w.precision) in {(m, j.precision) for m, j in full}
    same = [v for v in withheld() if (v.model, v.target, base(v.precision)) == (w.model, w.target, base(w.precision))]
    assert len(full) - len(default) == len(same)  # only the withheld flavours: the others stay (MNN int8-weight)
    assert w in withheld_in([w.model], [w.target], [base(w.precision)])
    assert withheld_in([w.model], [w.target], ["fp32", "fp16"]) == []


def test_without_withheld_flavours_the_matrix_is_the_full_one():
    models = list(MODELS)
    full = matrix(models, ALL, ["fp32", "fp16", "int8"], with_withheld=True)
    default = matrix(models, ALL, ["fp32", "fp16", "int8"])
    left = [(m, j.target, j.precision) for m, j in full if (m, j) not in default]
    assert sorted(left) == sorted((w.model, w.target, w.precision) for w in withheld())


def test_withheld_for_matches_exactly():
    entries = parse(ENTRY, "t")
    assert withheld_for("rfb-320", "mnn", "int8", entries) is entries[0]
    assert withheld_for("rfb-320", "mnn", "int8-weight", entries) is None
    assert withheld_for("slim-320", "mnn", "int8", entries) is None
    assert entries[0].line().startswith("withheld: rfb-320 mnn/int8: r; use int8-weight")


@pytest.mark.parametrize("text,msg", [
    ("[[withheld]\n", "not valid TOML"),
    ('other = 1\n', "only \\[\\[withheld\\]\\]"),
    (ENTRY.replace('reason = "r"\n', ''), "entry 1 must have exactly"),
    (ENTRY.replace('reason = "r"', 'reason = ""'), "entry 1 must have exactly"),
    (ENTRY.replace('reason = "r"', 'reason = 3'), "entry 1 must have exactly"),
    (ENTRY + 'extra = "x"\n', "entry 1 must have exactly"),
    (ENTRY + ENTRY, "entry 2 repeats rfb-320 mnn/int8"),
])
def test_a_damaged_list_is_one_clear_error(text, msg):
    with pytest.raises(ZooError, match=msg):
        parse(text, "withheld.toml")


@fuzz(200)
@given(st.text(max_size=400))
def test_any_text_parses_or_is_refused_clearly(text):
    try:
        out = parse(text, "withheld.toml")
    except ZooError as e:
        assert str(e).startswith("withheld.toml: ")
    else:
        assert isinstance(out, tuple)


def test_zoo_list_names_the_withheld_flavours():
    cp = zoo("list", "--json")
    assert cp.returncode == 0, cp.stderr
    listed = json.loads(cp.stdout)["withheld"]
    assert listed == [w.to_dict() for w in withheld()]
    if listed:
        text = zoo("list").stdout
        assert "withheld from the default release matrix" in text
        for w in withheld():
            assert f"{w.target}/{w.precision}: {w.reason}" in text


def test_a_release_of_withheld_flavours_only_builds_none_and_says_why(tmp_path):
    """`zoo release` itself (the CLI, not only the matrix): a target whose int8 flavours are all withheld for a
    model builds nothing, exits 0, prints a `withheld:` line per flavour and records them in the spec."""
    groups = {}
    for w in withheld():
        groups.setdefault((w.model, w.target), []).append(w.precision)
    full = [(m, t) for (m, t), ps in groups.items() if sorted(ps) == sorted(get_target(t).expand("int8"))]
    assert full, "no target has all its int8 flavours withheld for a model any more: pick another case"
    model, target = full[0]
    cp = zoo("release", "--out", tmp_path / "r", "--models", model, "--targets", target, "--precisions", "int8")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["artifacts"] == [] and m["failed"] == []
    expect = [w for w in withheld() if (w.model, w.target) == (model, target)]
    assert m["release"]["withheld"] == [w.to_dict() for w in expect]
    for w in expect:
        assert f"withheld: {w.label} (not built; --with-withheld builds it): {w.reason}; use {w.instead}" in cp.stdout
