import numpy as np
import onnxruntime as ort
import pytest
import torch

from swiftformer import SwiftFormer, SwiftFormerArch, create_model
from swiftformer.export import deployable, export_coreml, export_onnx
from swiftformer.testing import perturb_weights


def _onnx_matches_unfused(model: torch.nn.Module, path, resolution: int) -> None:
    result = export_onnx(model, path, resolution=resolution)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert "BatchNormalization" not in result.ops and result.ops["Conv"] > 0
    # end to end: the file against the original, unfused model, at a batch size other than the traced one
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, model.arch.in_chans, resolution, resolution)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() < 1e-4


def test_onnx_export_of_xs(tmp_path):
    _onnx_matches_unfused(perturb_weights(create_model("xs"), seed=1), tmp_path / "xs.onnx", 224)


@pytest.mark.slow
def test_onnx_export_of_random_architectures(tmp_path, random_archs):
    for i, arch in enumerate(random_archs[:3]):
        _onnx_matches_unfused(perturb_weights(SwiftFormer(arch), seed=i), tmp_path / f"a{i}.onnx", arch.resolution)


@pytest.mark.slow
@pytest.mark.parametrize("arch", [
    SwiftFormerArch.standard([3, 3, 6, 4], [48, 56, 112, 220]),
    SwiftFormerArch.standard([1, 2], [16, 24], attn_blocks=[1, 2], downsample=(False,), num_classes=0,
                             in_chans=1, resolution=64),
], ids=["xs", "odd"])
def test_coreml_ml_program_converts_and_reads_back(tmp_path, arch):
    model = perturb_weights(SwiftFormer(arch))
    result = export_coreml(model, tmp_path / "m.mlpackage")
    assert (tmp_path / "m.mlpackage" / "Manifest.json").exists()
    assert result.input_shape == (1, arch.in_chans, arch.resolution, arch.resolution)
    assert result.ops["conv"] == sum(isinstance(m, torch.nn.Conv2d) for m in deployable(model).modules())
    assert "batch_norm" not in result.ops and "softmax" not in result.ops
    if result.max_abs_diff is None:
        assert "macOS" in result.note


def test_coreml_rejects_a_wrong_suffix(tmp_path):
    with pytest.raises(ValueError, match=".mlpackage"):
        export_coreml(create_model("xs"), tmp_path / "m.mlmodel")


def test_an_app_ready_coreml_package_takes_images_gives_labels_and_matches_the_float_export(tmp_path):
    """The app's interface: an image input (0-255 pixels, scaled by CoreML, the training normalisation inside),
    a classifier's labels and probabilities, metadata. Its computation is checked against the float ONNX export on
    the same images in onnxruntime (here; on macOS ``export_coreml`` also runs the package itself)."""
    import coremltools as ct

    from swiftformer.export import AppInterface, app_model

    arch = SwiftFormerArch.standard([1, 1], [8, 16], attn_blocks=[0, 1], downsample=(True,), num_classes=3,
                                    resolution=32)
    model = perturb_weights(SwiftFormer(arch)).eval()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    app = AppInterface(mean=mean, std=std, labels=["red", "green", "blue"],
                       metadata={"architecture": arch.summary(), "test_top1": "91.00 % (test split)"})
    pixels = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)  # as a camera frame gives them
    normalised = (pixels.permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / \
        torch.tensor(std).view(1, 3, 1, 1)
    export_onnx(model, tmp_path / "float.onnx")
    session = ort.InferenceSession(str(tmp_path / "float.onnx"), providers=["CPUExecutionProvider"])
    float_probabilities = torch.tensor(session.run(None, {"image": normalised.numpy()})[0]).softmax(-1)
    with torch.inference_mode():  # what the package computes: CoreML's 1/255 scale, then the module
        app_probabilities = app_model(model, app)(pixels.permute(0, 3, 1, 2).float() / 255)
    assert torch.allclose(app_probabilities, float_probabilities, atol=1e-5)

    result = export_coreml(model, tmp_path / "app.mlpackage", app=app)
    spec = ct.utils.load_spec(str(tmp_path / "app.mlpackage"))
    image = spec.description.input[0].type
    assert image.WhichOneof("Type") == "imageType" and image.imageType.width == 32
    assert spec.description.predictedFeatureName == "classLabel" and result.ops["classify"] == 1
    assert all(label in str(spec.mlProgram) for label in app.labels)
    assert dict(spec.description.metadata.userDefined)["test_top1"] == "91.00 % (test split)"
    with pytest.raises(ValueError, match="2 labels for a model of 3 classes"):
        export_coreml(model, tmp_path / "bad.mlpackage", app=AppInterface(mean, std, labels=["a", "b"]))
