"""The file TorchServe archives as ``--handler``: boosts the handler named in model-config.yaml.

    torch-model-archiver ... --handler plugins/torchserve/boost_handler.py --config-file model-config.yaml

model-config.yaml::

    yellowstone:
      handler: image_classifier        # or my_handler.py / my_handler.py:MyHandler (--extra-files)
      input_shape: [1, 3, 224, 224]    # optional: boost at load instead of on the first request
                                       # (or inputs: ["ids:1x128:int64", {name, shape, dtype}];
                                       #  "ids:-1xseq=1..256:int64" keeps seq dynamic in 1..256)
      backends: onnxruntime,openvino   # any yellowstone.BoostConfig field
      fused_preprocess: true           # image_classifier's pipeline compiled into the model

TorchServe takes the one class defined here as the handler, so this file defines exactly one.
"""

from yellowstone.plugins.torchserve.handler import BoostHandler as _BoostHandler


class BoostHandler(_BoostHandler):
    """TorchServe handler class (see :class:`yellowstone.plugins.torchserve.handler.BoostHandler`)."""
