"""`to_coco`: detection JSON checked against COCO's structure and read back with pycocotools, images
copied byte for byte or referenced, categories, and clear errors naming the row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import mediagen
import mediatable as mt
from servers.http import FaultServer

DETECTIONS = [
    [{"box": [10, 5, 40, 25], "label": "cat", "score": 0.9}, {"box": [0, 0, 8, 8], "label": "dog", "score": 0.6}],
    {"boxes": [[20, 10, 60, 30]], "labels": [7], "label_text": ["bird"], "scores": [0.8]},
    [],
    [{"bbox": [1, 2, 30, 20], "category": "cat", "iscrowd": 0}],
]


def check_coco_structure(doc: dict[str, Any]) -> None:
    """The structure COCO detection readers rely on: keys, types, unique ids, references that resolve."""
    assert set(doc) >= {"images", "annotations", "categories"}
    image_ids = [image["id"] for image in doc["images"]]
    category_ids = [category["id"] for category in doc["categories"]]
    assert len(set(image_ids)) == len(image_ids) and len(set(category_ids)) == len(category_ids)
    for image in doc["images"]:
        assert isinstance(image["id"], int) and isinstance(image["file_name"], str)
        assert isinstance(image["width"], int) and isinstance(image["height"], int) and image["width"] > 0
    for category in doc["categories"]:
        assert isinstance(category["id"], int) and category["id"] >= 1 and isinstance(category["name"], str)
    annotation_ids = [a["id"] for a in doc["annotations"]]
    assert len(set(annotation_ids)) == len(annotation_ids)
    for annotation in doc["annotations"]:
        assert annotation["image_id"] in image_ids and annotation["category_id"] in category_ids
        x, y, w, h = annotation["bbox"]
        assert all(isinstance(v, int | float) for v in (x, y, w, h)) and w >= 0 and h >= 0
        assert annotation["area"] == w * h and annotation["iscrowd"] in (0, 1)


@pytest.fixture
def shots(db_home: Path, http_server: FaultServer, tmp_path: Path) -> tuple[mt.Table, list[bytes]]:
    folder = f"coco-{tmp_path.name}"
    files = [mediagen.make_jpeg(tmp_path / f"{i}.jpg", size=(64 + i, 48), noise=True).read_bytes() for i in range(4)]
    t = mt.create_table("shots", {"image": mt.Image, "n": mt.Int, "dets": mt.Json})
    t.insert(
        [
            {"image": http_server.put(f"{folder}/{i}.jpg", f), "n": i, "dets": DETECTIONS[i]}
            for i, f in enumerate(files)
        ],
        quiet=True,
    )
    return t, files


def test_detection_json_that_pycocotools_reads(shots: tuple[mt.Table, list[bytes]], tmp_path: Path) -> None:
    t, files = shots
    path = tmp_path / "export" / "train.json"
    report = t.order_by(t.n).to_coco(path, images=t.image, annotations=t.dets)
    assert (report.images, report.annotations, report.categories) == (4, 4, 3)
    doc = json.loads(path.read_text())
    check_coco_structure(doc)
    assert doc["categories"] == [
        {"id": 1, "name": "bird", "supercategory": ""},
        {"id": 2, "name": "cat", "supercategory": ""},
        {"id": 3, "name": "dog", "supercategory": ""},
    ]
    first = doc["annotations"][0]
    assert first == {
        "id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 5, 30, 20], "area": 600, "iscrowd": 0, "score": 0.9
    }  # fmt: skip
    assert doc["annotations"][2]["bbox"] == [20, 10, 40, 20] and doc["annotations"][2]["category_id"] == 1
    assert doc["annotations"][3]["bbox"] == [1, 2, 30, 20]
    for i, image in enumerate(doc["images"]):
        assert (image["width"], image["height"]) == (64 + i, 48)
        assert (path.parent / "images" / image["file_name"]).read_bytes() == files[i]  # copied byte for byte

    coco = COCO(str(path))  # pycocotools indexes it as any COCO dataset
    assert sorted(coco.getImgIds()) == [1, 2, 3, 4] and len(coco.getAnnIds(imgIds=[1])) == 2
    assert coco.loadCats(coco.getCatIds(catNms=["cat"]))[0]["id"] == 2
    results = coco.loadRes([{**a, "score": a.get("score", 1.0)} for a in doc["annotations"]])
    evaluation = COCOeval(coco, results, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # the annotations found themselves: mAP 1


def test_referenced_images_and_given_categories(shots: tuple[mt.Table, list[bytes]], tmp_path: Path) -> None:
    t, _ = shots
    path = tmp_path / "ref.json"
    query = t.where(t.n != 1).order_by(t.n)
    query.to_coco(path, images=t.image, annotations=t.dets, media="url", categories=["dog", "cat", "bird"])
    doc = json.loads(path.read_text())
    check_coco_structure(doc)
    assert not (tmp_path / "images").exists()
    assert doc["images"][0]["file_name"] == doc["images"][0]["coco_url"] and doc["images"][0]["file_name"].startswith(
        "http://127.0.0.1"
    )
    assert [a["category_id"] for a in doc["annotations"]] == [2, 1, 2]
    with pytest.raises(mt.DataError, match="row 2: category 'bird' is not one of the categories given"):
        t.to_coco(tmp_path / "x.json", images=t.image, annotations=t.dets, categories={1: "cat", 3: "dog"})


def test_bad_annotations_and_failed_images_name_the_row(
    db_home: Path, http_server: FaultServer, tmp_path: Path
) -> None:
    good = http_server.put(f"bad-{tmp_path.name}/a.jpg", mediagen.make_jpeg(tmp_path / "a.jpg").read_bytes())
    t = mt.create_table("bad", {"image": mt.Image, "n": mt.Int, "dets": mt.Json})
    t.insert([{"image": good, "n": 1, "dets": [{"box": [0, 0, 5, 5], "label": "x"}]}], quiet=True)
    t.insert([{"image": good, "n": 2, "dets": [{"box": [5, 5, 1, 1], "label": "x"}]}], quiet=True)
    with pytest.raises(mt.DataError, match=r"row 2: a box \[x1, y1, x2, y2\] ends before it starts"):
        t.order_by(t.n).to_coco(tmp_path / "bad.json", images=t.image, annotations=t.dets)
    assert not (tmp_path / "bad.json").exists()
    t.update({"dets": {"labels": ["x"]}}, where=t.n == 2)
    with pytest.raises(mt.DataError, match="row 2: annotations need 'boxes' and 'labels'"):
        t.order_by(t.n).to_coco(tmp_path / "bad.json", images=t.image, annotations=t.dets)
    t.update({"image": http_server.url("nowhere/b.jpg"), "dets": []}, where=t.n == 2)
    with pytest.raises(mt.ComputeError, match="row 2 failed: MediaNotFound"):
        t.order_by(t.n).to_coco(tmp_path / "bad.json", images=t.image, annotations=t.dets)
    report = t.order_by(t.n).to_coco(tmp_path / "ok.json", images=t.image, annotations=t.dets, on_error="ignore")
    assert (report.images, report.skipped) == (1, 1) and "1 row without an image left out" in str(report)
