"""A trained model at inference time: checkpoint loading, the ``Predictor``, ONNX export,
the onnxruntime engine and quantisation. Below ``rsseg.infer``, above ``rsseg.models``."""
