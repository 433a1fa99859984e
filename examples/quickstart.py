"""mediatable quickstart: the cloud-media recipe end to end, offline (the same as `mediatable demo`).

It generates images and videos, serves them from a web server and an S3-compatible server on
127.0.0.1, and walks through the recipe; read the steps in `src/mediatable/demo/recipe.py`:

    python examples/quickstart.py
"""

from __future__ import annotations

import mediatable.demo

if __name__ == "__main__":
    mediatable.demo.main()
