"""The GPU path, checked on the CPU: training steps that never wait for the device, grouped batches
that equal the paper's accumulated single images, float32 scores under bf16 autocast, the loss's
edge cases, and a GPU trainer refused in one line where there is no usable CUDA."""

from __future__ import annotations

import sys
from collections import Counter

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from fcnlab.data.classes import VOID
from fcnlab.data.sampling import SizeGroupedBatches
from fcnlab.training import FCNModule
from fcnlab.training.run import train
from test_train import make_cfg, tiny_overrides

TINY = {"name": "fcn16s", "num_classes": 21, "backbone": "vgg16_tiny", "geometry": "efficient"}

# Host reads: each waits for the device to finish everything queued before it. ``.to("cpu")`` is not
# listed: on a CPU run every device move is one, so it cannot be told apart from a read here.
HOST_READS = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.cpu,
    torch.Tensor.numpy,
    torch.Tensor.__bool__,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
    torch.Tensor.__index__,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.Tensor.masked_select,
    torch.masked_select,
    torch.unique,
}


def _bool_index(args: tuple) -> bool:
    """``x[mask]`` with a bool tensor: its result's size is data-dependent, a host read on CUDA."""
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class HostReads(TorchFunctionMode):
    """Counts host reads of tensors, except the data pipeline's (host tensors on any machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.where = 0, Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS or (func is torch.Tensor.__getitem__ and _bool_index(args)):
            frame, files = sys._getframe(1), []
            while frame is not None:
                files.append(frame.f_code.co_filename)
                frame = frame.f_back
            if not any("torch/utils/data" in f for f in files):
                self.count += 1
                self.where[
                    (getattr(func, "__name__", str(func)), next(f for f in files if "torch/" not in f))
                ] += 1
        return func(*args, **(kwargs or {}))


class ReadsPerStep(L.Callback):
    """Host reads between the starts of consecutive training batches (the step, its logging, its fetch)."""

    def __init__(self, mode: HostReads) -> None:
        self.mode, self.per_step, self._last = mode, [], None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._last is not None and batch_idx > 0:  # a step that ended inside this epoch
            self.per_step.append(self.mode.count - self._last)
        self._last = self.mode.count


@pytest.mark.parametrize(
    "extra",
    [
        ("data.crop_size=48", "loss.class_weights=[" + ",".join(["1.5"] * 20 + ["0.5"]) + "]"),
        # whole images grouped by size, one optimizer step per 4 images (FCNModule steps itself)
        ("data.crop_size=null", "data.scale_range=null", "loss.normalize=image", "+data.images_per_update=4"),
    ],
    ids=["crops_class_weights", "grouped_whole_images"],
)
def test_training_steps_read_nothing_back_outside_the_logging_interval(
    extra, tiny_data, tmp_path, monkeypatch
):
    every = 4
    cfg = make_cfg(
        "train",
        tiny_overrides(
            tiny_data,
            "model=fcn16s",
            "trainer=cpu",
            "data.batch_size=2",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={2 * every + 1}",
            "trainer.limit_val_batches=1",
            f"trainer.log_every_n_steps={every}",
            *extra,
        ),
        tmp_path,
    )
    mode = HostReads()
    counter = ReadsPerStep(mode)
    import fcnlab.training.callbacks as callbacks

    progress = callbacks.progress_callbacks
    monkeypatch.setattr(callbacks, "progress_callbacks", lambda *a, **k: [*progress(*a, **k), counter])
    with mode:
        train(cfg)
    steps = counter.per_step
    assert len(steps) == 2 * every, steps
    logged = {
        i for i in range(len(steps)) if (i + 1) % every == 0
    }  # Lightning's (and the loss check's) steps
    assert all(n == 0 for i, n in enumerate(steps) if i not in logged), (steps, mode.where)
    assert all(0 < steps[i] <= 2 for i in logged), (
        steps,
        mode.where,
    )  # the logged loss + the finiteness check


def _module(normalize, weights=None) -> FCNModule:
    torch.manual_seed(0)
    module = FCNModule(
        model={**TINY, "width_divisor": 8, "pool5_size": 3}, loss_normalize=normalize, class_weights=weights
    )
    with torch.no_grad():  # non-zero scores: the zero-initialised scoring layers would hide differences
        for name, p in module.model.named_parameters():
            if "score" in name:
                p.normal_(0, 0.1)
    return module


@pytest.mark.parametrize("normalize", [True, "image", False])
def test_void_only_and_zero_weight_batches_give_exactly_zero_and_others_the_usual_loss(normalize):
    weights = [0.0] * 10 + [1.0] * 11
    plain, weighted = _module(normalize), _module(normalize, weights)
    logits = torch.randn(2, 21, 6, 7, requires_grad=True)
    void = torch.full((2, 6, 7), VOID)
    zero_weight = torch.randint(0, 10, (2, 6, 7))  # classes of weight 0 only
    for module, masks in ((plain, void), (weighted, void), (weighted, zero_weight)):
        loss = module.loss(logits, masks)
        assert loss.item() == 0.0 and loss.dtype == torch.float32
        (grad,) = torch.autograd.grad(loss, logits)
        assert not grad.any()
    masks = torch.randint(0, 21, (2, 6, 7))
    masks[0, :2] = VOID
    for module, w in ((plain, None), (weighted, torch.tensor(weights))):
        if normalize is False:
            want = F.cross_entropy(logits, masks, weight=w, ignore_index=VOID, reduction="sum")
        elif normalize is True:
            want = F.cross_entropy(logits, masks, weight=w, ignore_index=VOID)
        else:  # each image's mean, then averaged over the batch's images
            want = (
                sum(
                    F.cross_entropy(logits[i : i + 1], masks[i : i + 1], weight=w, ignore_index=VOID)
                    for i in (0, 1)
                )
                / 2
            )
        torch.testing.assert_close(module.loss(logits, masks), want, rtol=1e-6, atol=0)


def test_an_update_of_grouped_batches_has_the_gradient_of_its_images_accumulated_one_by_one():
    """loss.normalize=image, images_per_update=n: the batches of one update (any split of its n images
    into same-size batches, a short last update too) sum to exactly the gradient of n single-image steps
    accumulated by Lightning (each loss / n). Float32 sums in another order (batched convolutions):
    equal to 1e-5 of the gradient's largest entry (1.4e-6 measured)."""
    n = 4
    module = _module("image")
    module.model.eval()  # dropout off: its masks would differ between the batch and the single images
    torch.manual_seed(1)
    images = torch.randn(n, 3, 40, 56)
    masks = torch.randint(0, 21, (n, 40, 56))
    masks[0, 10:25] = VOID
    masks[2] = VOID  # a void-only image still counts 1/n, with a zero loss
    named = [(name, p) for name, p in module.model.named_parameters() if p.requires_grad]

    def grads(*batches):
        loss = sum(module.loss(module(images[b]), masks[b]) for b in batches)
        return torch.autograd.grad(loss, [p for _, p in named])

    for update in (
        [slice(0, 4)],
        [slice(0, 3), slice(3, 4)],
        [slice(0, 3)],
    ):  # one batch, two, a short update
        module.images_per_update = n
        together = grads(*update)
        module.images_per_update = None  # batch 1: each step's loss divided by accumulate_grad_batches=n
        images_in = [i for b in update for i in range(*b.indices(n))]
        singles = [[g / n for g in grads(slice(i, i + 1))] for i in images_in]
        for (name, _), got, *parts in zip(named, together, *singles, strict=True):
            want = torch.stack(parts).sum(0)
            assert (got - want).abs().max() <= 1e-5 * want.abs().max().clamp_min(1e-12), (update, name)


@pytest.mark.slow
def test_images_per_update_steps_once_per_update_in_a_real_run(tiny_data, tmp_path):
    """24 whole images of 24 sizes, 5 per update: 24 passes, 5 optimizer steps (the last of 4 images)."""
    cfg = make_cfg(
        "train",
        tiny_overrides(
            tiny_data,
            "model=fcn32s",
            "trainer=cpu",
            "data.crop_size=null",
            "data.scale_range=null",
            "data.batch_size=3",
            "+data.images_per_update=5",
            "loss.normalize=image",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=1",
        ),
        tmp_path,
    )
    results = train(cfg)
    assert results["status"] == "ok" and results["steps"] == 5


def test_size_grouped_updates_hold_their_images_in_one_size_batches_once_an_epoch():
    sizes = [(375, 500)] * 43 + [(500, 375)] * 9 + [(333, 500)] * 2 + [(281, 500)]
    sampler = SizeGroupedBatches(sizes, 10, seed=3, epoch_fn=lambda: 2, images_per_update=20)
    batches = list(sampler)
    assert all(len({sizes[i] for i, _ in b}) == 1 and 1 <= len(b) <= 10 for b in batches)
    assert sorted(i for b in batches for i, _ in b) == list(range(len(sizes)))  # each image once
    # Two updates of 20 (375, 500), 2 batches each; then the 15 left, sorted by size, as one update:
    # 1 + 2 + 3 (of 9, 3 and 2, 1) batches.
    assert [len(b) for b in batches] == [10, 10, 10, 10, 1, 2, 3, 9]
    assert len(sampler) == len(batches)
    again = list(SizeGroupedBatches(sizes, 10, seed=3, epoch_fn=lambda: 2, images_per_update=20))
    assert again == batches  # (seed, epoch) alone fix the batches and the per-image seeds
    other = list(SizeGroupedBatches(sizes, 10, seed=3, epoch_fn=lambda: 3, images_per_update=20))
    assert other != batches and len(other) == len(batches)  # another order, the same count
    plain = list(SizeGroupedBatches(sizes, 10, seed=3, epoch_fn=lambda: 2))  # an update a batch
    assert [len(b) for b in plain] == [10] * 4 + [1, 2, 3, 4, 5]  # the 15 left: updates of 10 again
    shards = [list(SizeGroupedBatches(sizes, 10, 3, lambda: 2, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # every rank steps equally often
    assert [shards[r][k] for k in range(3) for r in range(3)] == plain


class DtypesSeen(TorchFunctionMode):
    """The dtype of what reaches the loss (``cross_entropy``) and the prediction (``argmax``)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, torch.dtype]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (F.cross_entropy, torch.Tensor.argmax):
            self.seen.append((func.__name__, args[0].dtype))
        return func(*args, **(kwargs or {}))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # the steps called without a trainer
@pytest.mark.parametrize("learn_upsampling", [True, False])
def test_scores_reach_the_loss_and_the_argmax_in_float32_under_bf16_autocast(learn_upsampling):
    from fcnlab.models.upsample import BilinearUpsample

    up = BilinearUpsample(21, 32, learnable=False)
    x = torch.randn(1, 21, 4, 5).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = up(x, 5, (40, 56))
    assert y.dtype == torch.float32 and torch.equal(y, up(x.float(), 5, (40, 56)))  # upsampled in float32

    module = FCNModule(
        model={**TINY, "width_divisor": 8, "pool5_size": 3, "learn_upsampling": learn_upsampling}
    )
    batch = (torch.randn(2, 3, 40, 56), torch.randint(0, 21, (2, 40, 56)))
    mode = DtypesSeen()
    with torch.autocast("cpu", dtype=torch.bfloat16), mode:
        assert module(batch[0]).dtype == torch.float32
        module.train()
        module.training_step(batch, 0)
        module.eval()
        module.validation_step(batch, 0)
    assert mode.seen == [("cross_entropy", torch.float32)] * 2 + [("argmax", torch.float32)]


FAKE_SMI = """#!/bin/sh
if [ "$1" = "-L" ]; then echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"; exit 0; fi
echo "| NVIDIA-SMI 470.57.02    Driver Version: 470.57.02    CUDA Version: 11.4     |"
"""


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    """A machine whose nvidia-smi lists an H100 with an old driver, and where torch sees no CUDA."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    return bin_dir


def test_gpu_trainer_without_usable_cuda_is_one_line_naming_the_driver_mismatch_before_any_work(
    fake_gpu, tmp_path
):
    from fcnlab.errors import FCNLabError

    cfg = make_cfg("train", ["trainer=gpu"], tmp_path)  # the generated default: data and a backbone to make
    with pytest.raises(FCNLabError) as info:
        train(cfg)
    assert str(info.value) == (
        "trainer.accelerator=gpu but no CUDA device is usable: nvidia-smi lists NVIDIA H100 80GB HBM3 "
        f"(driver 470.57.02, CUDA 11.4) but torch {torch.__version__} is built for CUDA 12.4, newer than the "
        "driver runs; update the NVIDIA driver, or install a torch built for CUDA 11.4 or older; or train on "
        "the CPU with trainer=cpu"
    )
    assert not (tmp_path / "data").exists()  # nothing generated, no backbone pretrained


def test_auto_takes_the_cpu_only_where_there_is_no_gpu_to_use(fake_gpu, monkeypatch):
    from fcnlab.errors import FCNLabError
    from fcnlab.training.device import require_device

    with pytest.raises(
        FCNLabError, match=r"^trainer.accelerator=auto but no CUDA device is usable: nvidia-smi lists"
    ):
        require_device("auto")  # a GPU torch cannot use: never a silent CPU run
    require_device("cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    require_device("auto")  # GPUs hidden on purpose: the CPU
    with pytest.raises(FCNLabError, match="CUDA_VISIBLE_DEVICES='' hides every GPU"):
        require_device("gpu")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    (fake_gpu / "nvidia-smi").unlink()
    require_device("auto")  # no GPU at all: the CPU
    with pytest.raises(FCNLabError, match="this machine has no NVIDIA GPU .nvidia-smi lists none.; or train"):
        require_device("gpu")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(FCNLabError, match=r"this torch \(.*\) is built without CUDA; install a CUDA build"):
        require_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    require_device("gpu", 1)
    with pytest.raises(FCNLabError, match="^trainer.devices=4 but this machine has 1 usable GPU"):
        require_device("gpu", 4)


def test_voc_presets_select_the_gpu_trainer_and_trainer_cpu_opts_out(fake_gpu, tmp_path):
    from fcnlab.errors import FCNLabError

    for experiment in ("table2_voc", "table2_voc_heavy"):
        cfg = make_cfg("table2", [f"experiment={experiment}", "model=fcn32s"], tmp_path)
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 1
        with pytest.raises(FCNLabError, match="^trainer.accelerator=gpu but no CUDA device is usable"):
            train(cfg)
        cpu = make_cfg("table2", [f"experiment={experiment}", "model=fcn32s", "trainer=cpu"], tmp_path)
        assert cpu.trainer.accelerator == "cpu"
        with pytest.raises(FCNLabError) as info:  # past the device check: the VOC data is not there
            train(cpu)
        assert "CUDA" not in str(info.value)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_readme_voc_command_on_a_machine_without_cuda_stops_in_one_line(tmp_path):
    from test_voc_presets import fcnlab_train

    proc = fcnlab_train(
        tmp_path, tmp_path, "experiment=table2_voc", "model=fcn32s", f"data.root={tmp_path / 'voc'}"
    )
    assert proc.returncode == 2 and proc.stderr.startswith(
        "error: trainer.accelerator=gpu but no CUDA device"
    )
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.strip().endswith("trainer=cpu")


class _AtEpoch:
    def __init__(self, epoch: int) -> None:
        self.current_epoch = epoch


def test_whole_images_load_in_unpadded_one_size_batches_and_a_cache_is_decoded_once_for_all_workers(tmp_path):
    from fcnlab.data import SegmentationDataModule
    from fcnlab.data.synthetic import SyntheticConfig, generate

    sizes = SyntheticConfig(seed=5, sbd_train=10, sbd_val=1, voc_val=2, voc_val_in_sbd_train=1, voc_train=1,
                            min_size=40, max_size=40, classification_train=20, classification_val=20,
                            classification_size=32)  # fmt: skip
    root = generate(tmp_path / "square", sizes, workers=1)

    def epoch_batches(workers: int, cache: bool) -> tuple[list, SegmentationDataModule]:
        dm = SegmentationDataModule(str(root), crop_size=None, hflip=True, batch_size=4, num_workers=workers,
                                    seed=2, cache=cache, images_per_update=8)  # fmt: skip
        dm.trainer = _AtEpoch(1)
        dm.setup("fit")
        return list(dm.train_dataloader()), dm

    batches, dm = epoch_batches(0, cache=False)
    assert [len(images) for images, _ in batches] == [4, 4, 2]  # 10 images of one size: nothing padded
    order = SizeGroupedBatches([(40, 40)] * 10, 4, seed=2, epoch_fn=lambda: 1, images_per_update=8).batches()
    for (images, masks), keys in zip(batches, order, strict=True):
        one_by_one = [dm.train_set[key] for key in keys]  # same seeds: same flips
        assert torch.equal(images, torch.stack([i for i, _ in one_by_one]))
        assert torch.equal(masks, torch.stack([m for _, m in one_by_one]))
    cached, dm = epoch_batches(2, cache=True)
    assert len(dm.train_set._decoded) == 10  # decoded here, in the main process, before the workers forked
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, cached, strict=True)
    )


def test_a_cache_the_loader_workers_cannot_share_is_refused_in_one_line(monkeypatch):
    import multiprocessing

    from fcnlab.data.datamodule import worker_start_method
    from fcnlab.errors import FCNLabError

    assert worker_start_method(2, cache=True) == "fork" and worker_start_method(0, cache=True) is None
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with pytest.raises(
        FCNLabError, match=r"^data.cache=true with data.num_workers=2: .* set data.num_workers=0"
    ):
        worker_start_method(2, cache=True)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.accumulate_grad_batches=2", "counts the update's images itself; drop trainer.accumulate"),
        ("trainer.gradient_clip_val=1.0", "steps the optimizer itself, which trainer.gradient_clip_val"),
        ("trainer=ddp", "trains on one device"),
        ("data.images_per_update=0", "must be a whole number >= 1"),
    ],
)
def test_what_images_per_update_rules_out_is_one_line_each(override, message, tmp_path):
    from fcnlab.data import SegmentationDataModule
    from fcnlab.errors import FCNLabError
    from fcnlab.training.run import check_images_per_update

    cfg = make_cfg("table2", ["experiment=table2_voc", "model=fcn32s", override], tmp_path)
    with pytest.raises(FCNLabError, match=f"^data.images_per_update=[0-9]+:? .*{message}"):
        check_images_per_update(cfg)
    with pytest.raises(FCNLabError, match=r"^data.images_per_update=20 groups whole images by size; set"):
        SegmentationDataModule(str(tmp_path), crop_size=320, images_per_update=20)
    with pytest.raises(FCNLabError, match="^images_per_update with a learning-rate schedule"):
        FCNModule(model={**TINY, "width_divisor": 8}, scheduler=lambda o: o, images_per_update=20)


def test_float32_precision_is_set_for_matmuls_and_cudnn_alike_and_read_back_by_torch():
    from fcnlab.errors import FCNLabError
    from fcnlab.training.device import set_float32_precision

    try:
        for value, tf32 in (("high", True), ("highest", False)):
            set_float32_precision(value)
            assert torch.get_float32_matmul_precision() == value
            assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
            with torch.backends.cudnn.flags(enabled=True):  # what torch.export and others read back
                pass
        with pytest.raises(FCNLabError, match="^float32_matmul_precision=fp16: use highest"):
            set_float32_precision("fp16")
    finally:
        set_float32_precision("highest")
