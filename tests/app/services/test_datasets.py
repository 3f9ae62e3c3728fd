"""POST /datasets: clean and paired zips, and the attacks a zip can carry."""

import io
import re
import zipfile
import zlib

import pytest
from fastapi.testclient import TestClient

from app.main import create_app

from tests.helpers import AUTH, make_settings, png_bytes, rgb, wait_for


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_clean_zip_then_train_on_it(client):
    data = _zip({f"photos/{i}.png": png_bytes(rgb(80, 80, i)) for i in range(3)})
    assert client.post("/datasets", content=data, headers={"content-type": "application/zip"}).status_code == 401
    r = client.post("/datasets", files={"file": ("d.zip", data, "application/zip")}, headers=AUTH)
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["kind"] == "clean" and info["images"] == 3 and isinstance(info["id"], str)
    assert info in client.get("/datasets").json()
    r = client.post("/train", json={"dataset": info["id"], "steps": 3, "batch_size": 2, "patch_size": 32},
                    headers=AUTH)
    assert wait_for(client, r.json()["id"])["status"] == "succeeded"


def test_pairs_zip(client):
    data = _zip({f"{s}/{i}.png": png_bytes(rgb(40, 40, i)) for s in "AB" for i in range(2)})
    r = client.post("/datasets", content=data, headers={**AUTH, "content-type": "application/zip"})
    assert r.status_code == 201 and r.json()["kind"] == "pairs" and r.json()["images"] == 2


@pytest.mark.parametrize("entries,status", [
    ({"../evil.png": b"x"}, 400),
    ({"/abs/evil.png": b"x"}, 400),
    ({"notes.txt": b"hello"}, 400),
    ({"A/1.png": b"x", "B/2.png": b"y"}, 400),
])
def test_bad_zips(client, entries, status):
    r = client.post("/datasets", content=_zip(entries), headers={**AUTH, "content-type": "application/zip"})
    assert r.status_code == status and r.json()["detail"]


def test_not_a_zip(client):
    r = client.post("/datasets", content=b"PK-not-really", headers={**AUTH, "content-type": "application/zip"})
    assert r.status_code == 400


def test_zip_bomb_and_file_count(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, max_dataset_files=5)
    with TestClient(create_app(s)) as c:
        bomb = _zip({"a.png": b"\0" * 50_000_000})
        r = c.post("/datasets", content=bomb, headers={**AUTH, "content-type": "application/zip"})
        assert r.status_code == 413 and "bomb" in r.json()["detail"]
        many = _zip({f"{i}.png": png_bytes(rgb(8, 8)) for i in range(6)})
        r = c.post("/datasets", content=many, headers={**AUTH, "content-type": "application/zip"})
        assert r.status_code == 413
        assert not [p for p in (tmp_path / "d" / "datasets").iterdir()] if (tmp_path / "d" / "datasets").exists() \
            else True


def test_corrupt_member_is_400_not_500(client):
    data = bytearray(_zip({"a.png": png_bytes(rgb(64, 64, 1)) * 3}))
    idx = data.find(b"IDAT")
    for i in range(40, 200):  # damage the compressed stream of the first member
        data[i] ^= 0xFF
    r = client.post("/datasets", content=bytes(data), headers={**AUTH, "content-type": "application/zip"})
    assert r.status_code == 400 and r.json()["detail"], (idx, r.text)


def _png_header(w: int, h: int) -> bytes:
    """A well-formed PNG declaring w x h RGB pixels whose pixel data is a few bytes: what a header check sees
    of a huge image (training would decode all w x h)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _post_zip(c, entries: dict[str, bytes]):
    return c.post("/datasets", content=_zip(entries), headers={**AUTH, "content-type": "application/zip"})


def _no_dataset_left(settings) -> bool:
    root = settings.data_dir / "datasets"
    return not root.exists() or not list(root.iterdir())


def test_images_over_the_pixel_limit_are_refused_from_their_headers(client, settings):
    r = _post_zip(client, {f"big/{i}.png": _png_header(8000, 8000) for i in range(3)})  # 64 Mpx each; limit 40
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "'big/0.png'" in detail and "8000x8000" in detail and str(settings.max_pixels) in detail
    assert _no_dataset_left(settings)


def test_pixel_limit_follows_the_setting(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, max_pixels=1000)
    with TestClient(create_app(s)) as c:
        r = _post_zip(c, {"ok.png": png_bytes(rgb(20, 20)), "large.png": png_bytes(rgb(40, 40))})
        assert r.status_code == 400 and "'large.png'" in r.json()["detail"] and "1000" in r.json()["detail"]
        assert _post_zip(c, {"ok.png": png_bytes(rgb(20, 20))}).status_code == 201


def test_total_pixels_of_a_dataset_are_limited(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, max_dataset_pixels=4000)
    with TestClient(create_app(s)) as c:
        r = _post_zip(c, {f"{i}.png": png_bytes(rgb(40, 40, i)) for i in range(3)})  # 3 x 1600
        assert r.status_code == 413 and "4000" in r.json()["detail"]
        assert _no_dataset_left(s)


@pytest.mark.parametrize("fake", [b"this is not a png at all" * 10, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b""])
def test_a_file_that_is_not_an_image_is_refused_by_name(client, settings, fake):
    r = _post_zip(client, {"set/good.png": png_bytes(rgb(40, 40)), "set/fake.png": fake})
    assert r.status_code == 400, r.text
    assert "'set/fake.png'" in r.json()["detail"]
    assert _no_dataset_left(settings)


def test_a_png_with_a_damaged_chunk_is_refused(client):
    data = bytearray(png_bytes(rgb(40, 40)))
    data[data.find(b"IDAT") + 10] ^= 0xFF  # the chunk's CRC no longer matches
    r = _post_zip(client, {"broken.png": bytes(data)})
    assert r.status_code == 400 and "'broken.png'" in r.json()["detail"]


ROOTED_PATH = re.compile(r"(?:^|[\s'\"(=:])/[\w.-]")  # a '/'-rooted path anywhere in a message


@pytest.mark.parametrize("name", [
    "x" * 300 + ".png",                 # the file name alone is over NAME_MAX (255 bytes)
    "A/" + "y" * 300 + ".png",          # inside a pair folder
    "deep/" * 300 + "z.png",            # each part short, the whole name 1500 bytes
    "é" * 130 + ".png",                 # 130 characters but 264 bytes in UTF-8
])
def test_over_long_member_names_are_400_without_server_paths(client, settings, name):
    r = _post_zip(client, {name: png_bytes(rgb(20, 20)), "B/" + name.rpartition("/")[2]: png_bytes(rgb(20, 20))})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "too long" in detail
    for server_path in {str(settings.data_dir), str(settings.data_dir.resolve()), str(settings.data_dir.parent)}:
        assert server_path not in detail
    assert not ROOTED_PATH.search(detail), detail
    assert _no_dataset_left(settings)


def test_a_name_of_255_bytes_fits_once_numbered(client, settings):
    name = "n" * 251 + ".png"  # stored as 00000_nnn...png: shortened to stay within 255 bytes
    r = _post_zip(client, {name: png_bytes(rgb(20, 20))})
    assert r.status_code == 201, r.text
    stored = [p.name for p in (settings.data_dir / "datasets" / r.json()["id"]).iterdir() if p.suffix == ".png"]
    assert len(stored) == 1 and len(stored[0].encode()) <= 255 and stored[0].startswith("00000_nnn")


def test_os_errors_while_unpacking_give_their_reason_not_their_path(tmp_path, monkeypatch):
    from app.services import datasets

    def full_disk(fd):
        raise OSError(28, "No space left on device", str(tmp_path / "datasets" / ".d-x" / "00000_a.png"))

    monkeypatch.setattr(datasets.os, "fsync", full_disk)
    with pytest.raises(datasets.DatasetError) as e:
        datasets.ingest_zip(_zip({"a.png": png_bytes(rgb(20, 20))}), tmp_path / "datasets", 10, 10**8, 200.0)
    assert "No space left on device" in str(e.value) and str(tmp_path) not in str(e.value)
    assert not ROOTED_PATH.search(str(e.value))


def test_scrub_paths():
    from pathlib import Path

    from app.core.messages import scrub_paths

    assert scrub_paths("failed at /srv/n2n/datasets/x.png", Path("/srv/n2n")) == "failed at <data>/datasets/x.png"
    assert scrub_paths("a.b/c", Path("."), Path("/")) == "a.b/c"  # never the bare '.' or '/'
