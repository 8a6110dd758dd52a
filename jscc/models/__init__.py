"""Model families; importing this package registers them all."""
from jscc.models.deepjscc import ADJSCC, DeepJSCC, c_from_bandwidth_ratio

__all__ = ["ADJSCC", "DeepJSCC", "c_from_bandwidth_ratio"]
