"""Why image bytes are refused: one exception type per answer a caller gives (HTTP status, CLI line).

Every one is a ``ValueError``, so that code which only knows "bad input" (the CLI, the core's users) needs
nothing more. ``n2n_core.data.images`` re-exports them; the service maps them to 400, 413, 415 and 422.
"""

from __future__ import annotations


class ImageError(ValueError):
    """Bytes that are not a readable image of a supported format (the service answers 400)."""


class ImageTooLarge(ImageError):
    """An image whose header declares more pixels than anyone should decode (413)."""


class UnsupportedImage(ImageError):
    """A recognised file in a format, or a variant of one, that n2n does not read, e.g. a camera RAW that
    LibRaw cannot open (415). The message names the format."""


class MultiFrameImage(ImageError):
    """A file holding several pictures (an animated WebP, PNG or GIF, a multi-page TIFF, a HEIF collection)
    where one photo is expected (422). Never cut to its first frame without a word."""

    def __init__(self, message: str, frames: int) -> None:
        super().__init__(message)
        self.frames = frames
