"""Data-parallel training (gloo, 2 CPU processes): the same weights as one process, rank-0-only writes,
resume with another number of processes, clear errors for impossible launches.

One spawned launch (the ``two_ranks`` fixture) trains every scenario, so that the processes start
once; each rank saves its final state so that the tests can also check that the ranks agree. Hangs are
caught by the suite's pytest-timeout (600 s a test), not by a speed requirement.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from n2n_core.training import distributed
from n2n_core.inference.runtime import cores
from n2n_core.cli import main
from n2n_core.data.datasets import CleanImages, Dataset
from n2n_core.training.distributed import DistContext
from n2n_core.models import build
from n2n_core.data.noise import Gaussian
from n2n_core.nn.serialize import read_metadata
from n2n_core.training.train import TrainConfig, Trainer

from tests.helpers import random_images as _images

# name -> (TrainConfig overrides, dtype); all on the CPU, arch "tiny", 16x16 patches
SCENARIOS = {
    "sgd64": (dict(optimizer="sgd", learning_rate=0.05, ema=0.9), torch.float64),
    "adam64": (dict(optimizer="adam", ema=0.9), torch.float64),
    "adam64_uneven": (dict(optimizer="adam", batch_size=3), torch.float64),  # rank 0: 1 row, rank 1: 2 rows
    "adam32": (dict(optimizer="adam"), torch.float32),
    # single photos: the sub-sampler's draws are made for the global batch, then split (uneven here too)
    "n2nb64_uneven": (dict(optimizer="adam", method="neighbor2neighbor", batch_size=3), torch.float64),
}
RESUME = (dict(optimizer="adam", ema=0.9), torch.float64)  # stopped after STOP_AFTER steps, then resumed
STEPS, STOP_AFTER = 5, 3
two_cores = pytest.mark.skipif(cores() < 2,
                               reason="2 processes need 2 cores (more processes than cores is refused)")


def _cfg(**kw) -> TrainConfig:
    base = dict(arch="tiny", steps=STEPS, batch_size=4, patch_size=16, val_every=2, checkpoint_every=1000,
                device="cpu", warmup=1)
    return TrainConfig(**{**base, **kw})


def _data() -> Dataset:
    return Dataset(CleanImages(_images(4, 48, 48), Gaussian(25)), [])


def _trainer(overrides: dict, dtype: torch.dtype, out: Path, ctx: DistContext = distributed.SINGLE,
             should_stop=None) -> Trainer:
    cfg = _cfg(**overrides)
    torch.manual_seed(cfg.seed)
    return Trainer(cfg, _data(), out, model=build(cfg.arch).to(dtype=dtype), dist=ctx, should_stop=should_stop)


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Weights, averaged weights and optimizer buffers of a trainer, by name."""
    state = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    state.update({f"optim.{k}": v.clone() for k, v in trainer.optim.state_dict()["buffers"].items()})
    state.update({f"ema.{k}": v.clone() for k, v in (trainer.ema or {}).items()})
    return state


def _rank_worker(ctx: DistContext, folder: str) -> str:
    """Runs in each spawned rank: every scenario, then the run that rank 0 cancels after STOP_AFTER steps."""
    folder_path = Path(folder)
    for name, (overrides, dtype) in SCENARIOS.items():
        trainer = _trainer(overrides, dtype, folder_path / f"{name}.safetensors", ctx)
        result = trainer.run(resume=False)
        torch.save({"state": _state(trainer), "history": result.history, "weights": result.weights},
                   folder_path / f"{name}.rank{ctx.rank}.pt")
    calls = {"n": 0}

    def stop_on_rank0() -> bool:
        calls["n"] += 1
        return ctx.rank == 0 and calls["n"] > STOP_AFTER

    trainer = _trainer(*RESUME, folder_path / "resume.safetensors", ctx, should_stop=stop_on_rank0)
    result = trainer.run(resume=False)
    torch.save({"status": result.status, "step": result.step}, folder_path / f"resume.rank{ctx.rank}.pt")
    return "done"


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("two_ranks")
    assert distributed.launch(_rank_worker, 2, (str(folder),)) == "done"
    return folder


def _single(name: str, folder: Path) -> tuple[dict[str, torch.Tensor], list[dict]]:
    trainer = _trainer(*SCENARIOS[name], folder / f"{name}.safetensors")
    result = trainer.run(resume=False)
    return _state(trainer), result.history


def _assert_states_close(got, want, rtol, atol):
    assert set(got) == set(want) and any(k.startswith("optim.") for k in want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        torch.testing.assert_close(got[k], want[k], rtol=rtol, atol=atol, msg=k)


@two_cores
@pytest.mark.parametrize("name", ["sgd64", "adam64", "adam64_uneven", "n2nb64_uneven"])
def test_two_processes_reach_the_weights_of_one_in_float64(two_ranks, tmp_path, name):
    want, history = _single(name, tmp_path)
    ranks = [torch.load(two_ranks / f"{name}.rank{r}.pt") for r in (0, 1)]
    for rank in ranks:  # weights, optimizer state and averages: 1e-10 of one process's after STEPS steps
        _assert_states_close(rank["state"], want, rtol=0, atol=1e-10)
    for k, v in ranks[0]["state"].items():  # and the ranks agree with each other bit for bit
        assert torch.equal(v, ranks[1]["state"][k]), k
    # the reported loss is the global-batch mean, as one process reports it
    got_loss = [h["loss"] for h in ranks[0]["history"]]
    torch.testing.assert_close(torch.tensor(got_loss), torch.tensor([h["loss"] for h in history]),
                               rtol=1e-12, atol=0)


@two_cores
def test_two_processes_reach_the_weights_of_one_in_float32(two_ranks, tmp_path):
    want, _ = _single("adam32", tmp_path)
    for r in (0, 1):
        _assert_states_close(torch.load(two_ranks / f"adam32.rank{r}.pt")["state"], want, rtol=1e-4, atol=1e-6)


@two_cores
def test_only_rank_0_writes(two_ranks):
    r0, r1 = (torch.load(two_ranks / f"adam64.rank{r}.pt") for r in (0, 1))
    assert r0["weights"] == str(two_ranks / "adam64.safetensors") and r1["weights"] is None
    assert read_metadata(two_ranks / "adam64.safetensors")[1]["processes"] == 2
    assert (two_ranks / "adam64.ckpt.safetensors").exists() and (two_ranks / "adam64.history.json").exists()
    assert not list(two_ranks.glob("*.tmp"))


@two_cores
def test_a_checkpoint_of_two_processes_resumes_in_one_like_an_uninterrupted_run(two_ranks, tmp_path):
    stopped = [torch.load(two_ranks / f"resume.rank{r}.pt") for r in (0, 1)]
    assert all(s == {"status": "cancelled", "step": STOP_AFTER} for s in stopped)  # rank 0's cancel stops both
    out = tmp_path / "resumed.safetensors"
    ckpt = two_ranks / "resume.ckpt.safetensors"
    out.with_suffix(".ckpt.safetensors").write_bytes(ckpt.read_bytes())
    resumed = _trainer(*RESUME, out)
    result = resumed.run(resume=True)
    assert result.status == "succeeded" and result.step == STEPS
    whole = _trainer(*RESUME, tmp_path / "whole.safetensors")
    whole.run(resume=False)
    _assert_states_close(_state(resumed), _state(whole), rtol=0, atol=1e-10)
    written = load_file(str(out))  # the averaged weights, as an uninterrupted run writes them
    for k, v in load_file(str(tmp_path / "whole.safetensors")).items():
        torch.testing.assert_close(written[k], v, rtol=0, atol=1e-10)


@two_cores
def test_cli_trains_with_nproc_per_node_and_reports_from_rank_0_only(tmp_path, capfd):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, img in enumerate(_images(3, 48, 48)):
        Image.fromarray(img).save(folder / f"p{i}.png")
    out = tmp_path / "dp.safetensors"
    argv = ["train", "--data", str(folder), "--val", str(folder), "--arch", "tiny", "--steps", "4",
            "--batch-size", "4", "--patch-size", "16", "--val-every", "2", "--device", "cpu",
            "--nproc-per-node", "2", "--out", str(out)]
    assert main(argv) == 0
    stdout, stderr = capfd.readouterr()
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and summary["steps"] == 4 and summary["val_psnr"] > 10
    assert stdout.count('"status"') == 1 and stderr.count("step 4/4") == 1 and "in 2 processes" in stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 4
    assert read_metadata(out)[1]["processes"] == 2


def test_more_processes_than_devices_is_a_clear_error(tmp_path, capsys):
    available = cores()
    with pytest.raises(ValueError, match="more than this machine's .* GPU"):
        distributed.check_nproc(torch.cuda.device_count() + 1, "cuda")
    with pytest.raises(ValueError, match=f"more than this machine's {available} CPU core"):
        distributed.check_nproc(available + 1, "cpu")
    with pytest.raises(ValueError, match=">= 1"):
        distributed.check_nproc(0, "cpu")
    distributed.check_nproc(1, "cpu")
    argv = ["train", "--data", "builtin", "--arch", "tiny", "--device", "cpu", "--nproc-per-node", str(available + 1),
            "--out", str(tmp_path / "x.safetensors")]
    assert main(argv) == 1
    assert f"nproc_per_node={available + 1} is more than" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_shards_cover_the_global_batch_and_need_a_row_per_process():
    for batch, world in [(4, 2), (3, 2), (7, 3), (5, 5)]:
        bounds = [distributed.shard_bounds(batch, DistContext(r, world)) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == batch
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])) and all(hi > lo for lo, hi in bounds)
    with pytest.raises(ValueError, match="batch_size 1 is smaller than the 2 processes"):
        distributed.shard_bounds(1, DistContext(0, 2))


def test_context_from_torchrun_environment():
    assert distributed.context_from_env({}) is None
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "node0",
           "MASTER_PORT": "29500"}
    assert distributed.context_from_env(env) == DistContext(3, 4, 1, 2)
    with pytest.raises(ValueError, match="inconsistent"):
        distributed.context_from_env({**env, "RANK": "4"})
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        distributed.context_from_env({"RANK": "0", "WORLD_SIZE": "2"})


def _diverge(ctx: DistContext, folder: str) -> None:
    """Runs in each spawned rank: a learning rate that makes the loss infinite within a few steps."""
    _trainer(dict(learning_rate=1e6, steps=20), torch.float32, Path(folder) / "d.safetensors", ctx).run()


def _sleep_forever(ctx: DistContext, folder: str) -> None:
    """Runs in each spawned rank: note this process id, then wait (for the launcher to be killed)."""
    (Path(folder) / f"pid{ctx.rank}").write_text(str(os.getpid()))
    while True:
        time.sleep(1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already died
    except FileNotFoundError:
        return False


@two_cores
def test_a_rank_error_reaches_the_launcher_as_itself(tmp_path):
    from n2n_core.training.train import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="diverged"):  # every rank sees the same global loss
        distributed.launch(_diverge, 2, (str(tmp_path),))
    assert not (tmp_path / "d.safetensors").exists()


@two_cores
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ranks_do_not_outlive_their_launcher(tmp_path):
    root = Path(__file__).resolve().parents[3]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from n2n_core.training import distributed; "
            "from tests.core.training.test_distributed import _sleep_forever; "
            "distributed.launch(_sleep_forever, 2, (sys.argv[2],))")
    launcher = subprocess.Popen([sys.executable, "-c", code, str(root), str(tmp_path)], cwd=root)
    try:
        deadline = time.monotonic() + 300  # a hang guard
        while len(list(tmp_path.glob("pid*"))) < 2:
            if launcher.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("hang guard: the ranks did not start")
            time.sleep(0.2)
        pids = [int(p.read_text()) for p in tmp_path.glob("pid*")]
        assert all(_alive(p) for p in pids)
    finally:
        launcher.kill()  # SIGKILL: no clean-up in the launcher; the kernel must end the ranks
        launcher.wait()
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
