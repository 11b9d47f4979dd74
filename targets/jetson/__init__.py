"""Jetson target: TensorRT explicit-quantization ONNX graphs, checked on CPU; engines built on the device.

Everything the target decides (the graph, its rule check, builder settings, buffers) is produced and
tested on CPU; only the engine build, timing and power sampling run on a Jetson (docs/jetson.md).
"""
