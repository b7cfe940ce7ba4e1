"""`python -m tinybin <command>`: train, evaluate, export, bench — the command line, and nothing else.

Each command is a module here with `add_arguments(parser)` and `run(args) -> exit code`. The
library raises ordinary exceptions (ValueError, FileNotFoundError, ...); the commands turn the
ones a user can cause (an unknown variant, a depth that is not 6n+2, missing data) into one
line on stderr and exit status 2, never a traceback. Nothing in the library imports this
package: only the commands do, `tinybin/__main__.py` and the PyTorch trainer's
(`tinybin.torch.train`, which takes `train`'s flags).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .errors import UsageError

COMMANDS = {
    "train": "train a WRN on CIFAR-10/100 or an image folder",
    "evaluate": "test accuracy of a checkpoint, a packed export or the authors' model",
    "export": "pack a 1-bit model one bit per weight; count its operations",
    "bench": "benchmarks: conv, data, train, ops, infer",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions keep their lines (the benchmarks' tables); "(default: X)" is added once, and
    only where it says something: not after a help text that already speaks of its default, nor
    for None or an off switch."""

    def _get_help_string(self, action):
        text = action.help or ""
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if "default" in text.lower() or action.default is None or switch:
            return text
        return super()._get_help_string(action)


def formatter(prog):
    """The help format of every tinybin command (and of tinybin.torch.train)."""
    return _HelpFormatter(prog, max_help_position=32)


def build_parser(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinybin", formatter_class=formatter,
                                     description="tinybin: 1-bit-per-weight, BN-free wide ResNets in NumPy + Numba")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    sub.required = True
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)
        if argv and argv[0] == name:  # only the command asked for imports its module
            module = importlib.import_module(f"{__name__}.{name}")
            module.add_arguments(p, formatter) if name == "bench" else module.add_arguments(p)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def main(argv=None) -> int:
    warnings.formatwarning = _one_line_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    args.argv = argv[1:]  # what was typed after the command (train --resume tells typed flags from defaults)
    try:
        return int(importlib.import_module(f"{__name__}.{args.command}").run(args) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT
        print("interrupted", file=sys.stderr)
        return 130
