"""How to type a driftline command in this shell, for the commands the demo and stack print."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def command(arguments: str) -> str:
    """`driftline ARGUMENTS` when PATH finds this very program, else the way it was started."""
    program = Path(sys.argv[0])
    found = shutil.which("driftline")
    if found and program.name == "driftline" and Path(found).resolve() == program.resolve():
        return f"driftline {arguments}"
    if program.name == "driftline" and program.exists():
        relative = os.path.relpath(program.resolve(), Path.cwd())
        shown = relative if relative.startswith(".") else f"./{relative}"
        return f"{shown if len(shown) < len(str(program)) else program} {arguments}"
    return f"{Path(sys.executable)} -m driftline {arguments}"
