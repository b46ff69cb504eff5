"""SwiftNAS: latency prediction, proxy training and search over the SwiftFormer family (command line: ``nas``)."""
import swiftformer._torchvision_fix  # noqa: F401  (before anything imports timm)
