"""Request and response bodies."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from n2n_core.models import ARCHITECTURES, build, size_multiple

if TYPE_CHECKING:
    from .denoise_jobs import DenoiseJob


PRIVATE_PARAMS = frozenset({"init_weights"})  # stored with a job for its worker, never returned

# Request models reject NaN and +-Infinity (JSON's NaN, Infinity and overflowing literals like 1e400)
# with a 'finite_number' 422 before any range check; app/errors.py keeps that 422 valid JSON.


class GaussianNoise(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["gaussian"]
    sigma: float | None = Field(None, ge=0, le=255)
    sigma_range: tuple[Annotated[float, Field(ge=0, le=255)], Annotated[float, Field(ge=0, le=255)]] | None = None

    @model_validator(mode="after")
    def one_of(self) -> GaussianNoise:
        if (self.sigma is None) == (self.sigma_range is None):
            raise ValueError("give exactly one of sigma or sigma_range")
        if self.sigma_range is not None and self.sigma_range[0] > self.sigma_range[1]:
            raise ValueError("sigma_range must be [low, high] with low <= high")
        return self


class PoissonNoise(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["poisson"]
    lam: float = Field(30.0, gt=0, le=1e6)


Noise = Annotated[GaussianNoise | PoissonNoise, Field(discriminator="kind")]


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra={"examples": [{"dataset": "builtin", "steps": 200}]})
    dataset: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                         description="'builtin' or an id from POST /datasets")
    noise: Noise = Field(default_factory=lambda: GaussianNoise(kind="gaussian", sigma=25))
    arch: Literal[tuple(sorted(ARCHITECTURES))] | None = Field(  # type: ignore[valid-type]
        None, description="network; default: that of init_model, else 'fast'")
    init_model: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                   description="fine-tune: start from this model id (GET /models) instead of a fresh "
                                   "network; e.g. 'default' to adapt the shipped model to your own photos")
    steps: int = Field(1000, ge=1, le=10_000_000)
    batch_size: int = Field(8, ge=1, le=256)
    learning_rate: float = Field(1e-3, gt=0, le=1.0)
    patch_size: int = Field(48, ge=16, le=512)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    activate_when_done: bool = False
    nproc_per_node: int = Field(1, ge=1, le=64, description="train data-parallel in this many processes on the "
                                "worker's host (one GPU each on CUDA, gloo on CPU); batch_size stays the global "
                                "batch, so it must be at least this")

    @model_validator(mode="after")
    def patch_fits_architecture(self) -> TrainRequest:
        if self.arch is None:
            if self.init_model is not None:
                return self  # the route fills in the init model's architecture, then checks the patch
            self.arch = "fast"
        mult = size_multiple(build(self.arch))
        if self.patch_size % mult:
            raise ValueError(f"patch_size must be a multiple of {mult} for arch {self.arch!r}")
        return self

    @model_validator(mode="after")
    def batch_fits_processes(self) -> TrainRequest:
        if self.batch_size < self.nproc_per_node:
            raise ValueError(f"batch_size ({self.batch_size}) must be at least nproc_per_node "
                             f"({self.nproc_per_node}): each process trains on its rows of the global batch")
        return self


class Progress(BaseModel):
    step: int
    total: int
    fraction: float


class WorkerInfo(BaseModel):
    host: str | None = Field(None, description="host of the worker process")
    pid: int = Field(..., description="pid of the worker process (`n2n worker`, or the API with its embedded "
                     "worker), not of the training process it spawned")


class Job(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    params: dict[str, Any]
    progress: Progress
    metrics: dict[str, Any]
    model_id: str | None = None
    error: str | None = None
    note: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    worker: WorkerInfo | None = Field(None, description="the worker running the job (while it runs)")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        fields = {k: row.get(k) for k in cls.model_fields}
        fields["params"] = {k: v for k, v in (fields["params"] or {}).items() if k not in PRIVATE_PARAMS}
        running = row.get("status") == "running" and row.get("worker_parent") is not None
        fields["worker"] = WorkerInfo(host=row.get("worker_host"), pid=row["worker_parent"]) if running else None
        return cls(**fields)


class TileProgress(BaseModel):
    done: int = Field(..., description="tiles denoised")
    total: int = Field(..., description="tiles of the photo (0 until its first tile is done)")
    fraction: float


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


class DenoiseJobAccepted(BaseModel):
    id: str = Field(..., description="128 random bits: the only key to the result")
    status: Literal["queued"]


class DenoiseJobInfo(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: TileProgress
    error: str | None = None
    format: str = Field(..., description="output format of the result")
    model_id: str | None = Field(None, description="the model that made the result (once succeeded)")
    result: str | None = Field(None, description="where to GET the image, once succeeded")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = Field(None, description="when the job and its result will be deleted")

    @classmethod
    def from_job(cls, job: DenoiseJob) -> DenoiseJobInfo:
        done, total = job.progress
        return cls(id=job.id, status=job.status, error=job.error, format=job.format, model_id=job.model_id,
                   progress=TileProgress(done=done, total=total, fraction=done / total if total else 0.0),
                   result=f"/denoise/jobs/{job.id}/result" if job.status == "succeeded" else None,
                   created_at=_time(job.created_at), started_at=_time(job.started_at),
                   finished_at=_time(job.finished_at), expires_at=_time(job.expires_at))


class ModelInfo(BaseModel):
    id: str
    shipped: bool
    active: bool
    card: dict[str, Any]


class ModelList(BaseModel):
    active: str | None
    models: list[ModelInfo]


class DatasetInfo(BaseModel):
    id: str
    kind: Literal["clean", "pairs"]
    images: int
    bytes: int


class Message(BaseModel):
    detail: str
