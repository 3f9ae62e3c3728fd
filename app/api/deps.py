"""FastAPI dependencies: settings, services held by the app, and the bearer-token guard."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.config import Settings
from app.jobs.denoise import DenoiseJobs
from app.services.denoiser import DenoiseQueue
from app.core.metrics import Metrics
from app.services.registry import ModelRegistry
from app.store import DatasetRows, JobStore

bearer = HTTPBearer(auto_error=False, description="N2N_API_TOKEN")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_datasets(request: Request) -> DatasetRows:
    return request.app.state.datasets


def get_queue(request: Request) -> DenoiseQueue:
    return request.app.state.queue


def get_denoise_jobs(request: Request) -> DenoiseJobs:
    return request.app.state.denoise_jobs


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer $N2N_API_TOKEN``."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if settings.api_token is None or not settings.api_token.get_secret_value():
        raise HTTPException(401, "training and model management are disabled: start the service with "
                                 "N2N_API_TOKEN set and send 'Authorization: Bearer <token>'", headers=challenge)
    if creds is None or not secrets.compare_digest(creds.credentials.encode(),
                                                   settings.api_token.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers=challenge)


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
StoreDep = Annotated[JobStore, Depends(get_store)]
DatasetsDep = Annotated[DatasetRows, Depends(get_datasets)]
QueueDep = Annotated[DenoiseQueue, Depends(get_queue)]
DenoiseJobsDep = Annotated[DenoiseJobs, Depends(get_denoise_jobs)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
Authorized = Depends(require_token)
