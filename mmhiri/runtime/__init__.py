"""How a model of ours runs fast on a device: kind of kernel, memory layout, engine.

``mmhiri.models`` says what the networks compute (and holds their exact re-parameterisations,
``switch_to_deploy`` / ``deploy=True``); this package decides how they run:

* :func:`optimize` — fold, then let each attention layer, linear layer and convolution choose
  among exact implementations by timing them on the real inputs, and choose the memory
  layout the same way (:mod:`.choice`, :mod:`.layers`, :mod:`.cpu`);
* :mod:`.engines` — export to ONNX / OpenVINO and run a backbone (+ neck) in ONNX Runtime or
  OpenVINO, in fp32 or bf16, inside a PyTorch model.

Importing it runs no kernel and reads no environment variable.
"""
from .optimize import backbones_of, optimize, report

__all__ = ['optimize', 'report', 'backbones_of']
