"""Nothing reaches the network, native code included, and nothing runs pip.

Two audits watch the suite:

* the OS-level audit (tests/osaudit.py): the command and its whole tree of processes and threads under
  ``strace -f``: every connect and datagram to a non-loopback address, every DNS query (names decoded),
  every process started. Every `zoo()` command of the suite runs under it (conftest.zoo), so any test
  whose command looks up or contacts a host fails, naming the process; the libraries see a user's
  machine (their CI-detection variables removed);
* the Python audit hook (nonet/sitecustomize.py): precise messages for Python's own sockets and pip.

Here: each audit proves it catches what it must (a C-level look-up through ctypes, which the Python
hook cannot see; onnxruntime's own telemetry without its switch); every runtime and converter loaded
and left idle past the libraries' reporting timers; the export matrix (rfb-320 and slim-320, every
target, every precision: the session's exports, re-used) and check, diff, bench and compat on
slim-320's (rfb-320's run in their own tests, under the same audit, as do release and verify);
`zoo list --json`'s telemetry report.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import osaudit
from conftest import HALVES, IMAGES, ROOT, assert_built, zoo
from zoo.exporters import get_target, target_names

NONET = ROOT / "tests" / "targets" / "nonet"
MODELS = ("rfb-320", "slim-320")
#: seconds every library stays loaded and idle: onnxruntime 1.32's client first looks up its host ~10.5 s
#: after `import onnxruntime` (measured 10.4-10.8 s), then on a back-off
IDLE = 15


def audited_env(log) -> dict:
    """The Python audit hook's environment: events logged to ``log`` (and refused)."""
    return {"ZOO_NONET_LOG": str(log), "PYTHONPATH": os.pathsep.join([str(NONET), str(ROOT)])}


def need_os_audit() -> None:
    why = osaudit.missing_reason()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


def available(name: str):
    t = get_target(name)
    if not t.available():
        pytest.skip(f"{name} runtime not installed: {', '.join(t.missing())}")
    return t


def test_the_audit_hook_catches_connect_and_pip(tmp_path):
    log = tmp_path / "events.log"
    env = dict(os.environ, **audited_env(log))
    code = "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept Exception: pass\n" \
           "import subprocess\ntry:\n subprocess.run(['pip', '--version'])\nexcept Exception: pass\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    text = log.read_text()
    assert "socket.getaddrinfo" in text or "socket.connect" in text
    assert "subprocess.Popen" in text and "pip --version" in text


#: a grandchild (python -> sh -> python) that looks a name up through libc, connects to a TEST-NET
#: address through libc, talks to loopback (allowed), asks a loopback resolver (a look-up all the same)
PROBE = textwrap.dedent("""
    import ctypes, socket, struct
    libc = ctypes.CDLL(None)
    res = ctypes.c_void_p()
    libc.getaddrinfo(b"audit-probe.invalid", b"80", None, ctypes.byref(res))
    def v4(host, port):
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", port, socket.inet_aton(host))
    def v6(host, port):
        return struct.pack("=H", socket.AF_INET6) + struct.pack("!HI16sI", port, 0, socket.inet_pton(socket.AF_INET6, host), 0)
    def send(family, addr, data):  # libc's socket and sendto: no Python socket call
        fd = libc.socket(family, socket.SOCK_DGRAM, 0)
        libc.sendto(fd, data, len(data), 0, ctypes.c_char_p(addr), len(addr))
        libc.close(fd)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    addr = v4("192.0.2.1", 9)
    libc.connect(fd, ctypes.c_char_p(addr), len(addr))
    send(socket.AF_INET, v4("127.0.0.1", 9), b"loopback")
    send(socket.AF_INET6, v6("::1", 9), b"loopback")
    name = b"".join(bytes([len(l)]) + l for l in (b"resolver-probe", b"invalid")) + b"\\0"
    query = struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0) + name + struct.pack("!2H", 1, 1)
    send(socket.AF_INET, v4("127.0.0.53", 53), query)
    print("probed")
""")


def test_the_os_audit_catches_a_native_lookup_the_hook_cannot_see(tmp_path):
    """The negative test: a C-level getaddrinfo and connect (ctypes: no Python socket call, so the hook
    is blind to them) in a grandchild process, made under the audit with the network blocked (nothing
    leaves the machine); the audit names both, and the process, and excepts loopback by address."""
    need_os_audit()
    (tmp_path / "probe.py").write_text(PROBE)
    log = tmp_path / "hook.log"
    env = dict(os.environ, **audited_env(log))
    with osaudit.os_audit(tmp_path / "audit", block_network=True) as audit:
        cp = audit.run(["sh", "-c", f'"{sys.executable}" "{tmp_path / "probe.py"}"'], env=env, capture_output=True,
                       text=True, timeout=120)
    assert cp.returncode == 0 and "probed" in cp.stdout, cp.stderr[-2000:]
    assert not log.exists() or not log.read_text(), log.read_text()  # the Python hook saw none of it
    assert "audit-probe.invalid (A)" in " ".join(audit.lookups), audit.report()
    assert "resolver-probe.invalid (A) (DNS to 127.0.0.53:53)" in audit.lookups, audit.report()
    assert audit.contacts == ["192.0.2.1:9"], audit.report()  # 127.0.0.1 and ::1 excepted
    prober = [p for p in audit.processes if str(tmp_path / "probe.py") in p.argv]
    assert len(prober) == 1 and [p for p in audit.processes if p.pid == prober[0].parent and "sh" in p.argv[0]]
    assert {f.pid for f in audit.findings} == {prober[0].pid}


def test_the_os_audit_names_an_installer_and_excepts_it_only_when_asked(tmp_path):
    need_os_audit()
    cmd = [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-m', 'pip', '--version'])"]
    for allow in (False, True):
        with osaudit.os_audit(tmp_path / f"audit-{allow}", block_network=True, allow_installers=allow) as audit:
            audit.run(cmd, capture_output=True, timeout=120)
        assert "pip" in audit.programs()
        if allow:
            assert audit.clean and [f.target for f in audit.excepted] == ["pip"], audit.report()
        else:
            assert [f.kind for f in audit.findings] == ["installer"], audit.report()


#: loads every available runtime and converter library the way zoo does (after `import zoo`: the
#: switches), runs each runtime on an artifact, then stays idle past the reporting timers
LOAD_ALL = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import numpy as np
    import zoo
    from zoo.exporters import get_target
    from zoo.core.meta import read_meta
    jobs = json.loads(sys.argv[1])
    for name, runtime, primary in jobs:
        t = get_target(name)
        for m in (*(t.preload or t.requires),):
            __import__(m)
        meta = read_meta(Path(primary))
        w, h = meta.input_size
        with t.runner(Path(primary), meta, runtime=runtime) as r:
            r.infer(np.zeros((1, 3, h, w), np.float32))
    import torch, onnxsim, onnxruntime.quantization, tensorflow
    from zoo.exporters.openvino.quiet import import_nncf
    import_nncf()
    print("loaded", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def test_every_runtime_loaded_and_idle_sends_nothing_and_onnxruntime_alone_would(export_dir, tmp_path):
    """Telemetry runs on timers: a short export can end before a library reports. Here one process loads
    every runtime and converter library as zoo does, runs each runtime on an fp32 artifact and stays
    idle for IDLE s: the audit sees nothing, and no reporter's file is written in its home folder. Beside it (the same
    wait), plain `import onnxruntime` without its switch, the network blocked: the audit sees its native
    client look up mobile.events.data.microsoft.com, so the silence above is the switch's doing."""
    need_os_audit()
    jobs = []
    for name in target_names():
        t = get_target(name)
        if not t.available():
            continue
        folder, manifest, cp = export_dir("rfb-320", name, ",".join(t.precisions))
        assert_built(manifest, cp)
        fp32 = next(a for a in manifest["artifacts"] if a["precision"] == "fp32")
        jobs += [(name, rt, str(folder / fp32["primary"])) for rt in t.runtimes]
    homes = {k: tmp_path / f"home-{k}" for k in ("zoo", "bare")}
    for h in homes.values():
        h.mkdir()
    (tmp_path / "load_all.py").write_text(LOAD_ALL)
    zoo_env = dict(os.environ, HOME=str(homes["zoo"]), PYTHONPATH=str(ROOT))
    bare_env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "PYTHONPATH")}
    bare_env["HOME"] = str(homes["bare"])
    with osaudit.os_audit(tmp_path / "zoo", block_network=True) as quiet, \
            osaudit.os_audit(tmp_path / "bare", block_network=True) as bare:
        procs = [
            subprocess.Popen(quiet.wrap([sys.executable, tmp_path / "load_all.py", json.dumps(jobs), IDLE]),
                             env=quiet.env(zoo_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT),
            subprocess.Popen(bare.wrap([sys.executable, "-c", f"import onnxruntime, time; time.sleep({IDLE})"]),
                             env=bare.env(bare_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        ]
        outs = [p.communicate(timeout=600) for p in procs]
    assert procs[0].returncode == 0 and "loaded" in outs[0][0], outs[0][1][-3000:]
    assert quiet.clean, quiet.report()
    # the reporters' own files (onnxruntime's device id, openvino-telemetry's client id) are not written
    # (TensorFlow's keras.json and matplotlib's font cache may be: configuration, not reporting)
    assert not [p for p in homes["zoo"].rglob("*") if p.name in (".onnxruntime", "intel", "openvino_ga_cid")], \
        sorted(str(p) for p in homes["zoo"].rglob("*"))
    assert any(l.startswith("mobile.events.data.microsoft.com") for l in bare.lookups), bare.report()
    assert any(".onnxruntime" in str(p) for p in homes["bare"].rglob("*"))  # its device id, without the switch


@pytest.mark.parametrize("target", target_names())
@pytest.mark.parametrize("model_id", MODELS)
def test_export_of_every_precision_reaches_nothing(model_id, target, export_dir):
    """The session's export (the same as tests/targets/test_targets.py's: no new export) ran under both
    audits: no finding, and the audit did follow its worker processes."""
    t = available(target)
    need_os_audit()
    folder, manifest, cp = export_dir(model_id, target, ",".join(t.precisions))
    assert_built(manifest, cp)  # exit 2 only for an honest int8 FAIL (issue 29's strict tiers and shift gate)
    assert cp.audit is not None and cp.audit.clean, cp.audit.report() if cp.audit else "not audited"
    hook_log = folder.parent / f"{folder.name}.nonet.log"
    assert not hook_log.exists() or not hook_log.read_text(), hook_log.read_text()
    workers = [p for p in cp.audit.processes if "zoo.pipeline.worker" in p.argv]
    assert workers, [p.command for p in cp.audit.processes]


def _few_images(tmp_path: Path, n: int) -> Path:
    d = tmp_path / f"images-{n}"
    d.mkdir()
    for name in HALVES["B"][:n]:
        (d / name).symlink_to(IMAGES / name)
    return d


#: the runtimes whose `zoo compat` environments the suite prepares (tests/pipeline/test_compat.py): here
#: in the release installed (its environment then exists already; preparing it otherwise is pip's work)
COMPAT_RUNTIMES = {"onnxruntime": "onnxruntime", "mnn": "MNN", "ncnn": "ncnn"}


def test_check_diff_bench_and_compat_reach_nothing(export_dir, compat_cache, tmp_path):
    """On the session's slim-320 exports of every target and precision: check (each target's folder, two at
    a time), diff (every artifact of the targets with a tap, one command), bench (every artifact, and
    rfb-320's int8 artifact of each target: every runtime on both models) and compat (the artifacts of
    onnxruntime, MNN and ncnn in their installed release; the environments' preparation runs pip, excepted
    by process). Each command under the OS-level audit, which fails on any finding (conftest.zoo). rfb-320's
    check (tests/targets/test_targets.py, every runtime), diff (tests/targets/test_diff.py), compat
    (tests/pipeline/test_compat.py) and release/verify (conftest.rfb_release, tests/pipeline/test_release.py)
    run under the same audit in their own tests."""
    from concurrent.futures import ThreadPoolExecutor

    from zoo.exporters.base import Target

    need_os_audit()
    one = _few_images(tmp_path, 1)
    folders, tapped, bench, compat = [], [], [], []
    for name in target_names():
        t = get_target(name)
        if not t.available():
            continue
        folder, manifest, _ = export_dir("slim-320", name, ",".join(t.precisions))
        arts = [folder / a["primary"] for a in manifest["artifacts"]]
        folders.append(folder)
        bench += arts
        tapped += arts if type(t).make_tap is not Target.make_tap else []
        compat += arts if t.runtimes[0] in COMPAT_RUNTIMES else []
        rfb, rfb_manifest, _ = export_dir("rfb-320", name, ",".join(t.precisions))
        by_precision = {a["precision"]: a for a in rfb_manifest["artifacts"]}
        bench.append(rfb / by_precision.get("int8", by_precision["fp32"])["primary"])

    def check(folder):
        cp = zoo("check", folder, "--images", one, "--allow-weak-evidence", "--json")
        assert cp.returncode in (0, 2) and json.loads(cp.stdout)["results"], cp.stderr[-2000:]

    with ThreadPoolExecutor(2) as pool:  # one runtime thread each: two checks use the two cores CI has
        list(pool.map(check, folders))
    cp = zoo("diff", *tapped, "--images", one, "--json")
    assert cp.returncode in (0, 2) and len(json.loads(cp.stdout)["results"]) == len(tapped), cp.stderr[-2000:]
    cp = zoo("bench", *bench, "--runs", "1", "--warmup", "0", "--rounds", "1", "--no-save", "--json", check=0)
    assert len(json.loads(cp.stdout)["results"]) >= len(bench)
    specs = ",".join(f"{rt}=={importlib.metadata.version(pkg)}" for rt, pkg in COMPAT_RUNTIMES.items())
    env = {"ZOO_COMPAT_DIR": str(compat_cache)}
    zoo("compat", "--prepare", "--runtime", specs, env=env, check=0, timeout=1800, installs=True)
    cp = zoo("compat", *compat, "--runtime", specs, "--images", one, "--no-save", "--json", env=env)
    assert "creating" not in cp.stderr and cp.returncode in (0, 2), cp.stderr[-2000:]
    assert len(json.loads(cp.stdout)["results"]) == len(compat)


PLUGIN = '''
from zoo.exporters.base import Target


class Undeclared(Target):
    name = "undeclared"
    runtimes = ("someruntime",)
'''


def test_list_json_says_per_runtime_whether_its_telemetry_is_known_off(tmp_path):
    """Every registered runtime: known off (onnxruntime and openvino by their switches, whatever the caller's
    environment says; the others report nothing); a plugin's runtime that declares nothing: unknown. The keys
    `zoo list --json` had are unchanged."""
    (tmp_path / "plugmod.py").write_text(PLUGIN)
    env = {"ORT_DISABLE_TELEMETRY": "0", "ZOO_TARGET_PLUGINS": "undeclared=plugmod:Undeclared", "PYTHONPATH": str(tmp_path)}
    data = json.loads(zoo("list", "--json", env=env, check=0).stdout)
    assert {"models", "targets"} <= set(data)
    assert set(data["targets"][0]) == {"name", "description", "precisions", "heads", "layout", "source", "runtimes",
                                       "available", "missing", "install", "dynamic", "dynamic_reason"}
    rts = {r["name"]: r for r in data["runtimes"]}
    registered = {rt for t in data["targets"] if t["name"] != "undeclared" for rt in t["runtimes"]}
    assert registered <= set(rts) and rts["someruntime"]["targets"] == ["undeclared"]
    for name in registered:
        assert rts[name]["telemetry"]["known_off"] is True, rts[name]
    assert [r["name"] for r in rts["onnxruntime"]["telemetry"]["reporters"]] == ["onnxruntime"]
    assert "ORT_DISABLE_TELEMETRY=1" in rts["onnxruntime"]["telemetry"]["reporters"][0]["switch"]
    assert [r["name"] for r in rts["openvino"]["telemetry"]["reporters"]] == ["openvino-telemetry"]
    assert rts["someruntime"]["telemetry"]["known_off"] is False and "unknown" in rts["someruntime"]["telemetry"]["note"]
    assert data["telemetry"]["environment"] == {"ORT_DISABLE_TELEMETRY": "1"}
    text = zoo("list", env=env, check=0).stdout
    assert "onnxruntime   off: ORT_DISABLE_TELEMETRY=1" in text and "someruntime   UNKNOWN" in text


def test_a_library_imported_before_zoo_is_not_called_off(tmp_path):
    """The switch is read when onnxruntime loads: imported before `zoo` (a user's script), it came too late,
    and zoo says so instead of claiming it off."""
    code = ("import onnxruntime, zoo.core.telemetry as t; print(t.in_effect('onnxruntime'))\n"
            "import subprocess, sys\n"
            "print(subprocess.run([sys.executable, '-c', 'import zoo.core.telemetry as t; print(t.in_effect(\"onnxruntime\"))'],"
            " capture_output=True, text=True).stdout.strip())")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["PYTHONPATH"] = str(ROOT)
    cp = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cp.stdout.split() == ["False", "True"], cp.stdout + cp.stderr[-2000:]
