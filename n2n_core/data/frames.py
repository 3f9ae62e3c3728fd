"""How many pictures a file holds: n2n denoises one photo, and a file of several is refused, never cut.

Animated PNG (APNG), GIF and WebP, multi-page TIFF, HEIF and AVIF image sequences or collections count
their frames (pages, top-level images). A TIFF's reduced-resolution pages (thumbnails and pyramid levels,
NewSubfileType bit 0) and transparency masks (bit 2) are not frames: they belong to the page they shrink
or mask. A JPEG's MPO previews are not frames either (the first image is the photo). Counting reads
headers only.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from n2n_core.data.image_errors import MultiFrameImage

#: formats whose files may hold several frames, with what users call such a file
SEQUENCES = {"PNG": "an animated PNG", "GIF": "an animated GIF", "WEBP": "an animated WebP",
             "TIFF": "a multi-page TIFF", "HEIF": "a HEIF image collection", "AVIF": "an animated AVIF"}
NEW_SUBFILE_TYPE = 254
NOT_A_FRAME = 0b101  # NewSubfileType bits: reduced-resolution version (1), transparency mask (4)


def pillow_frames(im: Image.Image) -> int:
    """The frames of an image Pillow has opened (its position is left on the first frame)."""
    if im.format not in SEQUENCES:
        return 1
    count = int(getattr(im, "n_frames", 1) or 1)
    if im.format != "TIFF" or count == 1:
        return count
    frames = 0
    try:
        for index in range(count):
            im.seek(index)
            frames += not int(im.tag_v2.get(NEW_SUBFILE_TYPE, 0)) & NOT_A_FRAME
    finally:
        im.seek(0)
    return max(frames, 1)


def tifffile_frames(tif: Any) -> int:
    """The frames of a TIFF opened with tifffile (one Pillow cannot open), thumbnails not counted."""
    pages = tif.pages
    if len(pages) == 1:
        return 1
    frames = 0
    for page in pages:
        tags = page.tags
        frames += not (int(tags[NEW_SUBFILE_TYPE].value) if NEW_SUBFILE_TYPE in tags else 0) & NOT_A_FRAME
    return max(frames, 1)


def check_single(frames: int, fmt: str) -> None:
    """MultiFrameImage saying how many frames the file has, when it has more than one."""
    if frames > 1:
        kind = SEQUENCES.get(fmt, f"a {fmt} file")
        raise MultiFrameImage(f"the file has {frames} frames ({kind}); n2n denoises one photo at a time: save "
                              "the frame you want as a file of its own", frames)
