"""A weight-sharing supernet over a SwiftFormer search space (issue 10).

``SuperNet(space)`` holds every architecture of the space; ``supernet(x, arch)`` runs one with the first
channels of the shared weights; ``extract(arch)`` returns the ordinary ``swiftformer.SwiftFormer`` with those
weights; ``calibrated(supernet, arch, batches)`` re-estimates the subnet's BatchNorm statistics before scoring.
"""
from .blocks import BLOCK_KINDS
from .calibration import BNCalibration, calibrated
from .model import SuperNet
from .spaces import SupernetError, extreme_arch, stage_maxima

__all__ = ["BLOCK_KINDS", "BNCalibration", "SuperNet", "SupernetError", "calibrated", "extreme_arch",
           "stage_maxima"]
