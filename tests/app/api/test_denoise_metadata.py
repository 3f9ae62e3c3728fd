"""POST /denoise and /denoise/jobs: EXIF and ICC kept (or EXIF stripped), quality, TIFF, 16 bits."""

import io
import re

import cv2
import numpy as np
import pytest
import tifffile
from fastapi.testclient import TestClient
from PIL import Image, ImageCms

from app.services.imaging import check_output_size
from app.main import create_app

from tests.helpers import make_settings, png_bytes, rgb
from tests.app.jobs.test_denoise_jobs import _finished

JPEG = {"content-type": "image/jpeg"}
MAKE, EXIF_IFD, GPS_IFD, DATE_ORIGINAL = 0x010F, 0x8769, 0x8825, 0x9003
GPS = {1: "N", 2: (52.0, 31.0, 12.0)}
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "tiff": "image/tiff"}


def _camera_jpeg(h: int = 40, w: int = 56) -> bytes:
    """A photo as a camera writes it: EXIF with make, date taken and GPS, an sRGB profile, turned a quarter."""
    exif = Image.Exif()
    exif[MAKE], exif[0x0112] = "Canon", 6
    exif.get_ifd(EXIF_IFD)[DATE_ORIGINAL] = "2024:05:01 10:00:00"
    exif.get_ifd(GPS_IFD).update(GPS)
    return png_bytes(rgb(h, w), "JPEG", exif=exif, icc_profile=SRGB, quality=95)


def _found(content: bytes) -> dict:
    with Image.open(io.BytesIO(content)) as im:
        exif = im.getexif()
        return {"make": exif.get(MAKE), "date": exif.get_ifd(EXIF_IFD).get(DATE_ORIGINAL),
                "gps": dict(exif.get_ifd(GPS_IFD)), "orientation": exif.get(0x0112),
                "icc": im.info.get("icc_profile"), "size": im.size}


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff"])
def test_metadata_is_kept_unless_stripped(client, fmt):
    r = client.post(f"/denoise?format={fmt}", content=_camera_jpeg(), headers=JPEG)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MEDIA[fmt]
    found = _found(r.content)
    assert (found["make"], found["date"], found["gps"], found["icc"]) == ("Canon", "2024:05:01 10:00:00", GPS, SRGB)
    assert found["orientation"] in (None, 1) and found["size"] == (40, 56)  # upright, as before
    stripped = client.post(f"/denoise?format={fmt}&strip_metadata=true", content=_camera_jpeg(), headers=JPEG)
    assert stripped.status_code == 200
    found = _found(stripped.content)
    assert (found["make"], found["date"], found["gps"]) == (None, None, {})
    assert found["icc"] == SRGB  # the colour profile is no private data: always kept


def test_quality_is_checked_and_used(client):
    data = png_bytes(rgb(64, 64))
    for path in ("/denoise", "/denoise/jobs"):
        for bad in ("0", "101", "-1", "high", "95.5"):
            r = client.post(f"{path}?format=jpeg&quality={bad}", content=data, headers={"content-type": "image/png"})
            assert r.status_code == 422 and r.json()["detail"], (path, bad)
    sizes = {}
    for q in (20, 95):
        r = client.post(f"/denoise?format=jpeg&quality={q}", content=data, headers={"content-type": "image/png"})
        assert r.status_code == 200
        sizes[q] = len(r.content)
    assert sizes[20] < sizes[95]
    default = client.post("/denoise?format=jpeg", content=data, headers={"content-type": "image/png"})
    assert len(default.content) == sizes[95]


def test_tiff_output_and_16_bits(client):
    png = {"content-type": "image/png"}
    r = client.post("/denoise?format=tiff", content=png_bytes(rgb()), headers=png)
    assert r.status_code == 200 and r.headers["content-type"] == "image/tiff"
    assert r.headers["content-disposition"] == 'inline; filename="denoised.tiff"'
    assert tifffile.imread(io.BytesIO(r.content)).dtype == np.uint8  # an 8-bit input stays 8-bit by default
    deep = client.post("/denoise?format=tiff&bits=16", content=png_bytes(rgb()), headers=png)
    assert deep.status_code == 200
    assert tifffile.imread(io.BytesIO(deep.content)).shape == (48, 64, 3)
    assert tifffile.imread(io.BytesIO(deep.content)).dtype == np.uint16
    ok, buf = cv2.imencode(".png", np.random.default_rng(3).integers(0, 65536, (24, 32, 3), dtype=np.uint16))
    r = client.post("/denoise?format=tiff", content=buf.tobytes(), headers=png)
    assert tifffile.imread(io.BytesIO(r.content)).dtype == np.uint16  # a 16-bit input stays 16-bit
    r = client.post("/denoise?format=png&bits=8", content=buf.tobytes(), headers=png)
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    for query in ("format=jpeg&bits=16", "format=webp&bits=16", "bits=12", "bits=sixteen", "format=tif"):
        for path in ("/denoise", "/denoise/jobs"):
            r = client.post(f"{path}?{query}", content=png_bytes(rgb()), headers=png)
            assert r.status_code == 422 and r.json()["detail"], (path, query)
    r = client.post("/denoise?format=jpeg&bits=16", content=png_bytes(rgb()), headers=png)
    assert "bits=16" in r.json()["detail"] and "png or tiff" in r.json()["detail"]


def test_a_job_keeps_or_strips_metadata_like_denoise(tmp_path, tiny_weights):
    with TestClient(create_app(make_settings(tmp_path / "d", tiny_weights))) as c:
        for query in ("?format=tiff&bits=16", "?format=jpeg&quality=70&strip_metadata=true", ""):
            r = c.post(f"/denoise/jobs{query}", content=_camera_jpeg(), headers=JPEG)
            assert r.status_code == 202, r.text
            assert _finished(c, r.json()["id"])["status"] == "succeeded"
            result = c.get(f"/denoise/jobs/{r.json()['id']}/result")
            direct = c.post(f"/denoise{query}", content=_camera_jpeg(), headers=JPEG)
            assert result.status_code == direct.status_code == 200
            assert result.content == direct.content and result.headers["content-type"] == direct.headers["content-type"]
            found = _found(result.content)
            assert found["icc"] == SRGB
            assert found["make"] == (None if "strip" in query else "Canon"), query


def test_the_api_documents_the_new_parameters_and_tiff(client):
    spec = client.get("/openapi.json").json()
    for path in ("/denoise", "/denoise/jobs"):
        op = spec["paths"][path]["post"]
        names = {p["name"]: p for p in op["parameters"]}
        assert {"format", "model", "strength", "quality", "bits", "strip_metadata"} <= set(names)
        quality = next(s for s in names["quality"]["schema"].get("anyOf", [names["quality"]["schema"]])
                       if s.get("type") == "integer")
        assert quality["minimum"] == 1 and quality["maximum"] == 100
        assert "input's quality" in names["quality"]["description"]  # no fixed default: a JPEG keeps its own
        assert "own format" in names["format"]["description"]
        assert "tiff" in names["format"]["schema"]["enum"]
    assert "image/tiff" in spec["paths"]["/denoise"]["post"]["responses"]["200"]["content"]
    assert "image/tiff" in spec["paths"]["/denoise/jobs/{job_id}/result"]["get"]["responses"]["200"]["content"]


def test_tiff_has_no_largest_side():
    check_output_size("tiff", 70_000, 20)  # PNG and TIFF hold any width
    check_output_size("png", 20, 70_000)


def test_the_answer_keeps_the_photographers_format_and_quality_by_default(client):
    from n2n_core.data import images

    jpeg80 = png_bytes(rgb(40, 56), "JPEG", quality=80)
    r = client.post("/denoise", content=jpeg80, headers=JPEG)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert images.decode(r.content).quality == 80  # the input's quality, read off its quantisation tables
    assert r.headers["content-disposition"] == 'inline; filename="denoised.jpeg"'  # a raw body has no name
    assert images.decode(client.post("/denoise?quality=60", content=jpeg80, headers=JPEG).content).quality == 60
    for fmt, media in (("TIFF", "image/tiff"), ("PNG", "image/png"), ("BMP", "image/png")):
        r = client.post("/denoise", content=png_bytes(rgb(), fmt), headers={"content-type": "image/" + fmt.lower()})
        assert r.status_code == 200 and r.headers["content-type"] == media, fmt
    job = client.post("/denoise/jobs", content=jpeg80, headers=JPEG)  # jobs answer in the same format
    assert job.status_code == 202, job.text
    done = _finished(client, job.json()["id"])
    result = client.get(f"/denoise/jobs/{done['id']}/result")
    assert result.headers["content-type"] == "image/jpeg" and images.decode(result.content).quality == 80


@pytest.mark.parametrize("sent, named", [
    ("IMG_1000.jpg", "IMG_1000-denoised.jpg"),
    ("../../etc/IMG 1001.JPG", "IMG_1001-denoised.JPG"),
    ("C:\\Users\\me\\shot.jpeg", "shot-denoised.jpeg"),
    ("a b;c=d.jpg", "a_b_c_d-denoised.jpg"),
    ('x"y\r\nz.jpg', None),  # quotes and line breaks never reach the header
    ("photo.png", "photo-denoised.jpeg"),  # a JPEG sent under another name: named by what it is
    ("...", "denoised.jpeg"),
])
def test_downloads_are_named_after_the_uploaded_file(client, sent, named):
    r = client.post("/denoise", files={"file": (sent, png_bytes(rgb(24, 24), "JPEG"), "image/jpeg")})
    assert r.status_code == 200, r.text
    disposition = r.headers["content-disposition"]
    assert re.fullmatch(r'inline; filename="[A-Za-z0-9._-]+"', disposition), disposition
    assert named is None or disposition == f'inline; filename="{named}"'


def test_bits_16_without_a_format_answers_a_16_bit_png_for_a_jpeg(client):
    for path in ("/denoise", "/denoise/jobs"):
        r = client.post(f"{path}?bits=16", content=png_bytes(rgb(24, 32), "JPEG"), headers=JPEG)
        if path == "/denoise/jobs":
            assert r.status_code == 202, r.text
            r = client.get(f"/denoise/jobs/{_finished(client, r.json()['id'])['id']}/result")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", (path, r.text)
        assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED).dtype == np.uint16
