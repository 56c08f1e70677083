"""OpenVINO int8: NNCF post-training quantization (FakeQuantize on weights and activations) of the
fp32 IR, with the same layers kept float as the other targets' int8. (``convert.save_ir`` then writes
it compacted, the float-kept convolutions' weights as f16: the int8 IR is 42-44% of the fp32 one.)"""
from __future__ import annotations

import numpy as np

from zoo.exporters.openvino.convert import CONV_TYPES, conv_module
from zoo.exporters.openvino.quiet import import_nncf
from zoo.core.model.sensitivity import onnx_module_name

#: NNCF settings: name -> (preset, activation range estimator; None: NNCF's default)
SETTINGS = {
    "performance": ("PERFORMANCE", None),
    "minmax": ("PERFORMANCE", "MINMAX"),
}
#: the setting an export uses. Both used to be run and scored on the held-out calibration
#: images; absolute min/max beat NNCF's default on every published checkpoint, every time (held-out
#: error, lower is better): with halves of the shared photos rfb-320 0.0048 vs 0.0051, slim-320
#: 0.00091 vs 0.00099, rfb-640 0.0073 vs 0.0085; with the default calibration (a full default
#: release) rfb-320 0.0040 vs 0.0043, slim-320 0.0019 vs 0.0024, rfb-640 0.0035 vs 0.0046, slim-640
#: 0.0014 vs 0.0017. The mixed preset never beat min/max (0.0056, 0.00099, 0.0075) and the mean
#: quantile was 2-4x worse (0.011, 0.0042, 0.016). Each candidate cost a quantization (~10 s at
#: 320x240, ~15 s at 640x480) and its scoring for a choice that never went the other way.
SETTING = "minmax"


def float_nodes(model, keep_modules=()) -> list[str]:
    """Names of the operations NNCF must leave in float: the softmax, the convolutions reading the
    network input (one activation scale for three normalised colour channels quantises badly; the
    ONNX and ncnn int8 keep them float too) and those exported from ``keep_modules`` (PyTorch module
    names: the model-level sensitivity analysis)."""
    wanted = set(keep_modules)
    out = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Softmax":
            out.append(op.get_friendly_name())
        elif kind in CONV_TYPES:
            reads_input = op.input_value(0).get_node().get_type_name() == "Parameter"
            if reads_input or onnx_module_name(conv_module(op)) in wanted:
                out.append(op.get_friendly_name())
    return out


def to_int8(model, calib: np.ndarray, ignored: list[str], candidate: str):
    """``model`` (an fp32 ``openvino.Model``, left unchanged) quantized by NNCF on the (N, 3, H, W)
    batch ``calib``, every image used (subset_size = N), the operations ``ignored`` left float."""
    nncf = import_nncf()
    preset, estimator = SETTINGS[candidate]
    advanced = None
    if estimator is not None:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters  # optional: nncf, loaded above
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet  # optional: nncf, loaded above

        advanced = AdvancedQuantizationParameters(
            activations_range_estimator_params=getattr(RangeEstimatorParametersSet, estimator))
    data = nncf.Dataset([np.ascontiguousarray(calib[i : i + 1]) for i in range(calib.shape[0])])
    return nncf.quantize(model.clone(), data, preset=getattr(nncf.QuantizationPreset, preset),
                         target_device=nncf.TargetDevice.CPU, subset_size=int(calib.shape[0]),
                         fast_bias_correction=True, ignored_scope=nncf.IgnoredScope(names=list(ignored)),
                         advanced_parameters=advanced)


def quantized_ops(model) -> dict[str, int]:
    """Counts of the quantization operations in a model: FakeQuantize, and int8 weight constants."""
    fq = sum(1 for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
    i8 = sum(1 for op in model.get_ordered_ops()
             if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in ("i8", "u8"))
    return {"FakeQuantize": fq, "int8_constants": i8}
