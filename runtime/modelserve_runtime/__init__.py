"""modelserve runtime: the Open Inference Protocol v2 server that runs in every model pod."""

__version__ = "0.1.0"
