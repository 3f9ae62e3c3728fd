"""Every answer of the page and the API carries the security headers (CSP, nosniff, no framing, no referrer);
/docs keeps its own policy; 422 bodies echo at most 100 characters of an invalid value."""

import re
from html.parser import HTMLParser
from pathlib import Path

from fastapi.testclient import TestClient

from app.api.errors import ECHO_LIMIT, ELLIPSIS
from app.main import STATIC, create_app
from app.api.security_headers import CSP

from tests.helpers import AUTH, make_settings, png_bytes, rgb

SAME = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def _check(r, csp: str | None = CSP) -> None:
    for name, value in SAME.items():
        assert r.headers.get(name) == value, (r.request.url, name, r.headers.get(name))
    policy = r.headers.get("content-security-policy")
    assert policy and "frame-ancestors 'none'" in policy and "default-src 'self'" in policy, r.request.url
    assert len(r.headers.get_list("content-security-policy")) == 1, "one policy, never two"
    if csp is not None:
        assert policy == csp, r.request.url


def test_every_answer_carries_the_security_headers(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, max_upload_bytes=1000)
    with TestClient(create_app(s)) as c:
        for r in (c.get("/"), c.get("/static/app.js"), c.get("/readyz"), c.get("/models"), c.get("/metrics"),
                  c.get("/openapi.json"), c.get(f"/denoise/jobs/{'A' * 22}"), c.get("/no-such-page"),
                  c.get("/denoise/jobs?strength=x"), c.post("/denoise", content=b"x" * 5000),
                  c.post("/denoise?strength=nope", content=png_bytes(rgb(8, 8)), headers={"content-type": "image/png"}),
                  c.post("/train", json={}), c.post("/denoise", content=png_bytes(rgb(8, 8)),
                                                     headers={"content-type": "image/png"})):
            _check(r)
        docs = c.get("/docs")
        assert docs.status_code == 200
        _check(docs, csp=None)  # its own policy: Swagger UI's inline script
        assert "'unsafe-inline'" in docs.headers["content-security-policy"]
        assert "'unsafe-inline'" not in CSP


class _Inline(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block in the page's markup."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and not a.get("src"):
            self.blocked.append("inline <script>")
        if tag == "style":
            self.blocked.append("<style>")
        self.blocked += [f"{tag} {k}=" for k in a if k == "style" or k.startswith("on")]
        for k in ("src", "href"):
            if a.get(k) and re.match(r"(https?:)?//", a[k]):
                self.blocked.append(f"{tag} {k}={a[k]}")


def test_the_page_needs_nothing_the_policy_forbids():
    parser = _Inline()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.blocked == []
    js = (STATIC / "app.js").read_text()
    for needs_unsafe in ("eval(", "new Function", 'setAttribute("style"', "cssText"):  # styles go via the CSSOM
        assert needs_unsafe not in js, needs_unsafe
    assert "blob:" in CSP and "img-src" in CSP  # URL.createObjectURL pictures


def test_nginx_passes_the_headers_through():
    conf = (Path(__file__).parents[3] / "deploy" / "nginx" / "n2n.conf").read_text()
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
        assert not re.search(rf"proxy_hide_header\s+{name}", conf, re.I), name
        assert not re.search(rf"add_header\s+{name}", conf, re.I), f"{name} twice: nginx and the app"


def test_422_bodies_echo_at_most_100_characters_of_a_value(client):
    long = "x" * 5000
    for r in (client.post(f"/denoise/jobs?strength={long}", content=png_bytes(rgb(8, 8)),
                          headers={"content-type": "image/png"}),
              client.post("/train", json={"dataset": "builtin", "learning_rate": long}, headers=AUTH),
              client.post("/train", json={"dataset": "builtin", "noise": {"kind": long}}, headers=AUTH),
              client.post("/train", json=[long] * 10, headers=AUTH)):
        assert r.status_code == 422, r.text
        assert long[:ECHO_LIMIT + 1] not in r.text
        inputs = [e["input"] for e in r.json()["detail"] if "input" in e]
        assert inputs, r.text
        for value in inputs:
            if isinstance(value, str) and "x" in value:
                assert len(value) <= ECHO_LIMIT + len(ELLIPSIS) and value.endswith(ELLIPSIS)
        assert all(len(e["msg"]) <= 3 * ECHO_LIMIT + len(ELLIPSIS) for e in r.json()["detail"])
    short = client.post("/denoise/jobs?strength=abc", content=png_bytes(rgb(8, 8)),
                        headers={"content-type": "image/png"})
    assert [e["input"] for e in short.json()["detail"]] == ["abc"]  # short values are echoed whole
