"""Model families; importing this package registers them all."""
from jscc.models.base import JSCCModel
from jscc.models.deepjscc import ADJSCC, DeepJSCC, c_from_bandwidth_ratio
from jscc.models.feedback import DeepJSCCFeedback
from jscc.models.generative import GenerativeJSCC, InverseJSCC
from jscc.models.layered import LayeredMasked, LayeredMultiDecoder, LayeredRefinement
from jscc.models.quantized import DeepJSCCQ
from jscc.models.swin import SwinJSCC
from jscc.models.video import DeepWiVe

__all__ = ["ADJSCC", "DeepJSCC", "DeepJSCCFeedback", "DeepJSCCQ", "DeepWiVe", "GenerativeJSCC", "InverseJSCC", "JSCCModel", "LayeredMasked",
           "LayeredMultiDecoder", "LayeredRefinement", "SwinJSCC", "c_from_bandwidth_ratio"]
