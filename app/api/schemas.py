"""Request and response bodies."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from n2n_core.models import ARCHITECTURES, DEFAULT_ARCH, build, size_multiple
from n2n_core.data.noise import parse_jpeg_inputs
from n2n_core.training.train import TrainConfig

from app.jobs.eta import eta_seconds
from app.services.model_names import NAME_MAX, NAME_RULE, check_name
from app.services.noise_spec import SPEC_HELP, SPEC_MAX, noise_dict_of_spec
from app.store.status import STATUSES, JobRow, JobStatus

if TYPE_CHECKING:
    from app.jobs.denoise import DenoiseJob


# What an uploaded dataset's kind means (GET/POST /datasets, the docs): the stored kinds stay "clean" and "pairs".
DATASET_KINDS = ("'clean': images, a flat folder (clean photos for method noise2noise with a noise model, or "
                 "your own noisy photos for method neighbor2neighbor); 'pairs': noisy pairs in A/ and B/ with "
                 "matching names (noise2noise only)")
PRIVATE_PARAMS = frozenset({"init_weights"})  # stored with a job for its worker, never returned
# A training job's status in the JSON: the strings of app.store.JobStatus (the same enum in the schema).
JobStatusName = Literal[tuple(s.value for s in STATUSES)]  # type: ignore[valid-type]

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


class PoissonGaussianNoise(BaseModel):
    """Camera noise x + sqrt(a x + b^2) N(0, 1), per image and per colour channel a uniform in [0, gain_max] and
    b uniform in [0, read_max]: `n2n train --noise poisson-gaussian:GAIN,READ`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["poisson-gaussian"]
    gain_max: float = Field(0.04, ge=0, le=1, description="largest signal-dependent variance per unit of intensity "
                            "(images in [0, 1]); 0.02 alone is sigma 25 at mid grey")
    read_max: float = Field(25.0, ge=0, le=255, description="largest read-noise sigma, on the 0..255 scale")


class ImpulseNoise(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["impulse"]
    p: float = Field(0.2, ge=0, le=1, description="probability that a pixel is replaced by a random colour")


class BernoulliNoise(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["bernoulli"]
    p: float = Field(0.5, ge=0, lt=1, description="probability that a pixel is dropped to 0")


SingleNoise = Annotated[GaussianNoise | PoissonNoise | PoissonGaussianNoise | ImpulseNoise | BernoulliNoise,
                        Field(discriminator="kind")]


class MixtureNoise(BaseModel):
    """Each image draws one of the components uniformly, then that noise: `gaussian:0-50+poisson-gaussian:0.04,25`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["mixture"]
    components: list[SingleNoise] = Field(..., min_length=2, max_length=8)


Noise = Annotated[GaussianNoise | PoissonNoise | PoissonGaussianNoise | ImpulseNoise | BernoulliNoise | MixtureNoise,
                  Field(discriminator="kind")]
_NOISE = TypeAdapter(Noise)
SPEC_SCHEMA = {"type": "string", "maxLength": SPEC_MAX, "examples": ["gaussian:0-50+poisson-gaussian:0.04,25"],
               "description": f"a spec as `n2n train --noise` takes it: {SPEC_HELP}"}


def noise_or_spec_schema(schema: dict[str, Any]) -> None:
    """OpenAPI: the noise field takes the structured forms or a spec string (see ``TrainRequest.spec_to_structure``,
    which keeps the errors of the structured forms what they were)."""
    structured = {k: schema.pop(k) for k in ("oneOf", "discriminator", "$ref", "anyOf") if k in schema}
    schema["anyOf"] = [structured, SPEC_SCHEMA]


def structured_noise(spec: str) -> BaseModel:
    """The structured noise of a spec string, read by the core's parser and checked against the same
    bounds as the structured forms; ValueError naming the spec otherwise."""
    if len(spec) > SPEC_MAX:
        raise ValueError(f"noise spec is {len(spec)} characters: at most {SPEC_MAX}")
    try:
        return _NOISE.validate_python(noise_dict_of_spec(spec))
    except ValidationError as e:
        why = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ValueError(f"bad noise spec {spec!r}: {why}") from None


def without_none(value: Any) -> Any:
    """A dumped noise model without its unset (None) fields, nested mixtures' components included."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra={"examples": [{"dataset": "builtin", "steps": 200}]})
    dataset: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                         description="'builtin' or an id from POST /datasets")
    name: str | None = Field(None, max_length=NAME_MAX, description=f"what to call the model: {NAME_RULE}; "
                             "default '<arch> <dataset> <YYYY-MM-DD HH:MM>' (UTC)", examples=["holiday photos"])
    noise: Noise = Field(
        default_factory=lambda: GaussianNoise(kind="gaussian", sigma=25), json_schema_extra=noise_or_spec_schema,
        description="the noise added to the dataset's clean images (default gaussian sigma 25): structured "
        "({\"kind\": \"gaussian\"|\"poisson\"|\"poisson-gaussian\"|\"impulse\"|\"bernoulli\"|\"mixture\", ...}) or "
        f"a spec string, as `n2n train --noise` takes it: {SPEC_HELP}. Not for a dataset of noisy pairs (A/B), "
        "whose noise is already in its images, nor for neighbor2neighbor on an uploaded dataset (your noisy "
        "photos); neighbor2neighbor on 'builtin' draws it once on each photograph")
    jpeg: str | None = Field(None, max_length=7, pattern=r"^[0-9]{1,3}(-[0-9]{1,3})?$", examples=["70-95"],
                             description="save half the training inputs as JPEG of a quality drawn in LO-HI (or "
                             "of one quality), as `n2n train --jpeg 70-95`; targets stay uncompressed. Not for a "
                             "dataset of noisy pairs, nor for method neighbor2neighbor")
    arch: Literal[tuple(sorted(ARCHITECTURES))] | None = Field(  # type: ignore[valid-type]
        None, description=f"network; default: that of init_model, else {DEFAULT_ARCH!r}, as for `n2n train`: "
        "the shipped 'fast' model's architecture, quick to train on a CPU and beside the service; "
        "'unet-m' or 'unet-l' for the best quality at several times the cost")
    init_model: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                   description="fine-tune: start from this model id (GET /models) instead of a fresh "
                                   "network; e.g. 'default' to adapt the shipped model to your own photos")
    steps: int = Field(1000, ge=1, le=10_000_000)
    # the defaults of `n2n train` (n2n_core.training.train.TrainConfig): one set for the CLI and the API
    batch_size: int = Field(TrainConfig.batch_size, ge=1, le=256)
    learning_rate: float = Field(TrainConfig.learning_rate, gt=0, le=1.0)
    patch_size: int = Field(TrainConfig.patch_size, ge=16, le=512)
    seed: int = Field(TrainConfig.seed, ge=0, le=2**31 - 1)
    activate_when_done: bool = False
    nproc_per_node: int = Field(1, ge=1, le=64, description="train data-parallel in this many processes on the "
                                "worker's host (one GPU each on CUDA, gloo on CPU); batch_size stays the global "
                                "batch, so it must be at least this")
    method: Literal["noise2noise", "neighbor2neighbor"] = Field(
        "noise2noise", description="'noise2noise' (default): pairs of noisy shots, or clean images with `noise` "
        "added; 'neighbor2neighbor' (Huang et al. 2021, as `n2n train --method neighbor2neighbor`): single noisy "
        "photos, no pairs and no clean images: an uploaded dataset of images (your noisy photos; not A/ B/ pairs), "
        "or 'builtin' with one fixed draw of `noise` on each photograph")
    gamma: float = Field(TrainConfig.gamma, ge=0, le=100, description="neighbor2neighbor only: final weight of the "
                         "regulariser, ramped up from 0 (as `n2n train --gamma`)")
    cell: int = Field(TrainConfig.cell, ge=2, le=64, multiple_of=2, description="neighbor2neighbor only: side of the "
                      "sub-sampling cell, even (as `n2n train --cell`; 2: neighbouring pixels, wider against "
                      "spatially correlated noise); patch_size must be a multiple of cell times the architecture's "
                      "size multiple")

    @field_validator("name")
    @classmethod
    def valid_name(cls, name: str | None) -> str | None:
        return None if name is None else check_name(name)

    @field_validator("noise", mode="before")
    @classmethod
    def spec_to_structure(cls, noise: Any) -> Any:
        """A spec string becomes the structured form (what the job records), read by the core's parser;
        anything else is validated as a structured form, with the errors it always had."""
        return structured_noise(noise) if isinstance(noise, str) else noise

    @field_validator("jpeg")
    @classmethod
    def valid_jpeg(cls, jpeg: str | None) -> str | None:
        """'70-95' or '90' (= '90-90'), qualities in 1..100, low <= high; kept as LO-HI."""
        try:
            inputs = parse_jpeg_inputs(jpeg)
        except ValueError:
            raise ValueError(f"jpeg must be LO-HI with 1 <= LO <= HI <= 100 (e.g. 70-95), or one quality; "
                             f"got {jpeg!r}") from None
        return None if inputs is None else inputs.spec()

    @model_validator(mode="after")
    def patch_fits_architecture(self) -> TrainRequest:
        if self.arch is None:
            if self.init_model is not None:
                return self  # the route fills in the init model's architecture, then checks the patch
            self.arch = DEFAULT_ARCH
        problem = self.patch_problem(self.arch)
        if problem:
            raise ValueError(problem)
        return self

    def patch_problem(self, arch: str) -> str | None:
        """Why ``patch_size`` does not fit ``arch`` (and, for neighbor2neighbor, the cell: the network trains on
        sub-images of patch_size / cell pixels a side, as ``TrainConfig.validate`` checks), or None."""
        mult = size_multiple(build(arch))
        if self.patch_size % mult:
            return f"patch_size must be a multiple of {mult} for arch {arch!r}"
        if self.method == "neighbor2neighbor" and self.patch_size % (mult * self.cell):
            return (f"patch_size must be a multiple of {mult * self.cell} for neighbor2neighbor with cell "
                    f"{self.cell} and arch {arch!r}: the network trains on sub-images of patch_size / cell pixels "
                    "a side")
        return None

    @model_validator(mode="after")
    def method_options(self) -> TrainRequest:
        """gamma and cell are neighbor2neighbor's settings: 422 when a noise2noise job sets them."""
        given = [f for f in ("gamma", "cell") if f in self.model_fields_set]
        if self.method != "neighbor2neighbor" and given:
            raise ValueError(f"{' and '.join(given)} apply to method 'neighbor2neighbor' only; leave "
                             f"{'them' if len(given) > 1 else 'it'} out, or set \"method\": \"neighbor2neighbor\"")
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
    status: JobStatusName
    params: dict[str, Any]
    progress: Progress
    metrics: dict[str, Any]
    model_id: str | None = None
    error: str | None = None
    note: str | None = None
    created_at: datetime = Field(..., description="ISO 8601, UTC")
    started_at: datetime | None = Field(None, description="ISO 8601, UTC; null until it starts")
    finished_at: datetime | None = Field(None, description="ISO 8601, UTC; null until it ends")
    eta_seconds: int | None = Field(None, description="estimated seconds left while it runs, at the step rate "
                                    "measured over the last minute (metrics.steps_per_second); null until measurable")
    worker: WorkerInfo | None = Field(None, description="the worker running the job (while it runs)")

    @classmethod
    def from_row(cls, row: JobRow) -> Job:
        fields = {k: getattr(row, k, None) for k in cls.model_fields}
        fields["status"] = row.status.value
        fields["params"] = {k: v for k, v in (fields["params"] or {}).items() if k not in PRIVATE_PARAMS}
        fields["eta_seconds"] = eta_seconds(row.status, row.progress, row.metrics)
        for key in ("created_at", "started_at", "finished_at"):  # the store keeps Unix seconds
            fields[key] = _time(fields[key])
        running = row.status == JobStatus.RUNNING and row.worker_parent is not None
        fields["worker"] = WorkerInfo(host=row.worker_host, pid=row.worker_parent) if running else None
        return cls(**fields)


class JobStatuses(BaseModel):
    """``GET /train/statuses``: what a training job's ``status`` can be."""

    statuses: list[JobStatusName] = Field(..., description="every status, in a job's life's order")
    final: list[JobStatusName] = Field(..., description="the statuses of a job that has ended (a cancelled "
                                       "job may still be resumed: POST /train/{id}/resume)")


class TileProgress(BaseModel):
    done: int = Field(..., description="tiles denoised")
    total: int = Field(..., description="tiles of the photo; 0 means not known yet (until its first tile is "
                       "done), never that there are none")
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
    model_id: str | None = Field(None, description="the model that denoises it (resolved at submission)")
    eta_seconds: float | None = Field(None, description="seconds left, from the pace of the tiles done so far; "
                                      "null until the first tile is done, 0 once the job has ended")
    result: str | None = Field(None, description="where to GET the image, once succeeded")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = Field(None, description="when the job and its result will be deleted")

    @classmethod
    def from_job(cls, job: DenoiseJob) -> DenoiseJobInfo:
        done, total = job.progress
        return cls(id=job.id, status=job.status, error=job.error, format=job.format, model_id=job.model_id,
                   eta_seconds=job.eta_seconds(),
                   progress=TileProgress(done=done, total=total, fraction=done / total if total else 0.0),
                   result=f"/denoise/jobs/{job.id}/result" if job.status == "succeeded" else None,
                   created_at=_time(job.created_at), started_at=_time(job.started_at),
                   finished_at=_time(job.finished_at), expires_at=_time(job.expires_at))


class ModelInfo(BaseModel):
    id: str
    name: str = Field(..., description="what the model is called (POST /train's name; a shipped model's own)")
    shipped: bool
    active: bool
    card: dict[str, Any]
    created_at: datetime | None = Field(None, description="when a trained model was registered (ISO 8601, UTC); "
                                        "null for shipped models")

    @field_validator("created_at", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        """The registry keeps Unix seconds: shown as ISO 8601 in UTC, as every time of the API."""
        return _time(value) if isinstance(value, (int, float)) else value


class ModelList(BaseModel):
    active: str | None
    models: list[ModelInfo]


class DatasetInfo(BaseModel):
    id: str
    kind: Literal["clean", "pairs"] = Field(..., description=DATASET_KINDS)
    images: int
    bytes: int


class Message(BaseModel):
    detail: str
