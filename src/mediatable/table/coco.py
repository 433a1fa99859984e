"""Query results as a COCO detection dataset: the JSON that detection trainers and pycocotools read.

One image per row, one annotation per detected object::

    {"info": {...}, "licenses": [],
     "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 640, "height": 480}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [x, y, w, h],
                      "area": w * h, "iscrowd": 0}, ...],
     "categories": [{"id": 1, "name": "cat", "supercategory": ""}, ...]}

A row's annotations are a JSON value in one of two shapes: a list of objects, each with a box —
`bbox` `[x, y, width, height]` (COCO's own) or `box` `[x1, y1, x2, y2]` (what mediatable's detectors
return) — and a `category` or `label` (name or id), optionally `score`, `area`, `iscrowd`; or one
object of parallel lists `{"boxes": [[x1, y1, x2, y2], ...], "labels": [...], "scores": [...]}`
(also `bboxes`, and `label_text` for names), as detection models return. Category ids start at 1
(0 is the background for most trainers): names get ids in sorted order unless `categories` gives them.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import PIL.Image

from mediatable.catalog.catalog import check_choice
from mediatable.errors import DataError, InvalidArgument
from mediatable.exec.media_cells import MediaCell
from mediatable.exec.status import plural
from mediatable.io.urls import parse_url

MEDIA_AS = ("copy", "url")
Categories = Mapping[int, str] | Sequence[str] | None


@dataclasses.dataclass(frozen=True)
class CocoWritten:
    """What :meth:`Query.to_coco <mediatable.table.Query.to_coco>` wrote.

    Examples:
        >>> print(CocoWritten(Path("/data/coco.json"), images=3, annotations=7, categories=2, skipped=0))
        3 images, 7 annotations, 2 categories written to /data/coco.json
    """

    path: Path
    images: int
    annotations: int
    categories: int
    skipped: int

    def __str__(self) -> str:
        left_out = f"; {plural(self.skipped, 'row')} without an image left out" if self.skipped else ""
        counts = f"{plural(self.images, 'image')}, {plural(self.annotations, 'annotation')}"
        categories = f"{self.categories} {'category' if self.categories == 1 else 'categories'}"
        return f"{counts}, {categories} written to {self.path}{left_out}"


def write_coco(
    rows: Iterable[tuple[int | None, Any, Any]],
    path: str | os.PathLike[str],
    *,
    media: str = "copy",
    categories: Categories = None,
    description: str = "",
) -> CocoWritten:
    """Write `(rowid, image, annotations)` rows as COCO JSON at `path`.

    Images are :class:`MediaCell` references (copied byte for byte to `<folder of path>/images/`
    with `media='copy'`, or referenced by URL with `media='url'`) or PIL images computed by the
    query (saved as PNG; `'copy'` only).

    Raises:
        InvalidArgument: bad `media` or `categories`.
        DataError: an annotation of unknown shape, or a category not in `categories` (names the row).
    """
    check_choice("media", media, MEDIA_AS)
    target = Path(path).expanduser().absolute()
    images_dir = target.parent / "images"
    names = _Categories(categories)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    skipped = 0
    for rowid, image, found in rows:
        if image is None:
            skipped += 1
            continue
        image_id = len(images) + 1
        entry = {"id": image_id, **_image_entry(image, image_id, images_dir, media, rowid)}
        images.append(entry)
        for box, label, extra in _objects(found, rowid):
            x, y, w, h = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": names.id_of(label, rowid),
                    "bbox": [x, y, w, h],
                    "area": extra.get("area", w * h),
                    "iscrowd": int(extra.get("iscrowd", 0)),
                    **({"score": extra["score"]} if "score" in extra else {}),
                }
            )
    document = {
        "info": {
            "description": description,
            "version": "1.0",
            "date_created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": names.resolve(annotations),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"
    try:
        staging.write_text(json.dumps(document))
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return CocoWritten(target, len(images), len(annotations), len(document["categories"]), skipped)


def _image_entry(image: Any, image_id: int, folder: Path, media: str, rowid: int | None) -> dict[str, Any]:
    """`file_name`, `width`, `height` (and `coco_url` when referenced) of one image; copies it when asked."""
    if isinstance(image, MediaCell):
        with image.decoding(), PIL.Image.open(image.path) as opened:
            width, height = opened.size
        if media == "url":
            url = parse_url(image.url) if image.url is not None else None
            name = str(url.local_path) if url is not None and url.local_path is not None else image.url
            return {"file_name": name, "coco_url": image.url, "width": width, "height": height}
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{image_id:012d}{Path(image.path).suffix.lower() or '.jpg'}"
        shutil.copyfile(image.path, folder / name)
        return {"file_name": name, "width": width, "height": height}
    if isinstance(image, PIL.Image.Image):
        if media == "url":
            raise InvalidArgument(
                f"row {rowid}: the image is computed by the query and has no URL; use media='copy' to write it"
            )
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{image_id:012d}.png"
        image.save(folder / name, format="PNG")
        return {"file_name": name, "width": image.width, "height": image.height}
    raise DataError(f"row {rowid}: images= must be an Image column or image expression, got {type(image).__name__}")


def _objects(found: Any, rowid: int | None) -> list[tuple[list[float], Any, dict[str, Any]]]:
    """A row's annotations as (bbox [x, y, w, h], category, extra fields)."""
    if found is None:
        return []
    if isinstance(found, Mapping):
        boxes = found.get("boxes", found.get("bboxes"))
        labels = found.get("label_text", found.get("labels"))
        if boxes is None or labels is None or len(boxes) != len(labels):
            raise DataError(
                f"row {rowid}: annotations need 'boxes' and 'labels' of the same length, got {_short(found)}"
            )
        scores = found.get("scores")
        return [
            (_xyxy(box, rowid), label, {"score": scores[i]} if scores is not None else {})
            for i, (box, label) in enumerate(zip(boxes, labels, strict=True))
        ]
    if not isinstance(found, list):
        raise DataError(f"row {rowid}: annotations must be a list of objects or a dict of lists, got {_short(found)}")
    out = []
    for item in found:
        if not isinstance(item, Mapping) or ("bbox" not in item and "box" not in item):
            raise DataError(
                f"row {rowid}: an annotation needs 'bbox' [x, y, w, h] or 'box' [x1, y1, x2, y2]: {_short(item)}"
            )
        box = _xywh(item["bbox"], rowid) if "bbox" in item else _xyxy(item["box"], rowid)
        label = item.get("category", item.get("label"))
        extra = {key: item[key] for key in ("score", "area", "iscrowd") if key in item}
        out.append((box, label, extra))
    return out


def _numbers(box: Any, rowid: int | None) -> list[float]:
    if not isinstance(box, Sequence) or len(box) != 4 or not all(isinstance(v, int | float) for v in box):
        raise DataError(f"row {rowid}: a box must be 4 numbers, got {_short(box)}")
    return list(box)


def _xywh(box: Any, rowid: int | None) -> list[float]:
    x, y, w, h = _numbers(box, rowid)
    if w < 0 or h < 0:
        raise DataError(f"row {rowid}: a bbox [x, y, w, h] has a negative size: {box}")
    return [x, y, w, h]


def _xyxy(box: Any, rowid: int | None) -> list[float]:
    x1, y1, x2, y2 = _numbers(box, rowid)
    if x2 < x1 or y2 < y1:
        raise DataError(f"row {rowid}: a box [x1, y1, x2, y2] ends before it starts: {box}")
    return [x1, y1, x2 - x1, y2 - y1]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


class _Categories:
    """Category ids and names: given, or made from the labels seen (names sorted, ids from 1)."""

    def __init__(self, categories: Categories) -> None:
        self.given: dict[int, str] | None = None
        if isinstance(categories, Mapping):
            self.given = {int(k): str(v) for k, v in categories.items()}
        elif categories is not None:
            if isinstance(categories, str):
                raise InvalidArgument("categories must be a list of names or a {id: name} dict, not a string")
            self.given = {i + 1: str(name) for i, name in enumerate(categories)}
        self.by_name = {name: i for i, name in (self.given or {}).items()}
        self.seen: dict[Any, int] = {}

    def id_of(self, label: Any, rowid: int | None) -> Any:
        if label is None or isinstance(label, bool) or not isinstance(label, str | int):
            raise DataError(
                f"row {rowid}: an annotation needs a 'category' or 'label' (a name or an id), got {label!r}"
            )
        if self.given is None:
            self.seen.setdefault(label, 0)
            return label  # the final id is known once every name is seen: see entries()
        found = self.by_name.get(label) if isinstance(label, str) else (label if label in self.given else None)
        if found is None:
            raise DataError(f"row {rowid}: category {label!r} is not one of the categories given")
        return found

    def resolve(self, annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The `categories` list; for categories made from the data, sets the annotations' final ids too."""
        if self.given is not None:
            return [{"id": i, "name": name, "supercategory": ""} for i, name in sorted(self.given.items())]
        names = sorted(label for label in self.seen if isinstance(label, str))
        numbers = sorted(label for label in self.seen if isinstance(label, int))
        if names and numbers:
            raise DataError(f"annotations mix category names {names[:3]} and ids {numbers[:3]}: pass categories=")
        ids = {name: i + 1 for i, name in enumerate(names)} | {n: n for n in numbers}
        for annotation in annotations:
            annotation["category_id"] = ids[annotation["category_id"]]
        return [{"id": ids[label], "name": str(label), "supercategory": ""} for label in names or numbers]
