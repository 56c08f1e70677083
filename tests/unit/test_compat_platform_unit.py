"""Issue 30, the parts that need no emulator: the launcher prefix of isolated workers, the pinned arm64
userland (its pin file, .deb unpacking, download and verification from a loopback mirror), the emulated
CPU's /proc/cpuinfo, compat.json's platform cells (identity, schema, summaries, report and card lines)
and the command's bad input."""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz
from mirror import Server, free_port
from zoo.core.errors import ZooError
from zoo.core.isolation import WarmWorkers, run_isolated
from zoo.core.platforms import get_platform, hwcap_names
from zoo.pipeline.compat_platform import (Deb, Userland, cpuinfo_text, deb_data, load_userland, parse_userland,
                                          prepare_userland, safe_members, userland_state)
from zoo.validation.compat import (SCHEMA, advice, card_section, case_name, cell_key, markdown_section, options_label,
                                   platform_summary, read_compat, render_text, summarize)

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------- the launcher
def test_the_launcher_prefix_starts_workers_and_is_passed_on(tmp_path):
    """zoo.core.isolation's one mechanism for emulators (qemu-aarch64 here, qemu-x86_64 -cpu Haswell for
    issue 38): a worker is started as ``[*launcher, python, -m, module, ...]``; the workers it starts go
    through the same prefix; ``launcher=[]`` starts one natively; warm workers take it too."""
    via = ["env", "ZOO_TEST_VIA=prefix"]
    env = {"PYTHONPATH": str(HERE)}
    res = run_isolated("warm_job", [], {"do": "launched?"}, tmp_path / "a", 60, "a", env_extra=env, launcher=via)
    assert res == {"ok": True, "via": "prefix", "launcher": json.dumps(via)}
    res = run_isolated("warm_job", [], {"do": "nested", "work": str(tmp_path / "n")}, tmp_path / "b", 60, "b",
                       env_extra=env, launcher=via)
    assert res["via"] == "prefix" and json.loads(res["launcher"]) == via  # the inner worker, started by the outer
    res = run_isolated("warm_job", [], {"do": "launched?"}, tmp_path / "c", 60, "c", env_extra=env, launcher=[])
    assert res == {"ok": True, "via": None, "launcher": None}
    with WarmWorkers("warm_job", env_extra=env, launcher=via, python=sys.executable) as warm:
        r1 = warm.run("f", {"do": "launched?"}, tmp_path / "w", 60, "w1")
        assert r1["via"] == "prefix"


# ---------------------------------------------------------------------------------------------- CPU and cpuinfo
def test_hwcaps_and_cpuinfo_of_the_emulated_cpus():
    # what qemu 7.2 reports for -cpu cortex-a72 and cortex-a76 (getauxval(AT_HWCAP), MIDR_EL1)
    assert hwcap_names(2299, 0) == ["fp", "asimd", "aes", "pmull", "sha1", "sha2", "crc32", "cpuid"]
    a76 = hwcap_names(1155067, 0)
    assert {"fphp", "asimdhp", "asimddp", "atomics", "lrcpc"} <= set(a76)
    text = cpuinfo_text(0x414FD0B1, a76, 2)
    assert text.count("processor\t:") == 2 and "CPU part\t: 0xd0b" in text and "CPU variant\t: 0x4" in text
    assert "CPU implementer\t: 0x41" in text and "CPU revision\t: 1" in text and "asimddp" in text
    plat = get_platform("linux/arm64")
    assert [(c.name, c.qemu) for c in plat.cpus] == [("armv8.0", "cortex-a72"), ("armv8.2", "cortex-a76")]
    with pytest.raises(ZooError, match=r"unknown --platform 'linux/arm'.*known platforms: linux/arm64"):
        get_platform("linux/arm")
    with pytest.raises(ZooError, match=r"unknown --cpu 'armv9'.*known: armv8.0, armv8.2"):
        plat.cpu("armv9")


# ---------------------------------------------------------------------------------------------- the userland pin
def test_the_packaged_userland_pin_is_debian_12_python_3_11():
    ul = load_userland(get_platform("linux/arm64"))
    names = {d.package for d in ul.debs}
    assert {"python3.11-minimal", "libpython3.11-stdlib", "libc6", "libstdc++6", "libgcc-s1"} <= names
    assert ul.python == "3.11" and all(d.path.endswith("_arm64.deb") or d.path.endswith("_all.deb") for d in ul.debs)
    assert ul.name.startswith("userland-linux_aarch64-debian12-py3") and len({d.sha256 for d in ul.debs}) == len(ul.debs)


_PIN = """schema = 1
platform = "linux/arm64"
distribution = "Debian 12 (bookworm)"
python = "3.11"
snapshot = "20261207T000000Z"
[mirrors]
debian = "http://127.0.0.1:9/debian"
[[deb]]
package = "python3.11-minimal"
version = "1"
archive = "debian"
path = "pool/main/p/python3.11/python3.11-minimal_1_arm64.deb"
sha256 = "{sha}"
bytes = {size}
"""


@pytest.mark.parametrize("change, needle", [
    (("schema = 1", "schema = 2"), "schema = 1"),
    (('path = "pool/main', 'path = "../pool/main'), "'path' must be pool/"),
    (('path = "pool/main/p/python3.11/', 'path = "pool/../../etc/'), "'path' must be pool/"),
    (('archive = "debian"', 'archive = "elsewhere"'), "has no mirror"),
    (('sha256 = "', 'sha256 = "ab'), "64 hex digits"),
    (("bytes = 10", "bytes = -1"), "'bytes' must be a size"),
    (('debian = "http://127.0.0.1:9/debian"', 'debian = "file:///etc"'), "http(s) URLs"),
    (('package = "python3.11-minimal"', 'package = "Python; rm"'), "Debian package name"),
])
def test_a_bad_pin_is_one_line(change, needle):
    text = _PIN.format(sha="a" * 64, size=10).replace(*change)
    with pytest.raises(ZooError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_userland(text, "pin")


@fuzz(60)
@given(text=st.text(max_size=300) | st.sampled_from([_PIN.format(sha="a" * 64, size=10)]).map(
    lambda t: t[:len(t) // 2]))
def test_any_pin_text_is_a_userland_or_one_line(text):
    try:
        parse_userland(text, "pin")
    except ZooError as e:
        assert "\n" not in str(e).strip() or "TOML" in str(e)


# ---------------------------------------------------------------------------------------------- .deb files
def _tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    """A data.tar.xz: (kind, name, content or link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as t:
        for kind, name, what in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size, info.mode = len(what), 0o755
                t.addfile(info, io.BytesIO(what))
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, what
                t.addfile(info)
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                t.addfile(info)
    return buf.getvalue()


def _deb(members) -> bytes:
    """An ar archive as dpkg-deb writes it: debian-binary, control.tar.xz, data.tar.xz."""
    def entry(name: str, data: bytes) -> bytes:
        head = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        return head + data + (b"\n" if len(data) % 2 else b"")
    return (b"!<arch>\n" + entry("debian-binary", b"2.0\n") + entry("control.tar.xz", _tar([("file", "./control", b"x")]))
            + entry("data.tar.xz", _tar(members)))


def test_deb_members_are_kept_inside_the_root():
    good = [("dir", "./usr", ""), ("dir", "./usr/bin", ""), ("file", "./usr/bin/python3.11", b"\x7fELF"),
            ("sym", "./lib/ld-linux-aarch64.so.1", "/lib/aarch64-linux-gnu/ld-2.36.so"),
            ("sym", "./usr/lib/rel", "../bin/python3.11"), ("chr", "./dev/null", "")]
    with deb_data(_deb(good), "good.deb") as t:
        ms = {m.name: m for m in safe_members(t, "good")}
    assert "dev/null" not in ms and ms["usr/bin/python3.11"].mode == 0o755
    assert ms["lib/ld-linux-aarch64.so.1"].linkname == "aarch64-linux-gnu/ld-2.36.so"  # absolute -> inside the root
    assert ms["usr/lib/rel"].linkname == "../bin/python3.11"
    for bad, needle in (([("file", "../etc/passwd", b"x")], "leaves the root"),
                        ([("sym", "./usr/x", "../../../../etc/passwd")], "leaves the root")):
        with deb_data(_deb(bad), "bad.deb") as t, pytest.raises(ZooError, match=needle):
            safe_members(t, "bad")
    data = _deb(good)
    for broken, needle in ((data[:40], "holds no data.tar"), (data[:200], "truncated"), (b"PK\x03\x04", "not a .deb")):
        with pytest.raises(ZooError, match=needle):
            deb_data(broken, "x.deb")


def _userland(mirror: str, deb: bytes, sha: str | None = None) -> Userland:
    d = Deb("python3.11-minimal", "1", "debian", "pool/main/p/python3.11/python3.11-minimal_1_arm64.deb",
            sha or hashlib.sha256(deb).hexdigest(), len(deb))
    return Userland("linux/arm64", "Debian 12 (bookworm)", "3.11", "20261207T000000Z", {"debian": mirror}, (d,), "f" * 64)


def test_userland_from_a_mirror_verified_and_atomic(tmp_path, monkeypatch):
    """Downloaded from the mirror (else the snapshot archive for a file the mirror no longer has), checked by
    size and sha256 before anything is unpacked; a failure leaves nothing under the final name."""
    deb = _deb([("file", "./usr/bin/python3.11", b"\x7fELF"), ("sym", "./lib/ld.so", "/usr/bin/python3.11")])
    site = tmp_path / "site"
    path = "pool/main/p/python3.11/python3.11-minimal_1_arm64.deb"
    (site / "debian" / path).parent.mkdir(parents=True)
    (site / "debian" / path).write_bytes(deb)
    (site / "snap" / "debian" / "20261207T000000Z" / path).parent.mkdir(parents=True)
    (site / "snap" / "debian" / "20261207T000000Z" / path).write_bytes(deb)
    srv = Server(site)
    try:
        cache = tmp_path / "cache"
        ul = _userland(f"{srv.url}/debian", deb)
        st_ = prepare_userland(cache, ul)
        root = Path(st_["root"])
        assert st_["state"] == "ready" and (root / "usr/bin/python3.11").read_bytes() == b"\x7fELF"
        assert os.readlink(root / "lib/ld.so") == "../usr/bin/python3.11"
        assert (root / "etc/ld.so.cache").read_bytes() == b""  # the loader never reads the host's x86 cache
        assert userland_state(cache, ul)["state"] == "ready" and prepare_userland(cache, ul)["state"] == "ready"
        n = len(srv.requests)
        prepare_userland(cache, ul)
        assert len(srv.requests) == n  # ready: no request
        # the mirror lost the file: the snapshot archive has it
        monkeypatch.setenv("ZOO_DEBIAN_SNAPSHOT", f"{srv.url}/snap")
        gone = _userland(f"{srv.url}/elsewhere", deb)
        assert prepare_userland(tmp_path / "c2", gone)["state"] == "ready"
        # not the pinned file: nothing unpacked, nothing left looking ready
        for bad, needle in ((_userland(f"{srv.url}/debian", deb, sha="0" * 64), "is not the pinned file"),
                            (_userland(f"http://127.0.0.1:{free_port()}/debian", deb), "cannot be reached")):
            c3 = tmp_path / "c3"
            with pytest.raises(ZooError, match=needle):
                prepare_userland(c3, bad)
            assert [p.name for p in c3.iterdir()] == [] if c3.exists() else True
        no_python = _deb([("file", "./usr/bin/other", b"x")])
        (site / "debian" / path).write_bytes(no_python)
        c4 = tmp_path / "c4"
        with pytest.raises(ZooError, match="has no usr/bin/python3.11"):
            prepare_userland(c4, _userland(f"{srv.url}/debian", no_python))
        assert not [p for p in c4.iterdir()]
    finally:
        srv.close()


# ---------------------------------------------------------------------------------------------- compat.json cells
def _cell(**kw) -> dict:
    c = {"artifact": "rfb-320 ncnn/fp32/raw", "model": "rfb-320", "target": "ncnn", "precision": "fp32", "head": "raw",
         "primary": "ncnn/rfb-320-raw-fp32.param", "sha256": "ab" * 32, "runtime": "ncnn", "package": "ncnn",
         "version": "1.0.20261020", "rank": 1, "platform": "linux/arm64", "cpu": "armv8.0", "options": {"defaults": True},
         "status": "PASS", "message": None, "tier": "fp32", "seconds": 12.5,
         "parity": {"passed": True, "matched": 52, "reference": 52, "extra": 0, "max_abs": {"scores": 1e-6},
                    "evidence": {"images": 1, "faces": 52, "strong": False}},
         "x86": {"status": "PASS", "max_abs": {"scores": 1.3e-6, "boxes": 5e-7}},
         "emulation": {"qemu": "7.2.22", "qemu_cpu": "cortex-a72"}, "settings": {"reduced": None}}
    c.update(kw)
    return c


_FP16 = dict(cpu="armv8.2", tier="fp16", tier_note="ncnn fp16 storage and arithmetic on",
             settings={"reduced": "fp16 storage and arithmetic"}, x86={"status": "PASS", "max_abs": {"scores": 0.0146}},
             alternative={"options": {"defaults": True, "use_fp16_packed": False, "use_fp16_storage": False,
                                      "use_fp16_arithmetic": False}, "status": "PASS", "tier": "fp32",
                          "parity": {"matched": 52, "reference": 52, "extra": 0, "max_abs": {"scores": 1e-6}},
                          "x86": {"status": "PASS", "max_abs": {"scores": 1.3e-6}}, "seconds": 11.0})


def test_platform_cells_identity_summaries_and_lines():
    cells = [_cell(), _cell(**_FP16), _cell(platform=None, cpu=None, options=None)]
    del cells[2]["platform"], cells[2]["cpu"], cells[2]["options"]  # a cell of this machine, as before platforms
    assert len({cell_key(c) for c in cells}) == 3
    assert cell_key(_cell(options={"defaults": True, "use_fp16_arithmetic": False})) != cell_key(cells[0])
    assert options_label({}) == "defaults" and options_label({"precision": "low"}) == "precision=low"
    assert options_label(_FP16["alternative"]["options"]) == (
        "library defaults, use_fp16_arithmetic=false, use_fp16_packed=false, use_fp16_storage=false")
    assert case_name(cells[1]) == "rfb-320 ncnn/fp32/raw @ ncnn==1.0.20261020 [linux/arm64 armv8.2 library defaults]"
    assert case_name(cells[2]) == "rfb-320 ncnn/fp32/raw @ ncnn==1.0.20261020"
    # runs-on summaries are this machine's releases only: a platform cell never enters "runs on ncnn >= X"
    assert [t["version"] for t in summarize(cells)["rfb-320 ncnn/fp32/raw"]["ncnn"]["tested"]] == ["1.0.20261020"]
    line = platform_summary(cells)["rfb-320 ncnn/fp32/raw"]["linux/arm64"]["line"]
    assert line == ("x86-64 PASS; linux/arm64 (library defaults) armv8.0 PASS, armv8.2 PASS "
                    "(fp16 tier: ncnn fp16 storage and arithmetic on)")
    tips = advice(cells)
    assert tips == ["on ARMv8.2 (linux/arm64), run this ncnn file with use_fp16_packed = false, use_fp16_storage = false, "
                    "use_fp16_arithmetic = false to get the proven fp32 result; with library defaults it runs with fp16 "
                    "storage and arithmetic on (scores 1.5e-02 from x86)"]
    doc = {"schema": SCHEMA, "python": "Python 3.11/linux x86_64", "results": cells,
           "environments": {"ncnn==1.0.20261020 (linux/arm64)": {"state": "ready", "platform": "linux/arm64", "qemu": "7.2.22"}}}
    text = render_text(doc)
    assert "linux/arm64 (emulated, qemu 7.2.22):" in text and "PASS (fp16 tier)" in text and "52/52/0 weak" in text
    assert "alt: use_fp16_arithmetic=false, use_fp16_packed=false, use_fp16_storage=false" in text
    assert f"rfb-320 ncnn/fp32/raw: {line}" in text
    md = "\n".join(markdown_section(doc, None, "rel"))
    assert "| rfb-320 ncnn/fp32/raw | ncnn==1.0.20261020 | armv8.2 | library defaults | PASS (fp16 tier) | 52/52/0 weak | 1.0e-06 | 1.5e-02 | 12.5 |" in md
    assert f"- rfb-320 ncnn/fp32/raw: {line}" in md and f"- rfb-320 ncnn/fp32/raw: {tips[0]}" in md
    card = "\n".join(card_section(doc, None, "rfb-320"))
    assert "### Platforms" in card and f"- `ncnn/fp32/raw` (`ncnn/rfb-320-raw-fp32.param`): {line}" in card
    assert f"  - {tips[0]}" in card
    # two runtimes run one file: a part per runtime
    ort = [_cell(artifact="rfb-320 onnx/fp32/decoded", runtime=rt, package=rt, version=v, cpu=cpu, options={})
           for rt, v in (("onnxruntime", "1.32.0"), ("opencv", "4.14.0.94")) for cpu in ("armv8.0", "armv8.2")]
    assert platform_summary(ort)["rfb-320 onnx/fp32/decoded"]["linux/arm64"]["line"] == (
        "x86-64 PASS; linux/arm64 (onnxruntime) armv8.0 PASS, armv8.2 PASS; linux/arm64 (opencv) armv8.0 PASS, armv8.2 PASS")
    # a failing cell whose alternative passes: the card says what to set to get a passing result
    failing = _cell(cpu="armv8.2", options={"precision": "low"}, runtime="mnn", package="MNN", version="3.6.1",
                    status="FAIL", message="detections: 40/52", tier="fp16", tier_note="mnn fp16 arithmetic on",
                    alternative={"options": {"precision": "high"}, "status": "PASS", "tier": "fp32"})
    assert advice([failing]) == ["on ARMv8.2 (linux/arm64), run this mnn file with precision = high to get the proven "
                                 "fp32 result; with precision=low it is FAIL (fp16 arithmetic on, scores 1.3e-06 from x86)"]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=10)
platform_keys = ["platform", "cpu", "options", "tier", "tier_note", "x86", "alternative", "settings", "emulation",
                 "userland", "status", "parity"]


@fuzz(80)
@given(junk=st.dictionaries(st.sampled_from(platform_keys), json_values, max_size=4),
       alt=st.dictionaries(st.sampled_from(["options", "status", "parity", "x86", "tier", "message"]), json_values,
                           max_size=3))
def test_damaged_platform_cells_are_one_problem_line(tmp_path_factory, junk, alt):
    cell = _cell(**_FP16)
    cell["alternative"] = {**cell["alternative"], **alt}
    cell.update(junk)
    path = tmp_path_factory.mktemp("c") / "compat.json"
    path.write_text(json.dumps({"schema": SCHEMA, "results": [cell]}))
    doc, problem = read_compat(path)
    assert (doc is None) != (problem is None)
    if problem:
        assert "\n" not in problem
    else:  # whatever a valid document holds renders
        render_text(doc)
        markdown_section(doc, None, "rel")
        card_section(doc, None, "rfb-320")
        platform_summary(doc["results"])
        summarize(doc["results"])


@pytest.mark.parametrize("damage, needle", [
    ({"options": ["defaults"]}, "options must map"),
    ({"options": {"defaults": {"nested": 1}}}, "options must map"),
    ({"platform": "arm64"}, "platform must be"),
    ({"cpu": 8.2}, "cpu must be"),
    ({"tier": "fp8"}, "tier must be"),
    ({"x86": {"status": "GREAT"}}, "x86.status"),
    ({"x86": {"status": "PASS", "max_abs": {"scores": "big"}}}, "x86.max_abs"),
    ({"alternative": {"status": "PASS", "options": "fp16 off"}}, "alternative.options"),
    ({"alternative": {"status": "PASS", "parity": {"matched": -1}}}, "alternative.parity.matched"),
    ({"emulation": ["qemu"]}, "emulation must be an object"),
])
def test_each_damaged_platform_field_is_named(tmp_path, damage, needle):
    path = tmp_path / "compat.json"
    path.write_text(json.dumps({"schema": SCHEMA, "results": [_cell(**{**_FP16, **damage})]}))
    doc, problem = read_compat(path)
    assert doc is None and needle in problem


def test_bad_platform_and_cpu_options_are_one_line():
    from conftest import assert_clean_error, zoo

    assert_clean_error(zoo("compat", "--cpu", "armv8.2"), "--cpu needs --platform", "linux/arm64")
    assert_clean_error(zoo("compat", "--platform", "linux/riscv64"), "unknown --platform 'linux/riscv64'",
                       "known platforms: linux/arm64")
    assert_clean_error(zoo("compat", "--platform", "linux/arm64", "--cpu", "armv8.0,cortex-a76"), "unknown --cpu 'cortex-a76'",
                       "known: armv8.0, armv8.2")
    assert_clean_error(zoo("compat", "--platform", "linux/arm64", "--cpu", ","), "--cpu is empty")
    assert_clean_error(zoo("compat", "--prune", "--platform", "linux/arm64"), "--prune takes no")


def test_prune_knows_platform_environments_and_userlands(tmp_path):
    """`zoo compat --prune` keeps every platform's environment of a matrix release and the current userland;
    an environment of a changed entry and an old userland (another pin) go."""
    from conftest import zoo
    from zoo.pipeline.compat_env import READY, load_matrix

    m = load_matrix()
    cache = tmp_path / "envs"

    def env(name: str) -> Path:
        (cache / name / "site").mkdir(parents=True)
        (cache / name / READY).write_text("{}")
        return cache / name

    spec = m.spec("ncnn", "1.0.20261020").on("linux/arm64")
    current = env(spec.env_name)
    assert "-linux_aarch64-" in current.name and current.name != m.spec("ncnn", "1.0.20261020").env_name
    changed = env(spec.env_name.rsplit("-", 1)[0] + "-0badc0de")
    ul = load_userland(get_platform("linux/arm64"))
    userland = env(ul.name)
    old_userland = env(ul.name.rsplit("-", 1)[0] + "-0badc0de")
    cp = zoo("compat", "--prune", "--json", env={"ZOO_COMPAT_DIR": str(cache)}, check=0)
    assert sorted(r["name"] for r in json.loads(cp.stdout)["removed"]) == sorted([changed.name, old_userland.name])
    assert current.is_dir() and userland.is_dir()


def test_a_run_replaces_only_the_cells_of_its_platform_cpu_and_options(tmp_path):
    """compat.json merges by cell_key: re-running one CPU model replaces that model's cells and keeps the other
    CPU's, the other options' and this machine's cells of the same file and release."""
    from zoo.core.manifest import Artifact, FileEntry
    from zoo.pipeline.compat import Subject, save_compat

    (tmp_path / "ncnn").mkdir()
    (tmp_path / "ncnn" / "rfb-320-raw-fp32.param").write_text("p")
    art = Artifact("rfb-320", "ncnn", "fp32", "raw", "NCHW", "ncnn/rfb-320-raw-fp32.param",
                   [FileEntry.of(tmp_path, "ncnn/rfb-320-raw-fp32.param")])
    subj = Subject(tmp_path, art, False)
    native = _cell()
    for k in ("platform", "cpu", "options"):
        del native[k]
    first = [native, _cell(), _cell(**_FP16), _cell(options={"defaults": True, "use_fp16_arithmetic": False})]
    save_compat({"schema": SCHEMA, "results": first}, [subj])
    rerun = _cell(seconds=99.0)  # armv8.0, library defaults again
    save_compat({"schema": SCHEMA, "results": [rerun]}, [subj])
    doc = json.loads((tmp_path / "compat.json").read_text())
    assert len(doc["results"]) == 4 and rerun in doc["results"] and _cell() not in doc["results"]
    assert native in doc["results"] and _cell(**_FP16) in doc["results"]
    assert list(doc["summary"]["rfb-320 ncnn/fp32/raw"]) == ["ncnn"]
    assert doc["platform_summary"]["rfb-320 ncnn/fp32/raw"]["linux/arm64"]["line"].startswith("x86-64 PASS; linux/arm64")
