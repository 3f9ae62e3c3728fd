"""Service settings, from the environment (prefix ``N2N_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="N2N_", extra="ignore")

    data_dir: Path = Field(Path("n2n_data"), description="jobs database, uploaded datasets, trained weights")
    api_token: SecretStr | None = Field(None, description="bearer token for training and model management")
    max_upload_bytes: int = Field(25 * MiB, ge=1, description="largest request body for /denoise")
    max_pixels: int = Field(40_000_000, ge=1, description="largest image, in pixels")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weights: str | None = Field(None, description="model loaded at start: a path or a shipped name")
    queue_limit: int = Field(64, ge=1, description="denoise requests waiting before new ones get 503")
    tile: int = Field(512, ge=64, description="tile size for large images")
    max_dataset_bytes: int = Field(512 * MiB, ge=1, description="largest dataset zip upload")
    max_dataset_files: int = Field(5000, ge=1, description="most files in a dataset zip")
    max_dataset_uncompressed: int = Field(2048 * MiB, ge=1, description="largest total unpacked size")
    max_compression_ratio: float = Field(200.0, gt=1, description="zip members compressed more than this are bombs")
    cancel_grace_seconds: float = Field(5.0, gt=0, description="time a cancelled worker gets before it is killed")


@lru_cache
def get_settings() -> Settings:
    return Settings()
