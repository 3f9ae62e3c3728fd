"""Noise given as a spec string (``POST /train``'s ``"noise": "gaussian:0-50+poisson-gaussian:0.04,25"``):
read by the core's parser, the one ``n2n train --noise`` uses, so the API and the CLI accept the same
specs with the same meaning. The structured form it becomes is then checked by the request's bounds.
"""

from __future__ import annotations

from typing import Any

from n2n_core.data.noise import noise_to_dict, parse_noise

SPEC_MAX = 200  # characters of a spec string
SPEC_HELP = ("gaussian:SIGMA | gaussian:LO-HI | poisson:LAM | poisson-gaussian:GAIN,READ | impulse:P | "
             "bernoulli:P | several of them joined by '+' (a mixture: each image draws one)")


def noise_dict_of_spec(spec: str) -> dict[str, Any]:
    """The structured noise (``{"kind": ...}``, a mixture as ``{"kind": "mixture", "components": [...]}``)
    of a spec string; ValueError with a message that names the spec and the accepted forms."""
    if not spec.strip():
        raise ValueError(f"noise spec is empty; use {SPEC_HELP}")
    try:
        return noise_to_dict(parse_noise(spec))
    except ValueError as e:
        message = str(e)
        if message.startswith(f"bad noise spec {spec!r}"):
            raise ValueError(message) from None
        raise ValueError(f"bad noise spec {spec!r}: {message}") from None
    except (TypeError, OverflowError):
        raise ValueError(f"bad noise spec {spec!r}; use {SPEC_HELP}") from None
