"""ONNX -> ncnn with pnnx, and which ncnn blob is ``scores`` and which ``boxes``.

Why ONNX (and not TorchScript) goes into pnnx: both work on this network -- a traced
``zoo.core.model.nets.UltraFace(head="raw")`` and the ONNX file give the same 80-layer ncnn graph
(only pnnx's layer names differ) and the same outputs.  ONNX is what the exporter
pipeline validates elsewhere (fixed shape, BatchNorm folded, onnxsim'd, public names
``input``/``scores``/``boxes``), carries its input shape (no ``inputshape=`` guess), and
needs neither torch nor a re-trace at conversion time; pnnx's ONNX front end maps
every op of the graph (Conv, Relu, Add, Concat, Transpose, Reshape, Softmax, and for
the post-processed graphs Exp/Slice/Mul/constants) to native ncnn layers.  The fp32
result stores the same weights as the original project's ncnn file (same .bin size)
and its raw outputs agree with that file and with onnxruntime within 1e-4.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from zoo.exporters.ncnn.param import input_blobs, load_pair, output_blobs, param_text, rename_blobs
from zoo.exporters.ncnn.runner import NcnnNet
from zoo.core.contract import io_contract
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes, atomic_write_text


def _pnnx_executable() -> str:
    spec = importlib.util.find_spec("pnnx")
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            exe = Path(d) / ("pnnx.exe" if os.name == "nt" else "pnnx")
            if exe.is_file():
                return str(exe)
    exe = shutil.which("pnnx")
    if exe:
        return exe
    raise ZooError("pnnx is not installed (pip package 'pnnx'); cannot convert to ncnn")


def _tail(text: str, n: int = 12) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _onnx_io(onnx_path: Path, size: tuple[int, int] | None = None) -> tuple[str, list[int], list[str]]:
    import onnx  # heavy: only conversion reads the ONNX graph

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises several types
        raise ZooError(f"cannot read ONNX file {onnx_path}: {e}") from e
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ZooError(f"{onnx_path}: expected exactly one input, found {[i.name for i in inputs]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if size is not None and len(dims) == 4:  # a file with free axes: traced by pnnx at this size
        dims = [1, dims[1] or 3, size[1], size[0]]
    if len(dims) != 4 or dims[0] != 1 or min(dims) <= 0:
        raise ZooError(f"{onnx_path}: input must be fixed (1,3,H,W), got {dims}")
    outputs = [o.name for o in model.graph.output]
    return inputs[0].name, dims, outputs


def onnx_to_ncnn(onnx_path, out_dir, stem, *, fp16: bool, timeout: float = 300,
                 dynamic_size: tuple[int, int] | None = None) -> dict:
    """Convert a fixed-shape UltraFace ONNX file to ``<out_dir>/<stem>.param/.bin`` with pnnx.

    pnnx runs in a scratch directory; only the two ncnn files are written (atomically)
    into ``out_dir``.  ``fp16`` selects pnnx's fp16 weight storage (``fp16=1``) or fp32
    (``fp16=0``).  Returns ``{"param", "bin", "input_blob", "output_blobs": {"scores": blob,
    "boxes": blob}, "input_shape": [1,3,H,W], "weights": "fp32"|"fp16", "seconds"}``; the
    input shape is also written into the .param's Input layer (``0=W 1=H 2=3``) so that
    :class:`NcnnNet` refuses other sizes.  Raises ZooError with pnnx's last lines when it
    fails or times out, and when the result does not look like the expected network.
    The ONNX file must be self-contained (no external-data files).

    ``dynamic_size`` (W, H): the ONNX file has free axes; pnnx traces it at that size, then the
    result is made shape-free: the Input layer's size is only a hint, and the prior count pnnx baked into
    each head's Reshape (``0=K 1=P``) replaced by -1, so ncnn infers it from the feature map at
    run time (ncnn runs one image at a time, so the batch is free anyway).
    """
    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir)
    if not onnx_path.is_file():
        raise ZooError(f"ONNX file not found: {onnx_path}")
    if not stem or "/" in stem or os.sep in stem:
        raise ZooError(f"invalid output stem {stem!r}")
    _in_name, in_dims, onnx_outputs = _onnx_io(onnx_path, dynamic_size)
    if "scores" not in onnx_outputs or "boxes" not in onnx_outputs:
        raise ZooError(f"{onnx_path}: outputs must include 'scores' and 'boxes', found {onnx_outputs}")
    exe = _pnnx_executable()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo_pnnx_") as tmp:
        tmpd = Path(tmp)
        src = tmpd / "model.onnx"
        shutil.copyfile(onnx_path, src)
        files = {k: tmpd / v for k, v in {
            "ncnnparam": "model.ncnn.param", "ncnnbin": "model.ncnn.bin", "ncnnpy": "model_ncnn.py",
            "pnnxparam": "model.pnnx.param", "pnnxbin": "model.pnnx.bin", "pnnxpy": "model_pnnx.py",
            "pnnxonnx": "model.pnnx.onnx"}.items()}
        cmd = [exe, str(src), f"fp16={1 if fp16 else 0}"] + [f"{k}={v}" for k, v in files.items()]
        if dynamic_size is not None:
            cmd.append(f"inputshape=[{','.join(map(str, in_dims))}]")
        try:
            proc = subprocess.run(cmd, cwd=tmpd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise ZooError(f"pnnx timed out after {timeout:g} s converting {onnx_path}") from e
        except OSError as e:
            raise ZooError(f"cannot run pnnx ({exe}): {e}") from e
        log = (proc.stdout or "") + "\n" + (proc.stderr or "")
        pp, bp = files["ncnnparam"], files["ncnnbin"]
        if proc.returncode != 0 or not pp.is_file() or not bp.is_file() or pp.stat().st_size == 0:
            raise ZooError(f"pnnx failed (exit code {proc.returncode}) converting {onnx_path}:\n{_tail(log)}")
        layers, _, convs = load_pair(pp, bp)
        dtypes = {c.dtype for c in convs.values()}
        want = "fp16" if fp16 else "fp32"
        if dtypes != {want}:
            raise ZooError(f"pnnx wrote {sorted(dtypes)} weights, expected {want}")
        ins = input_blobs(layers)
        outs = output_blobs(layers)
        if len(ins) != 1 or len(outs) != 2:
            raise ZooError(f"converted graph has inputs {ins} and outputs {outs}; expected 1 and 2")
        roles = _identify_outputs(pp, bp, ins[0], outs, in_dims, onnx_outputs)
        tensors = onnx_tensor_names(convs, onnx_path)
        # the original project's blob names (its .param, and every app built on its ncnn demo, which calls
        # ex.input("input") and ex.extract("scores"/"boxes")); pnnx's names (in0, out0, out1) stay inside
        contract = io_contract("ncnn")
        public = {ins[0]: contract.input.name, **{roles[o.name]: o.name for o in contract.outputs}}
        rename_blobs(layers, public)
        tensors = dict(sorted((public.get(b, b), t) for b, t in tensors.items()))
        ins = [public[ins[0]]]
        roles = {k: public[v] for k, v in roles.items()}
        if dynamic_size is not None:
            free_reshapes(layers)
        # record the fixed input shape on the Input layer (0=w 1=h 2=c): pnnx bakes the
        # sizes into Reshape layers, and ncnn silently computes garbage for any other
        # size, so NcnnNet reads this back and refuses other shapes.
        # A dynamic file keeps the trained size there too, as ncnn's shape hint only (ncnn runs any size; the
        # runner is told the size is free: NcnnNet(free_size=True)), so at the trained size it is planned like
        # the fixed file. (An early `zoo bench` showed the hint-less file slower; a later A/B with alternating
        # order on the loaded 2-core test machine showed the second process of each pair slower whichever file
        # it ran, so that gap was not the file's.)
        for ly in layers:
            if ly.type == "Input" and ly.get(0) is None:
                ly.set(0, in_dims[3])
                ly.set(1, in_dims[2])
                ly.set(2, in_dims[1])
        final_param = out_dir / f"{stem}.param"
        final_bin = out_dir / f"{stem}.bin"
        atomic_write_bytes(final_bin, bp.read_bytes())
        atomic_write_text(final_param, param_text(layers))
    return {
        "param": str(final_param),
        "bin": str(final_bin),
        "input_blob": ins[0],
        "input_shape": list(in_dims),
        "output_blobs": roles,
        "tensors": tensors,
        "weights": want,
        "seconds": time.perf_counter() - t0,
    }


def free_reshapes(layers) -> None:
    """Make a pnnx-converted UltraFace graph shape-free: each head's 2-D Reshape ``0=K 1=P`` (P the
    cells x anchors pnnx traced) becomes ``0=K 1=-1``. Any other Reshape is refused: it would bake a size."""
    for ly in layers:
        if ly.type != "Reshape":
            continue
        if ly.get(2) is not None or ly.get(0) is None or ly.get(1) is None:
            raise ZooError(f"ncnn Reshape {ly.name} is not a head reshape (0=K 1=P): cannot make it shape-free "
                           f"({' '.join(f'{k}={v}' for k, v in ly.params)})")
        ly.set(1, -1)


#: ncnn's activation_type (param 9) for ReLU: a convolution with it fused computes Conv + Relu
_ACT_RELU = 1


def onnx_tensor_names(convs: dict, onnx_path) -> dict[str, str]:
    """{ncnn blob: the ONNX tensor it holds} for every convolution's output blob, recorded at export
    for `zoo diff` (pnnx renames every blob to a number). Each ncnn convolution is matched to the
    ONNX Conv node whose weights it stores (equal as stored, to the fp16 rounding when pnnx wrote
    fp16): its blob holds that node's output, or, when pnnx fused the ReLU after it into the
    layer (``9=1``), that ReLU's output. A layer with no match, or with another fused activation, is
    left out (`zoo diff` lists its blob as unmapped)."""
    import onnx  # heavy: only conversion reads the ONNX graph
    from onnx import numpy_helper  # heavy, as above

    model = onnx.load(str(onnx_path), load_external_data=False)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    nodes = [n for n in g.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits]
    weights = {n.name: numpy_helper.to_array(inits[n.input[1]]).astype(np.float32).ravel() for n in nodes}
    out: dict[str, str] = {}
    taken: set[str] = set()
    for c in convs.values():
        if c.dtype not in ("fp32", "fp16") or not c.layer.tops:
            continue
        w = np.asarray(c.weight, np.float32).ravel()
        best, err = None, np.inf
        for n in nodes:
            ow = weights[n.name]
            if n.name in taken or ow.size != w.size:
                continue
            e = float(np.abs(ow - w).max())
            if e < err:
                best, err = n, e
        if best is None or err > (1e-3 * float(np.abs(w).max()) if c.dtype == "fp16" else 0.0):
            continue
        taken.add(best.name)
        tensor = best.output[0]
        act = c.layer.geti(9, 0)
        if act == _ACT_RELU:
            after = consumers.get(tensor, [])
            if len(after) != 1 or after[0].op_type != "Relu":
                continue
            tensor = after[0].output[0]
        elif act:
            continue
        out[c.layer.tops[0]] = tensor
    return dict(sorted(out.items()))


def _identify_outputs(param, binf, in_blob, outs, in_dims, onnx_outputs) -> dict[str, str]:
    """Map 'scores'/'boxes' to ncnn blob names by the last dim (K vs 4), else by graph order."""
    x = np.zeros((1, *in_dims[1:]), np.float32)
    with NcnnNet(param, binf, input_blob=in_blob, output_blobs=outs) as net:
        res = net.infer(x)
    last = {b: res[b].shape[-1] for b in outs}
    shapes = {b: res[b].shape for b in outs}
    if any(len(s) != 3 or s[1] != shapes[outs[0]][1] for s in shapes.values()):
        raise ZooError(f"unexpected output shapes {shapes}; expected (1,P,K) and (1,P,4)")
    fours = [b for b in outs if last[b] == 4]
    if len(fours) == 1:
        boxes = fours[0]
        scores = next(b for b in outs if b != boxes)
    elif len(fours) == 2:
        # K == 4: pnnx numbers its outputs out0, out1, ... in the ONNX graph-output order
        ordered = sorted(outs, key=lambda s: (len(s), s))
        rel = [n for n in onnx_outputs if n in ("scores", "boxes")]
        mapping = dict(zip(rel, ordered))
        scores, boxes = mapping["scores"], mapping["boxes"]
    else:
        raise ZooError(f"no output with last dimension 4 among {shapes}")
    return {"scores": scores, "boxes": boxes}
