"""Latency on the user's phone, predicted from the deployed graph and calibrated on measurements."""
from __future__ import annotations

from .graph import FEATURES, OpProfile, profile_model
from .calibration import calibrate
from .measurements import MeasurementError, Sample, profile_ref, read_measurements
from .predictor import LatencyPredictor, PredictorError, builtin_devices, load_device

__all__ = ["FEATURES", "LatencyPredictor", "MeasurementError", "OpProfile", "PredictorError", "Sample",
           "builtin_devices", "calibrate", "load_device", "predict_latency", "profile_model", "profile_ref",
           "read_measurements"]


def predict_latency(model: str, predictor: LatencyPredictor, resolution: int | None = None) -> float:
    """Predicted milliseconds for a model reference at ``resolution`` (default: the model's own), by its family's
    own line where the predictor's calibration measured the family."""
    from ..models import parse_model_ref
    from .measurements import family_of, profiled_ref

    profile = profile_ref(profiled_ref(model), resolution or parse_model_ref(model).default_resolution())
    return predictor.predict(profile, family_of(model))
