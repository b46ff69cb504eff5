"""SwiftNAS: latency prediction, proxy training and search over the SwiftFormer family (command line: ``nas``).

The package itself imports nothing, so that its torch-free modules (``nas.identity``, ``nas.units``) stay light;
every module that imports timm or torchvision imports ``swiftformer._torchvision_fix`` first.
"""
