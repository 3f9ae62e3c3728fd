"""Messages that leave the server carry no server path."""

from app.core.messages import without_paths


def test_absolute_paths_become_their_last_component():
    text = "model 'x' cannot be loaded: /tmp/pytest-1/data/models/m-1.safetensors is not a safetensors file"
    assert without_paths(text) == "model 'x' cannot be loaded: m-1.safetensors is not a safetensors file"
    assert without_paths("[Errno 36] File name too long: '/srv/n2n/datasets/x/aaaa'") == \
        "[Errno 36] File name too long: 'aaaa'"
    assert without_paths(r"cannot open C:\Users\n2n\weights\a.safetensors") == "cannot open a.safetensors"


def test_text_without_absolute_paths_is_unchanged():
    for text in ("a/b relative stays", "1/2 of the images", "see http://x/y", "sigma 25/255", "/healthz"):
        assert without_paths(text) == text
