"""What the web page needs from the server: /limits, /preview (the "before" of formats a browser cannot show),
/favicon.ico, and /docs served without any CDN."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import tifffile
from PIL import Image

from n2n_core.data import images

from tests.helpers import make_settings, png_bytes, rgb


def test_limits_name_the_upload_limits(client, settings):
    body = client.get("/limits").json()
    assert body["max_upload_bytes"] == settings.max_upload_bytes
    assert body["max_pixels"] == settings.max_pixels
    assert body["page_job_pixels"] == settings.page_job_pixels
    assert {"png", "jpeg", "tiff", "webp", "bmp", "heif", "avif", "dng", "cr2", "cr3", "nef", "arw", "raf", "orf",
            "rw2"} <= set(body["input_formats"])
    assert "image/heic" in body["input_media_types"]
    assert "image/tiff" in body["input_media_types"]
    assert "png" in body["output_formats"]


def test_limits_follow_the_settings(tmp_path, tiny_weights):
    from fastapi.testclient import TestClient

    from app.main import create_app

    s = make_settings(tmp_path / "d", tiny_weights, max_pixels=1234, page_job_pixels=99)
    with TestClient(create_app(s)) as c:
        body = c.get("/limits").json()
    assert (body["max_pixels"], body["page_job_pixels"]) == (1234, 99)


def _tiff(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("arr, kw", [
    (rgb(40, 56), {}),
    ((np.random.default_rng(1).random((40, 56, 3)) * 65535).astype(np.uint16), {}),
    ((np.random.default_rng(2).random((40, 56, 2)) * 65535).astype(np.uint16),
     {"photometric": "minisblack", "extrasamples": [2]}),
])
def test_preview_of_a_tiff_is_an_8bit_png_of_the_same_pixels(client, arr, kw):
    data = _tiff(arr, **kw)
    r = client.post("/preview", files={"file": ("photo.tif", data, "image/tiff")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(r.content))
    assert im.size == (56, 40)
    assert im.mode in ("RGB", "RGBA", "L", "LA")
    expected = images.decode(data)
    got = np.asarray(im, dtype=np.float64) / 255.0
    want = expected.pixels.permute(1, 2, 0).numpy()
    if got.ndim == 3 and got.shape[2] in (2, 4):
        got = got[:, :, :-1]
    got = got.reshape(want.shape)
    assert np.abs(got - want).max() <= 1 / 255 + 1e-6


def test_preview_applies_exif_orientation_like_denoise(client):
    im = Image.fromarray(rgb(30, 50))
    exif = Image.Exif()
    exif[274] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    r = client.post("/preview", content=buf.getvalue(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).size == (30, 50)


@pytest.mark.parametrize("body, status", [(b"", 400), (b"not an image at all", 400)])
def test_preview_refusals_are_clear_and_name_no_server_path(client, settings, body, status):
    r = client.post("/preview", files={"file": ("x.png", body, "image/png")})
    assert r.status_code == status
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail
    assert str(settings.data_dir) not in detail and not re.search(r"(?<![\w.])/(?:[\w.-]+/){2,}", detail)


def test_preview_refuses_too_many_pixels(tmp_path, tiny_weights):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(make_settings(tmp_path / "d", tiny_weights, max_pixels=100))) as c:
        r = c.post("/preview", files={"file": ("x.png", png_bytes(rgb(20, 20)), "image/png")})
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_favicon_is_served(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(r.content)).size[0] >= 16


def test_docs_use_no_cdn(client):
    r = client.get("/docs")
    html = r.text
    urls = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'"\s)>]+)""", html)
    assert urls
    assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
    assert "cdn.jsdelivr" not in html and "fastapi.tiangolo.com" not in html
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = client.get(f"/static-docs/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000, asset
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    r = client.get("/redoc", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/docs"
