"""Service settings, from the environment (prefix ``N2N_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


def default_data_dir() -> Path:
    """N2N_DATA_DIR when unset: the user's own data folder (platformdirs; Linux: $XDG_DATA_HOME/n2n or
    ~/.local/share/n2n), absolute, so that a service started from another folder finds the same store."""
    import platformdirs

    return Path(platformdirs.user_data_dir("n2n", appauthor=False)).absolute()


def old_default_data_dir_note(data_dir: Path) -> str | None:
    """When ``data_dir`` is the default and ./n2n_data (the default before issue 22) holds a store, a line
    saying how to keep using it; else None."""
    old = Path("n2n_data").absolute()
    if data_dir != default_data_dir() or old == data_dir or not (old / "jobs.sqlite3").exists():
        return None
    return f"{old} holds the data of an earlier n2n, whose default data dir was ./n2n_data; this one uses " \
           f"{data_dir}: set N2N_DATA_DIR={old} to go on with it"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="N2N_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: default_data_dir(), description="uploaded datasets, checkpoints, "
                           "trained weights (a shared volume when several machines run n2n), and the SQLite database "
                           "when no database_url is set; default: the user's data folder (Linux: "
                           "~/.local/share/n2n), whatever the working directory")
    database_url: SecretStr | None = Field(None, description="shared state (jobs, models, datasets, the active model): "
                                           "postgresql://USER@HOST:PORT/DB; unset: SQLite in data_dir")
    embedded_worker: bool = Field(True, description="the API process also runs training jobs; 0: only `n2n worker` "
                                  "processes do")
    api_token: SecretStr | None = Field(None, description="bearer token for training and model management")
    max_upload_bytes: int = Field(256 * MiB, ge=1, description="largest request body for /denoise: admits any "
                                  "8- or 16-bit grey or RGB photo under the 40 MP pixel limit in every accepted format")
    max_pixels: int = Field(40_000_000, ge=1, description="largest image, in pixels")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="the type of the networks' matrix products: auto picks bfloat16 on CPUs with AMX or "
        "AVX512-BF16 and on GPUs with bfloat16 tensor cores (within 0.02 dB of float32, about twice as fast), "
        "float32 elsewhere")
    weights: str | None = Field(None, description="model loaded at start: a path or a shipped name")
    max_inflight_pixels: int | None = Field(None, ge=1, description="pixels of all /denoise requests in flight "
                                            "(it bounds their memory); default twice N2N_MAX_PIXELS")
    queue_limit: int = Field(64, ge=1, description="denoise requests waiting before new ones get 503")
    result_ttl_seconds: float = Field(3600.0, gt=0, description="a finished denoise job (POST /denoise/jobs) and "
                                      "its result file are kept this long, then deleted")
    threads: int | None = Field(None, ge=1, description="cores this host gives n2n (default: all it may use); "
                                "denoising uses them all, or what a training job beside it leaves")
    train_threads: int | None = Field(None, ge=1, description="threads of a training job on the API's host "
                                      "(default: half of N2N_THREADS)")
    tile_memory: int = Field(768 * MiB, ge=16 * MiB, description="bytes of network activations per tile: large "
                             "photos are cut into tiles of that size (their margins recomputed)")
    png_compression: int = Field(2, ge=0, le=9, description="zlib level of PNG answers: 2 encodes a denoised "
                                 "photo about 4x faster than 6 (the CLI's) for files about a fifth larger")
    tile: int | None = Field(None, ge=64, description="override: tiles of about tile*tile pixels")
    max_aspect_ratio: float = Field(1000.0, ge=1, description="images whose long side exceeds this many times "
                                    "the short side are refused (422)")
    model_cache_bytes: int = Field(1024 * MiB, ge=0, description="parameter memory of loaded models kept in "
                                   "memory (least recently used evicted; the active one always stays)")
    watchdog_seconds: float = Field(120.0, gt=0, description="/healthz fails when the denoise worker has "
                                    "worked this long without finishing a tile")
    shutdown_seconds: float = Field(20.0, gt=0, description="on SIGTERM: stop taking work, cancel what runs at "
                                    "the next tile, exit within this time")
    max_dataset_bytes: int = Field(512 * MiB, ge=1, description="largest dataset zip upload")
    max_dataset_files: int = Field(5000, ge=1, description="most files in a dataset zip")
    max_dataset_uncompressed: int = Field(2048 * MiB, ge=1, description="largest total unpacked size")
    max_compression_ratio: float = Field(200.0, gt=1, description="zip members compressed more than this are bombs")
    max_dataset_pixels: int = Field(2_000_000_000, ge=1, description="most pixels of all images of a dataset zip "
                                    "together (each image is also held to max_pixels)")
    job_lease_seconds: float = Field(15.0, gt=0, description="a running job whose worker sent no heartbeat "
                                     "for this long has lost it and is resumed elsewhere")
    job_heartbeat_seconds: float = Field(2.0, gt=0, description="how often training workers renew their lease")
    cancel_grace_seconds: float = Field(5.0, gt=0, description="time a cancelled worker gets before it is killed")
    page_job_pixels: int = Field(4_000_000, ge=1, description="the web page denoises photos above this many "
                                 "pixels as background jobs (POST /denoise/jobs), with a progress bar")
    max_nproc_per_node: int | None = Field(None, ge=1, description="most processes of a data-parallel training "
                                           "job (POST /train nproc_per_node); default: what this host's N2N_DEVICE "
                                           "offers (its GPUs, or its cores). Set it on API replicas that run no "
                                           "jobs (N2N_EMBEDDED_WORKER=0) to what the worker hosts offer")
    min_upload_bytes_per_second: int = Field(16 * 1024, ge=0, description="a request body that arrives slower "
                                             "than this, on average, is dropped with 408 (0: never); a slow start "
                                             "or a pause of up to N2N_UPLOAD_GRACE_SECONDS is forgiven")
    upload_grace_seconds: float = Field(10.0, gt=0, description="the credit of the upload pace check: a body "
                                        "may pause (or start slowly) this long before it falls below "
                                        "N2N_MIN_UPLOAD_BYTES_PER_SECOND")
    train_memory: int | None = Field(None, ge=1, description="bytes a training job may need (its estimate, from "
                                     "batch, patch and architecture); a POST /train above it gets 422. Default: "
                                     "half of this machine's memory")
    max_queued_jobs: int = Field(16, ge=1, description="training jobs waiting (queued) before POST /train "
                                 "answers 429 with Retry-After")
    memory_release_seconds: float = Field(10.0, ge=0, description="once no denoise request has been in flight "
                                          "for this long, the memory the allocator keeps for the next one goes "
                                          "back to the system (malloc_trim); 0: never")

    result_dir: Path | None = Field(None, description="where denoise-job results (POST /denoise/jobs) are kept "
                                    "until they expire; default: <N2N_DATA_DIR>/results. Give it its own volume, so "
                                    "that anonymous results can never fill the one of datasets, checkpoints, "
                                    "weights and the database")
    result_store_bytes: int = Field(2048 * MiB, ge=1, description="total bytes of denoise-job results kept (and "
                                    "reserved by unfinished jobs); past it POST /denoise/jobs answers 507 with "
                                    "Retry-After (when the oldest result expires). No result is ever evicted early")
    max_jobs_per_client: int = Field(8, ge=1, description="unfinished plus kept denoise jobs of one client "
                                     "address; past it POST /denoise/jobs answers 429 with Retry-After")
    min_free_disk_bytes: int = Field(512 * MiB, ge=0, description="/readyz reports `low_disk` (still 200) when "
                                     "the data dir's or the result dir's file system has less free space")

    @model_validator(mode="after")
    def heartbeat_within_lease(self) -> Settings:
        if self.job_heartbeat_seconds >= self.job_lease_seconds:
            raise ValueError(f"N2N_JOB_HEARTBEAT_SECONDS ({self.job_heartbeat_seconds}) must be below "
                             f"N2N_JOB_LEASE_SECONDS ({self.job_lease_seconds})")
        return self

    @field_validator("data_dir")
    @classmethod
    def absolute_data_dir(cls, value: Path) -> Path:
        """Absolute, so that every message can be scrubbed of it whatever the working directory."""
        return value.absolute()

    @property
    def results_dir(self) -> Path:
        """N2N_RESULT_DIR, absolute; default ``<data_dir>/results``."""
        return (self.result_dir or self.data_dir / "results").absolute()

    @property
    def database(self) -> str | None:
        """N2N_DATABASE_URL in clear (for the engine only; never log it)."""
        return self.database_url.get_secret_value() if self.database_url else None


@lru_cache
def get_settings() -> Settings:
    return Settings()
