"""What an OpenVINO worker imports up front (``OpenvinoTarget.preload``): openvino through ``quiet``,
so its usage reporting is off before the module is first imported. (Preloading ``openvino`` by name
would import openvino-telemetry with it, live.) nncf is left to int8 exports: it also loads torch."""
from zoo.exporters.openvino.quiet import import_openvino

openvino = import_openvino()
