"""A stand-in for ``python`` in the GPU check's dry run (``PY="python -m swiftnas_testing.argcheck"``): each stage's
``nas`` command line, also behind ``torch.distributed.run``, goes through the real parsers and nothing runs.

The stages it stands in for run their same commands for real in other tests (the verdict plan's toy run, the
retraining's torchrun test, the export tests); what a typo in the check script would cost is a lent GPU's minutes,
and parsing is what catches it.
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:2] == ["-m", "torch.distributed.run"]:
        from torch.distributed.run import get_args_parser

        rest = argv[2:]
        split = rest.index("-m")
        get_args_parser().parse_args([*rest[:split], "-m", "placeholder"])  # the launcher's own options
        argv = rest[split:]
    if argv[:2] != ["-m", "nas"]:
        print(f"argcheck: expected `-m nas ...`, got {' '.join(argv[:3])!r}", file=sys.stderr)
        return 2
    from nas.cli import _attach_negative_values, build_parser

    build_parser().parse_args(_attach_negative_values(argv[2:]))
    print(f"parsed: nas {' '.join(argv[2:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
