"""Print the `uv pip install` options for the package sources pip is set up with on this machine.

`make` installs with uv, which does not read pip's configuration. Where pip is pointed at a folder of
wheels (torch's CPU build), local indexes or a constraints file, uv is given the same sources so that
both install the same wheels; like pip, uv then takes the best version from any of them.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def uv_options(pip_config: str) -> list[str]:
    """uv options for the output of `pip config list` (lines such as `global.find-links='/opt/wheels'`)."""
    options = ["--index-strategy", "unsafe-best-match"]
    for line in pip_config.splitlines():
        key, _, value = line.partition("=")
        option = OPTIONS.get(key.rpartition(".")[2])
        if option is None:
            continue
        for item in " ".join(shlex.split(value)).split():  # a quoted value may list several
            if item not in options:
                options += [option, item]
    return options


if __name__ == "__main__":
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    print(shlex.join(uv_options(listing)))
