"""Registered models: list them, switch the active one."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ..deps import Authorized, RegistryDep
from ..registry import BrokenModel, UnknownModel
from ..schemas import Message, ModelInfo, ModelList

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
    try:
        registry.activate(model_id)
    except UnknownModel:
        raise HTTPException(404, f"unknown model {model_id!r}") from None
    except BrokenModel as e:
        raise HTTPException(409, str(e)) from None
    return get_model(model_id, registry)
