"""Photographers' files through the service: HEIC/AVIF in and out, camera RAW in (POST /denoise, /denoise/jobs,
/preview), files of several frames refused with their count; every refusal a 4xx naming the problem."""

import io

import cv2
import numpy as np
import pytest
import tifffile
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from n2n_core.data import raw

from tests.photo_files import MAKE, MODEL, ORIENTATION, SRGB, camera_exif, dng, frames, heic
from tests.helpers import make_settings, png_bytes, poll_until, rgb

OCTET = {"content-type": "application/octet-stream"}


def _scene(h: int = 40, w: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)


def test_a_heic_comes_back_as_heic_upright_with_its_metadata(client):
    data = heic(_scene(), exif=camera_exif("Apple", "iPhone 15 Pro", orientation=6), icc=SRGB)
    r = client.post("/denoise?format=heic", files={"file": ("IMG_0001.HEIC", data, "image/heic")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/heic"
    assert 'filename="IMG_0001-denoised.HEIC"' in r.headers["content-disposition"]
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.format == "HEIF" and im.size == (40, 60) and im.info["bit_depth"] == 8
        assert (im.getexif()[MODEL], im.getexif().get(ORIENTATION, 1), im.info["icc_profile"]) == \
            ("iPhone 15 Pro", 1, SRGB)
    same = client.post("/denoise", content=data, headers={"content-type": "image/heic"})  # auto: HEIC stays HEIC
    assert same.status_code == 200 and same.headers["content-type"] == "image/heic"
    assert Image.open(io.BytesIO(same.content)).size == (40, 60)
    png = client.post("/denoise?format=png", content=data, headers={"content-type": "image/heic"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_a_10_bit_heic_stays_deep(client):
    data = heic((np.random.default_rng(0).integers(0, 1024, (24, 32, 3)) << 6).astype(np.uint16))
    r = client.post("/denoise?format=heic", content=data, headers={"content-type": "image/heic"})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).info["bit_depth"] == 10
    r = client.post("/denoise?format=png", content=data, headers={"content-type": "image/heic"})
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    r = client.post("/denoise?format=heic&bits=16", content=data, headers={"content-type": "image/heic"})
    assert r.status_code == 422 and "10 bits" in r.json()["detail"]


def test_avif_in_and_out(client):
    buf = io.BytesIO()
    Image.fromarray(_scene()).save(buf, format="AVIF", exif=camera_exif())
    r = client.post("/denoise?format=avif&quality=80", content=buf.getvalue(), headers={"content-type": "image/avif"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/avif"
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.format == "AVIF" and im.size == (60, 40) and im.getexif()[MAKE] == "N2N"


def test_a_dng_is_denoised_by_the_camera_noise_model_into_a_16_bit_tiff(client):
    data = dng(orientation=6, exif=camera_exif("Canon", "EOS R5"), noise=20)
    r = client.post("/denoise", files={"file": ("IMG_0001.DNG", data, "image/x-adobe-dng")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/tiff" and r.headers["x-model-id"] == raw.CAMERA_NOISE_MODEL
    assert 'filename="IMG_0001-denoised.tiff"' in r.headers["content-disposition"]
    out = tifffile.imread(io.BytesIO(r.content))
    assert out.dtype == np.uint16 and out.shape == (96, 64, 3)  # upright, 16 bits
    with Image.open(io.BytesIO(r.content)) as im:
        assert (im.getexif()[MAKE], im.getexif()[MODEL], im.getexif()[ORIENTATION]) == ("Canon", "EOS R5", 1)
        assert im.info["icc_profile"] == raw.srgb_profile()
    assert not set(range(50706, 50800)) & set(Image.open(io.BytesIO(r.content)).getexif())


@pytest.mark.parametrize("query,media,deep", [("format=png", "image/png", True), ("format=jpeg", "image/jpeg", False),
                                              ("format=png&bits=8", "image/png", False)])
def test_a_raw_answers_png_or_jpeg_on_request(client, query, media, deep):
    r = client.post(f"/denoise?{query}", content=dng(exif=camera_exif()), headers=OCTET)
    assert r.status_code == 200 and r.headers["content-type"] == media
    a = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert a.shape == (64, 96, 3) and a.dtype == (np.uint16 if deep else np.uint8)
    assert Image.open(io.BytesIO(r.content)).getexif()[MAKE] == "N2N"


def test_a_named_model_is_used_for_a_raw(client):
    r = client.post("/denoise?model=tiny", content=dng(), headers=OCTET)
    assert r.status_code == 200 and r.headers["x-model-id"] == "tiny"


def test_a_raw_goes_through_jobs_and_preview(client):
    data = dng(orientation=6)
    r = client.post("/denoise/jobs", files={"file": ("x.dng", data, "application/octet-stream")})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = poll_until(lambda: (j := client.get(f"/denoise/jobs/{job_id}").json())["status"] in ("succeeded", "failed")
                     and j, "the RAW job ended")
    assert job["status"] == "succeeded", job
    result = client.get(f"/denoise/jobs/{job_id}/result")
    assert result.headers["content-type"] == "image/tiff" and result.headers["x-model-id"] == raw.CAMERA_NOISE_MODEL
    assert tifffile.imread(io.BytesIO(result.content)).shape == (96, 64, 3)
    preview = client.post("/preview", content=data, headers=OCTET)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(preview.content)) as im:
        assert im.size == (64, 96) and im.mode == "RGB"


def test_raw_size_limits_apply_to_the_developed_pixels_before_demosaicing(tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setattr(raw, "develop", lambda *a: pytest.fail("demosaiced before the size check"))
    with TestClient(create_app(make_settings(tmp_path / "d", tiny_weights, max_pixels=5000))) as c:
        for path in ("/denoise", "/denoise/jobs", "/preview"):
            r = c.post(path, content=dng(), headers=OCTET)  # 96 x 64 = 6144 developed pixels
            assert r.status_code == 413 and "96x64" in r.json()["detail"], (path, r.text)


@pytest.mark.parametrize("data,fmt", [(b"FUJIFILMCCD-RAW 0201FF383501" + bytes(300), "RAF"),
                                      (b"IIRO\x08\0\0\0" + bytes(300), "ORF")])
def test_a_raw_libraw_cannot_read_is_415_naming_the_format(client, data, fmt):
    for path in ("/denoise", "/denoise/jobs", "/preview"):
        r = client.post(path, files={"file": (f"x.{fmt.lower()}", data, "application/octet-stream")})
        assert r.status_code == 415, (path, r.text)
        detail = r.json()["detail"]
        assert f"{fmt} camera RAW" in detail and "LibRaw" in detail and "/tmp" not in detail


def test_a_damaged_raw_is_a_4xx_never_a_5xx(client):
    r = client.post("/denoise", content=dng()[:3000], headers=OCTET)
    assert r.status_code == 400 and "DNG" in r.json()["detail"]
    r = client.post("/denoise/jobs", content=dng()[:3000], headers=OCTET)
    job = poll_until(lambda: (j := client.get(f"/denoise/jobs/{r.json()['id']}").json())["status"] in
                     ("succeeded", "failed") and j, "the damaged RAW's job ended")
    assert job["status"] == "failed" and "DNG" in job["error"]


@pytest.mark.parametrize("fmt", ["WEBP", "PNG", "GIF", "TIFF"])
def test_a_file_of_several_frames_is_422_saying_how_many(client, fmt):
    data = frames(fmt, 4)
    for path in ("/denoise", "/denoise/jobs", "/preview"):
        r = client.post(path, content=data, headers=OCTET)
        assert r.status_code == 422, (path, r.text)
        assert "the file has 4 frames" in r.json()["detail"]


def test_the_api_documents_the_new_formats(client):
    spec = client.get("/openapi.json").json()
    for path in ("/denoise", "/denoise/jobs"):
        op = spec["paths"][path]["post"]
        schema = {p["name"]: p for p in op["parameters"]}["format"]["schema"]
        assert {"heic", "avif", "auto"} <= set(schema["enum"]) and schema["default"] == "auto"
        assert "image/heic" in op["requestBody"]["content"]
    assert "image/heic" in spec["paths"]["/denoise"]["post"]["responses"]["200"]["content"]
    r = client.post("/denoise?format=auto", content=png_bytes(rgb()), headers={"content-type": "image/png"})
    assert r.headers["content-type"] == "image/png"


def test_a_dataset_refuses_a_raw_or_an_animation_by_name(client):
    import zipfile

    from tests.helpers import AUTH

    # a .dng member is skipped as any non-image is; a RAW under an image's name is refused, as is an animation
    for name, data, why in (("shot.tif", dng(), "camera RAW (DNG)"), ("anim.png", frames("PNG", 2), "2 frames")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("good.png", png_bytes(rgb()))
            z.writestr(name, data)
        r = client.post("/datasets", content=buf.getvalue(), headers={**AUTH, "content-type": "application/zip"})
        assert r.status_code == 400 and name in r.json()["detail"] and why in r.json()["detail"], r.text
