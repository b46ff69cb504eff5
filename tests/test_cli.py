import json
import re
import subprocess
import sys

import pytest
import torch

from nas.cli import main
from swiftformer import create_model
from swiftformer.testing import perturb_weights
from swiftnas_testing.cli import run_nas_here


def run_nas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=300)


def test_model_info_json_for_each_kind_of_reference(tmp_path, capsys):
    main(["model", "info", "swiftformer:xs", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 3_475_360 and info["macs"] == 602_207_824 and info["resolution"] == 224
    path = tmp_path / "arch.json"
    create_model("l1").arch.save(path)
    main(["model", "info", str(path), "--resolution", "256", "--json"])
    assert json.loads(capsys.readouterr().out)["macs"] > 1_595_706_240
    main(["model", "info", "timm:swiftformer_xs", "--json"])
    assert json.loads(capsys.readouterr().out)["macs"] == 602_207_824  # the hook count on timm's port agrees
    main(["model", "info", "timm:deit_tiny_patch16_224", "--resolution", "256", "--json"])  # position embeddings
    assert json.loads(capsys.readouterr().out)["resolution"] == 256


def test_model_info_table(capsys):
    main(["model", "info", "swiftformer:s"])
    out = capsys.readouterr().out
    assert "6.092 M params" in out and "stage3.block9" in out and "s24-48:CCA-64:CCA" in out


@pytest.mark.parametrize("args, message", [
    (["model", "info", "swiftformer:xl"], "unknown SwiftFormer variant 'xl'"),
    (["model", "info", "timm:not_a_model"], "unknown timm model 'not_a_model'"),
    (["model", "info", "missing.json"], "architecture file 'missing.json' does not exist"),
    (["model", "info", "xs"], "cannot read model reference 'xs'"),
    (["model", "info", "swiftformer:xs", "--resolution", "0"], "expected a positive integer"),
    (["export", "swiftformer:xs", "--format", "tflite", "--out", "x"], "invalid choice: 'tflite'"),
    (["export", "swiftformer:xs", "--format", "onnx", "--out", "x.onnx", "--checkpoint", "nope.pth"],
     "checkpoint 'nope.pth' does not exist"),
    (["export", "swiftformer:xs", "--format", "coreml", "--out", "x.onnx"], "saved as a .mlpackage directory"),
])
def test_bad_input_is_one_line_without_traceback(args, message, capsys):
    result = run_nas_here(capsys, *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(("nas: error:", "nas model info: error:",
                                                              "nas export: error:"))


def test_a_bad_value_ends_the_process_with_status_2_and_one_line():
    result = run_nas("model", "info", "swiftformer:xl")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("nas: error: unknown SwiftFormer variant 'xl'")


def test_export_onnx_with_an_official_checkpoint(tmp_path, capsys):
    torch.save({"model": perturb_weights(create_model("xs"), seed=2).state_dict()}, tmp_path / "xs.pth")
    main(["export", "swiftformer:xs", "--format", "onnx", "--out", str(tmp_path / "xs.onnx"),
          "--checkpoint", str(tmp_path / "xs.pth"), "--resolution", "128"])
    out = capsys.readouterr().out
    assert "input 1x3x128x128" in out and "max |diff| vs PyTorch" in out and (tmp_path / "xs.onnx").exists()


def test_export_refuses_a_checkpoint_of_another_variant(tmp_path):
    torch.save(create_model("s").state_dict(), tmp_path / "s.pth")
    result = run_nas("export", "swiftformer:xs", "--format", "onnx", "--out", str(tmp_path / "x.onnx"),
                     "--checkpoint", str(tmp_path / "s.pth"))
    assert result.returncode == 2 and "does not fit swiftformer:xs" in result.stderr


# ---------------------------------------------------------------------------------------------- CLI habits
def _options(parser, name="nas"):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _options(sub, f"{name} {sub_name}")
        elif action.option_strings and action.help is not argparse.SUPPRESS:
            yield name, parser, action


def test_version_and_every_options_help_with_its_default(capsys):
    import argparse

    from nas.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and re.match(r"nas \d+\.\d+", capsys.readouterr().out)
    missing, silent = [], []
    for name, parser, action in _options(build_parser()):
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if not action.help:
            missing.append(f"{name} {action.option_strings[0]}")
        elif action.nargs != 0 and action.default is not None and \
                "default" not in parser._get_formatter()._expand_help(action).lower():
            silent.append(f"{name} {action.option_strings[0]}")
    assert not missing and not silent, (missing, silent)


@pytest.mark.parametrize("command, dest, unit", [
    (["search", "--latency-budget", "1ms"], "timeout", 1.0), (["ablate", "type"], "timeout", 1.0),
    (["retrain", "swiftformer:xs", "--out", "o"], "minutes", 60.0),
    (["supernet", "train", "--out", "o"], "minutes", 60.0), (["benchmark"], "minutes", 60.0)])
def test_one_time_limit_across_commands(command, dest, unit):
    """``--minutes N`` everywhere, ``--timeout DURATION`` its alias; each command keeps its own unit inside."""
    from nas.cli import build_parser

    parser = build_parser()
    by_minutes = getattr(parser.parse_args([*command, "--minutes", "1.5"]), dest)
    by_duration = getattr(parser.parse_args([*command, "--timeout", "90s"]), dest)
    assert by_minutes == by_duration == pytest.approx(90 / unit)


def test_the_proxy_downscale_has_one_name():
    from nas.cli import build_parser

    parser = build_parser()
    for command in (["search", "--latency-budget", "1ms"], ["ablate", "type"], ["supernet", "train", "--out", "o"]):
        args = parser.parse_args([*command, "--proxy-downscale", "2"])
        assert getattr(args, "proxy_downscale", getattr(args, "downscale", None)) == 2.0, command
    assert parser.parse_args(["supernet", "train", "--out", "o", "--downscale", "2"]).downscale == 2.0  # old name


def test_shell_completion_completes_commands_and_options(monkeypatch):
    """What the shell asks of `nas` once `eval "$(register-python-argcomplete nas)"` is set up; argcomplete's own
    debug stream is kept off file descriptor 9, which pytest holds (as its documentation suggests)."""
    import io

    import argcomplete
    import argcomplete.io

    from nas.cli import build_parser

    class Finder(argcomplete.CompletionFinder):
        def _init_debug_stream(self):
            argcomplete.io.debug_stream = io.StringIO()

    line, out = "nas search --lat", io.StringIO()
    for name, value in {"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
                        "_ARGCOMPLETE_IFS": "\n"}.items():
        monkeypatch.setenv(name, value)
    Finder()(build_parser(), output_stream=out, exit_method=lambda code: None)
    assert out.getvalue().split() == ["--latency-budget", "--latency-margin", "--latency-shots"], out.getvalue()
