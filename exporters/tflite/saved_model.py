"""The TF SavedModel the TFLite conversion passes through (and the saved_model target's artifact)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from zoo.exporters.tflite.network import SIGNATURE_KEY
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_dir, atomic_write_bytes


def save_saved_model(module: Any, out_dir: str | os.PathLike) -> None:
    """Writes ``module`` (from :func:`zoo.exporters.tflite.network.build_module`) as a TF SavedModel.

    The signature ``serving_default`` has input ``input`` and outputs ``scores``/``boxes``.
    Written through ``zoo.core.fsutil.atomic_dir`` (a temporary folder beside ``out_dir``, renamed
    into place; an existing ``out_dir`` is replaced), so a failed save leaves nothing under the final name.
    """
    import tensorflow as tf  # heavy: imported when used

    out = Path(out_dir)
    if not hasattr(module, "serve"):
        raise ZooError("save_saved_model expects a module made by build_module")
    with atomic_dir(out) as tmp:
        try:
            sig = module.serve.get_concrete_function()
            tf.saved_model.save(module, str(tmp), signatures={SIGNATURE_KEY: sig})
        except Exception as exc:  # noqa: BLE001 - TF raises many types
            raise ZooError(f"could not write SavedModel {out}: {exc}") from None


#: a function name TensorFlow makes when it traces: ``__inference_<name>_<uid>``, uid from a counter
#: global to the process (so it depends on what the process traced before)
_TRACED = re.compile(r"__inference_\w+?_(\d+)(?!\w)")


def _strings(msg, fix):
    """Apply ``fix`` to every string field and string map key of the proto ``msg`` (recursively);
    bytes fields (tensor contents) are left alone."""
    from google.protobuf.descriptor import FieldDescriptor  # heavy: part of tensorflow's protobuf

    for field, value in msg.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                key_f, val_f = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
                key = fix if key_f.type == FieldDescriptor.TYPE_STRING else (lambda k: k)
                items = []
                for k, v in value.items():
                    if val_f.type == FieldDescriptor.TYPE_MESSAGE:
                        c = type(v)()
                        c.CopyFrom(v)
                        _strings(c, fix)
                        items.append((key(k), c))
                    else:
                        items.append((key(k), fix(v) if val_f.type == FieldDescriptor.TYPE_STRING else v))
                value.clear()
                for k, v in items:
                    if val_f.type == FieldDescriptor.TYPE_MESSAGE:
                        value[k].CopyFrom(v)
                    else:
                        value[k] = v
            elif field.is_repeated:
                for m in value:
                    _strings(m, fix)
            else:
                _strings(value, fix)
        elif field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [fix(v) for v in value]
            else:
                setattr(msg, field.name, fix(value))


def canonical_function_names(folder: Path) -> None:
    """Renumber the traced functions of the SavedModel in ``folder`` by their order (0, 1, ...):
    TensorFlow numbers them with a counter global to the process, so the same model saved after
    other traces in a warm worker (or in the other order of a release) got other names and bytes.
    The fingerprint is made again for the rewritten graph."""
    from tensorflow.core.protobuf import saved_model_pb2  # heavy: part of tensorflow
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting  # heavy: part of tensorflow

    path = Path(folder) / "saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(path.read_bytes())
    uids: set[int] = set()
    _strings(sm, lambda v: (uids.update(int(u) for u in _TRACED.findall(v)), v)[1])
    rank = {u: i for i, u in enumerate(sorted(uids))}

    def fix(v: str) -> str:
        return _TRACED.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + str(rank[int(m.group(1))]), v)

    _strings(sm, fix)
    for mg in sm.meta_graphs:  # TF lists the functions in an order of their old names
        lib = mg.graph_def.library
        funcs = sorted(lib.function, key=lambda f: f.signature.name)
        grads = sorted(lib.gradient, key=lambda g: (g.function_name, g.gradient_func))
        del lib.function[:]
        lib.function.extend(funcs)
        del lib.gradient[:]
        lib.gradient.extend(grads)
    atomic_write_bytes(path, sm.SerializeToString(deterministic=True))
    if (Path(folder) / "fingerprint.pb").is_file():
        atomic_write_bytes(Path(folder) / "fingerprint.pb", fingerprinting.CreateFingerprintDef(str(folder)))


def stable_fingerprint(folder: Path) -> None:
    """TF writes a random uuid into fingerprint.pb; derive it from the content hashes instead,
    so the same inputs give byte-identical SavedModels."""
    from tensorflow.core.protobuf import fingerprint_pb2  # heavy: part of tensorflow

    path = Path(folder) / "fingerprint.pb"
    if not path.is_file():
        return
    fp = fingerprint_pb2.FingerprintDef()
    fp.ParseFromString(path.read_bytes())
    if "uuid" in fp.DESCRIPTOR.fields_by_name:
        fp.uuid = str(fp.saved_model_checksum)
    atomic_write_bytes(path, fp.SerializeToString(deterministic=True))
