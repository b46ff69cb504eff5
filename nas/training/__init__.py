"""Training architectures of the family: the search's proxy protocol and stronger reference protocols."""
from .devices import TrainDeviceError, resolve_train_device
from .proxy import ProxyConfig, ProxyDiverged, ProxyResult, ProxyTask, attention_token_warnings

__all__ = ["ProxyConfig", "ProxyDiverged", "ProxyResult", "ProxyTask", "TrainDeviceError",
           "attention_token_warnings", "resolve_train_device"]
