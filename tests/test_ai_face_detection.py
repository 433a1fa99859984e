"""Face detection (`mt.functions.detect_faces`) on a real photo, EXIF-rotated copies and face-free images.

`tests/data/astronaut.jpg` is a public-domain NASA portrait (see tests/data/README.md) with one
frontal face at about (90, 29)-(136, 89). Generated images (flat colours, noise, text) have none.
"""

from __future__ import annotations

import io
from pathlib import Path

import PIL.Image
import pytest

import mediagen
import mediatable as mt
from mediatable.functions.ai import face_detection
from servers.http import FaultServer

ASTRONAUT = Path(__file__).parent / "data" / "astronaut.jpg"
FACE = (90, 29, 136, 89)


def sideways_copy(orientation: int) -> bytes:
    """The astronaut stored rotated, with the EXIF tag that tells viewers to turn it back upright."""
    stored = PIL.Image.open(ASTRONAUT).transpose(
        {6: PIL.Image.Transpose.ROTATE_90, 8: PIL.Image.Transpose.ROTATE_270}[orientation]
    )
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def near(box: list[int], expected: tuple[int, ...], tolerance: int = 8) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(box, expected, strict=True))


@pytest.fixture
def home(clean_env: Path) -> Path:
    mt.init(home=clean_env, quiet=True)
    return clean_env


def test_detect_faces_finds_the_face_in_the_upright_frame_and_nothing_elsewhere(
    home: Path, http_server: FaultServer, tmp_path: Path
) -> None:
    urls = [
        http_server.put("faces/astronaut.jpg", ASTRONAUT.read_bytes()),
        http_server.put("faces/rotated6.jpg", sideways_copy(6)),
        http_server.put("faces/rotated8.jpg", sideways_copy(8)),
        http_server.put(
            "faces/noise.jpg", mediagen.make_jpeg(tmp_path / "noise.jpg", size=(256, 256), noise=True).read_bytes()
        ),
        http_server.put("faces/flat.png", mediagen.make_png(tmp_path / "flat.png", size=(200, 150)).read_bytes()),
        http_server.put("faces/broken.jpg", mediagen.make_corrupt_jpeg(tmp_path / "broken.jpg").read_bytes()),
    ]
    t = mt.create_table("photos", {"image": mt.Image, "n": mt.Int})
    t.insert([{"image": u, "n": i} for i, u in enumerate(urls)], quiet=True)

    status = t.add_computed_column(faces=mt.functions.detect_faces(t.image), quiet=True)

    assert (status.num_computed_values, status.num_excs) == (6, 1)
    faces = t.order_by(t.n).select(t.faces, err=t.faces.errortype).collect()
    for upright in faces["faces"][:3]:  # rotated copies: the same box, since EXIF orientation is applied first
        assert len(upright) == 1 and upright[0]["score"] > 0.9 and near(upright[0]["box"], FACE), upright
    assert faces["faces"][3:5] == [[], []]
    assert faces["err"][5] == "MediaDecodeError"
    assert face_detection.MODEL.loads == 1


def test_detect_faces_direct_calls_thresholds_and_stored_pixels(tmp_path: Path) -> None:
    (face,) = mt.functions.detect_faces(str(ASTRONAUT))
    assert near(face["box"], FACE) and 0.9 < face["score"] <= 1.0
    assert mt.functions.detect_faces(str(ASTRONAUT), min_score=1.01) == []
    # without applying the tag the stored (sideways) pixels give another box, or none at all
    raw = PIL.Image.open(io.BytesIO(sideways_copy(6)))
    stored_only = face_detection.find_faces([raw.convert("RGB")])[0]
    assert not any(near(f["box"], FACE) for f in stored_only)
    with pytest.raises(mt.MediaDecodeError):
        mt.functions.detect_faces(str(mediagen.make_corrupt_jpeg(tmp_path / "bad.jpg")))
