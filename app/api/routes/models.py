"""Registered models: list them, download one as ONNX, switch the active one, delete trained ones."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException, Response

from app.api.deps import Authorized, RegistryDep
from app.api.errors import model_refusals
from app.api.schemas import Message, ModelInfo, ModelList

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelList)
def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(active=registry.active_id, models=[ModelInfo(**m) for m in registry.describe()])


@router.get("/{model_id}", response_model=ModelInfo, responses={404: {"model": Message}})
def get_model(model_id: str, registry: RegistryDep) -> ModelInfo:
    for m in registry.describe():
        if m["id"] == model_id:
            return ModelInfo(**m)
    raise HTTPException(404, f"unknown model {model_id!r}")


@router.post("/{model_id}/activate", response_model=ModelInfo, dependencies=[Authorized],
             responses={404: {"model": Message}, 401: {"model": Message}, 409: {"model": Message}})
def activate(model_id: str, registry: RegistryDep) -> ModelInfo:
    """Load the model (off the event loop, like every route here that touches the registry), then switch."""
    with model_refusals(model_id):
        registry.activate(model_id)
    return get_model(model_id, registry)


@router.delete("/{model_id}", status_code=204, response_class=Response, dependencies=[Authorized],
               responses={204: {"description": "deleted: its row, weights and files are gone"},
                          401: {"model": Message}, 404: {"model": Message},
                          409: {"model": Message, "description": "a shipped model, the active model, or the "
                                "init_model of a queued or running job: the message says which"}})
def delete(model_id: str, registry: RegistryDep) -> Response:
    """Delete a trained model and its files. From then on no replica lists or serves it (404)."""
    with model_refusals(model_id):
        registry.delete(model_id)
    return Response(status_code=204)


ONNX_MEDIA_TYPE = "application/octet-stream"
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@router.get("/{model_id}/onnx", response_class=Response,
            responses={200: {"content": {ONNX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the model as an ONNX file (attachment <id>.onnx)"},
                       404: {"model": Message}, 409: {"model": Message}})
def download_onnx(model_id: str, registry: RegistryDep) -> Response:
    """Download the model as ONNX (opset 17, float32 NCHW, any batch, height and width; its card in the metadata):
    the whole-image graph of ``n2n_core.inference.export``, which pads, crops and clamps as /denoise does."""
    from n2n_core.inference.export import to_onnx_bytes  # imports onnx: paid by the first download, not by every start

    with model_refusals(model_id):
        _, model = registry.get(model_id)
        card = registry.card(model_id)
    try:
        data = to_onnx_bytes(model, metadata=card)
    except ValueError as e:
        raise HTTPException(409, f"model {model_id!r} cannot be exported to ONNX: {e}") from None
    filename = UNSAFE_FILENAME.sub("_", model_id) + ".onnx"
    return Response(data, media_type=ONNX_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
