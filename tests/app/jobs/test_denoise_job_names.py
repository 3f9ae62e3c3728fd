"""POST /denoise/jobs names its result download after the uploaded file, as POST /denoise does."""

import re

from fastapi.testclient import TestClient

from app.main import create_app

from tests.helpers import make_settings, png_bytes, poll_until, rgb

SAFE = re.compile(r'inline; filename="([A-Za-z0-9._-]+)"')


def _download_name(c: TestClient, files=None, **kw) -> str:
    r = c.post("/denoise/jobs", files=files, **kw)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    poll_until(lambda: c.get(f"/denoise/jobs/{job_id}").json()["status"] in ("succeeded", "failed"),
               f"job {job_id} ended")
    result = c.get(f"/denoise/jobs/{job_id}/result")
    assert result.status_code == 200, result.text
    disposition = result.headers["content-disposition"]
    m = SAFE.fullmatch(disposition)
    assert m, f"unsafe Content-Disposition: {disposition!r}"
    return m.group(1)


def test_a_job_result_is_named_after_the_upload(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights)
    jpeg = png_bytes(rgb(40, 56), "JPEG", quality=90)
    png = png_bytes(rgb(40, 56, seed=1))
    with TestClient(create_app(s)) as c:
        assert _download_name(c, {"file": ("IMG_1000.jpg", jpeg, "image/jpeg")}) == "IMG_1000-denoised.jpg"
        # the same name as the synchronous POST /denoise gives
        direct = c.post("/denoise", files={"file": ("IMG_1000.jpg", jpeg, "image/jpeg")})
        assert 'filename="IMG_1000-denoised.jpg"' in direct.headers["content-disposition"]
        # another output format: that format's extension
        assert _download_name(c, {"file": ("IMG_1000.jpg", jpeg, "image/jpeg")},
                              params={"format": "png"}) == "IMG_1000-denoised.png"
        # no name (a raw body): the fallback
        assert _download_name(c, content=png, headers={"content-type": "image/png"}) == "denoised.png"


def test_a_hostile_upload_name_gives_a_safe_download_name(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights)
    png = png_bytes(rgb(40, 56))
    with TestClient(create_app(s)) as c:
        hostile = '../../etc/pa ss"wd.png'
        name = _download_name(c, {"file": (hostile, png, "image/png")})
        assert "/" not in name and "\\" not in name and '"' not in name and " " not in name and ".." not in name
        assert name.endswith("-denoised.png") and "etc" not in name, name
        windows = _download_name(c, {"file": ("C:\\Users\\me\\secret\\IMG_7.png", png, "image/png")})
        assert windows == "IMG_7-denoised.png"
        long = _download_name(c, {"file": ("x" * 500 + ".png", png, "image/png")})
        assert len(long) <= 130 and long.endswith("-denoised.png")
        for empty in ("../", "...", "a/b/"):
            assert _download_name(c, {"file": (empty, png, "image/png")}) == "denoised.png", empty
        # the job JSON never shows a path either
        r = c.post("/denoise/jobs", files={"file": (hostile, png, "image/png")})
        assert "etc/" not in c.get(f"/denoise/jobs/{r.json()['id']}").text


def test_a_job_without_a_stored_name_keeps_the_fallback(tmp_path, tiny_weights):
    """A job made before names were kept (download_name None) is still downloaded as denoised.<format>."""
    s = make_settings(tmp_path / "d", tiny_weights)
    png = png_bytes(rgb(40, 56))
    with TestClient(create_app(s)) as c:
        r = c.post("/denoise/jobs", files={"file": ("IMG_2.png", png, "image/png")})
        job_id = r.json()["id"]
        poll_until(lambda: c.get(f"/denoise/jobs/{job_id}").json()["status"] == "succeeded", "job succeeded")
        c.app.state.denoise_jobs.get(job_id).download_name = None
        assert 'filename="denoised.png"' in c.get(f"/denoise/jobs/{job_id}/result").headers["content-disposition"]
