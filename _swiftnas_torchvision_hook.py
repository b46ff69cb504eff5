"""Applies ``swiftformer``'s torchvision fix just before the first ``import torchvision``, whoever imports it.

The Makefile's ``.venv`` loads this module at interpreter start (a ``.pth`` file), so ``import timm`` works
before ``import swiftformer`` too. It costs nothing until torchvision is imported: it installs an import hook,
and the hook loads only the fix module (not the ``swiftformer`` package, which itself imports timm).
"""
import importlib.util
import os
import sys


class _BeforeTorchvision:
    def find_spec(self, name, path=None, target=None):  # noqa: D401 (importlib's finder protocol)
        if name == "torchvision":
            sys.meta_path.remove(self)
            _apply_fix()
        return None  # the ordinary finders import torchvision itself


def _apply_fix() -> None:
    if "swiftformer._torchvision_fix" in sys.modules:
        return
    package = importlib.util.find_spec("swiftformer")  # locates the package without importing it
    for folder in (package.submodule_search_locations or []) if package else []:
        path = os.path.join(folder, "_torchvision_fix.py")
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("swiftformer._torchvision_fix", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # `import swiftformer` later finds it done
            spec.loader.exec_module(module)
            return


if not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
    sys.meta_path.insert(0, _BeforeTorchvision())
