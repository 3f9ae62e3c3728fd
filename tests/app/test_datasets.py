"""POST /datasets: clean and paired zips, and the attacks a zip can carry."""

import io
import zipfile

import pytest
from fastapi.testclient import TestClient

from app.main import create_app

from .conftest import AUTH, make_settings, png_bytes, rgb, wait_for


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
