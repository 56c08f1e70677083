"""The TF SavedModel the TFLite conversion passes through (and the saved_model target's artifact)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from exporters.tflite.network import SIGNATURE_KEY
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_dir, atomic_write_bytes


def save_saved_model(module: Any, out_dir: str | os.PathLike) -> None:
    """Writes ``module`` (from :func:`exporters.tflite.network.build_module`) as a TF SavedModel.

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
