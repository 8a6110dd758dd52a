"""Model families; importing this package registers them all."""
from jscc.models.deepjscc import DeepJSCC, c_from_bandwidth_ratio

__all__ = ["DeepJSCC", "c_from_bandwidth_ratio"]
