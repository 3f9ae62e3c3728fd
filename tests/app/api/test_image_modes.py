"""POST /denoise keeps 16-bit grey + alpha as 16-bit grey + alpha (OpenCV reads it as BGRA)."""

import cv2
import numpy as np

from tests.core.data.test_images import png_by_hand


def test_16_bit_grey_alpha_png_comes_back_as_16_bit_grey_alpha(client):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 65536, (24, 32, 2)).astype(np.uint16)
    r = client.post("/denoise", content=png_by_hand(a), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    out = r.content
    assert out[12:16] == b"IHDR" and (out[24], out[25]) == (16, 4)  # 16 bits, colour type 4: grey + alpha
    bgra = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgra.dtype == np.uint16 and bgra.shape == (24, 32, 4)
    assert np.array_equal(bgra[:, :, 3], a[:, :, 1])  # alpha untouched
    assert np.array_equal(bgra[:, :, 0], bgra[:, :, 1]) and np.array_equal(bgra[:, :, 1], bgra[:, :, 2])
