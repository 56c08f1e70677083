"""The core: errors, atomic files, isolation, images, the model, artifact metadata, the manifest and the Runner protocol.

It imports nothing above it (checkpoints, exporters, validation, pipeline, cli)."""
import os as _os

# OpenCV reads its decoder pixel limit once, when it loads: set it here, before any module of ours
# imports cv2, to zoo.core.images.MAX_PIXELS (100 megapixels; a test keeps the two equal). It is the
# backstop for formats whose header zoo.core.images does not read. A number the user set is kept; an
# empty or non-numeric value (on which OpenCV aborts the process at import) is replaced.
if not _os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "").strip().isdigit():
    _os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = "100000000"

# The usage reporting of the libraries we load (onnxruntime's native client reads its switch when it
# loads): every environment switch set here, before any module of ours can import one of them, and
# inherited by every process zoo starts (zoo.core.telemetry).
from zoo.core.telemetry import turn_off as _turn_off  # noqa: E402

_turn_off()
