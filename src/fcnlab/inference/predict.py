"""``fcnlab-predict ckpt=<checkpoint> input=<image or folder> [output=<folder>]``: segment images.

For every input image ``<stem>.<ext>`` it writes ``<output>/<stem>.png``, a palette PNG of class
indices (full input size) in the checkpoint's class colours (VOC's for a checkpoint without colours),
and ``<output>/overlay/<stem>.png``, the image with the non-background classes blended in colour; plus
``<output>/legend.png`` and ``<output>/classes.txt`` (:mod:`fcnlab.inference.legend`). A net of more
than 256 classes gets 16-bit greyscale masks (pixel = class; a palette holds 256 colours), its colours
in the legend and overlays. A folder input is read non-recursively, in sorted order;
files with an image extension are segmented, other files and hidden files are ignored. A file that
cannot be read (corrupt, truncated, over ``max_pixels``) is reported on stderr as one line
``error: <path>: <why>`` and skipped, and the run exits with status 2 at the end. Inputs are never
overwritten: an output folder that is the input's folder, or any output path equal to an input,
is refused before anything is written; nor is any file fcnlab-predict did not write itself (a
manifest in the output folder lists its own, so the same command again replaces them) unless
``overwrite=true``. An image whose inference would need more memory than is free is refused with
the estimate, and one of more than 10,000 windows is said so, then shown in progress
(:mod:`fcnlab.inference.budget`). Every PNG is written to a temporary name and renamed, so a
killed run never leaves a half-written mask. Images go through the network one at a time at their
own size, in the checkpoint's input space, exactly as the evaluation transform feeds them, and as
``infer`` says (``conf/infer/``: one pass by default; ``infer=msflip``, ``infer=slide`` …, see
:mod:`fcnlab.models.tta`). ``max_pixels`` bounds the image in every mode: in slide mode the
net's activations no longer grow with the image, but the decoded image and the class-score sums
(num_classes × H × W float32) still do.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from fcnlab.atomic import atomic_path, foreign_files, own_outputs, write_json
from fcnlab.data.classes import class_palette
from fcnlab.data.input_space import InputSpace
from fcnlab.errors import FCNLabError, one_line
from fcnlab.inference.budget import (
    MANY_WINDOWS,
    CountedNet,
    describe,
    free_memory,
    is_out_of_memory,
    memory_bytes,
    out_of_memory_line,
    too_big_line,
    window_count,
)
from fcnlab.inference.inputs import OVERLAY_DIR, list_inputs, normalize, plan_outputs, read_image
from fcnlab.inference.legend import CLASSES_TXT, LEGEND_PNG, write_legend
from fcnlab.models.tta import SINGLE_SCALE, InferSettings, infer_logits, infer_settings


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``/``cuda:<i>`` (must exist) or ``auto`` (the first GPU if there is one)."""
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise FCNLabError(f"device={name}: CUDA is not available here; use device=cpu or device=auto")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise FCNLabError(f"device={name}: not a device name; use cuda or cuda:<index>") from None
        if (device.index or 0) >= torch.cuda.device_count():
            raise FCNLabError(f"device={name}: only {torch.cuda.device_count()} GPU(s) here")
        return device
    raise FCNLabError(f"device={name}: unknown device; use cpu, cuda, cuda:<index> or auto")


def segment(
    model: torch.nn.Module,
    image: torch.Tensor,
    space: InputSpace,
    device: torch.device,
    settings: InferSettings = SINGLE_SCALE,
) -> torch.Tensor:
    """(H, W) class indices (uint8; int32 past 256 classes) for one (3, H, W) uint8 image, at its size."""
    x = normalize(image, space).unsqueeze(0).to(device)
    with torch.inference_mode():
        logits = infer_logits(model, x, settings)
    if tuple(logits.shape[-2:]) != tuple(image.shape[-2:]):  # the FCN crops to the input; never expected
        raise RuntimeError(f"model output {tuple(logits.shape[-2:])} != input {tuple(image.shape[-2:])}")
    return logits[0].argmax(0).to(torch.uint8 if logits.shape[1] <= 256 else torch.int32).cpu()


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """(H, W, 3) uint8: class colours blended over the image, background (class 0) left as it is."""
    out = image.astype(np.float32)
    fg = labels != 0
    out[fg] = (1 - alpha) * out[fg] + alpha * palette[labels[fg]].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_png(img: Image.Image, path: Path) -> None:
    """Write a PNG atomically (:func:`fcnlab.atomic.atomic_path`): a killed run leaves no partial file."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _stderr(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _checked_limits(cfg: DictConfig) -> tuple[int, float]:
    """(max_pixels, overlay_alpha), each checked."""
    max_pixels, alpha = int(cfg.max_pixels), float(cfg.overlay_alpha)
    if max_pixels < 1:
        raise FCNLabError(f"max_pixels={max_pixels}: must be a positive number of pixels")
    if not 0.0 <= alpha <= 1.0:
        raise FCNLabError(f"overlay_alpha={alpha}: must be between 0 and 1")
    return max_pixels, alpha


def _load_checkpoint(cfg: DictConfig, device: torch.device):
    """The checkpoint's module and its network in eval mode on ``device``; at most 65536 classes (PNG)."""
    from fcnlab.training import load_module

    module = load_module(str(cfg.ckpt), name=cfg.get("model", {}).get("name"))
    num_classes = module.model.num_classes
    if num_classes > 65536:
        raise FCNLabError(
            f"ckpt={cfg.ckpt}: {num_classes} classes do not fit a 16-bit mask PNG (at most 65536)"
        )
    return module, module.model.eval().to(device)


def _make_output_dir(output: Path) -> None:
    try:
        (output / OVERLAY_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FCNLabError(f"output={output}: cannot create the folder ({e.strerror})") from None


def _info(message: str) -> None:
    print(f"info: {message}", file=sys.stderr, flush=True)


def _segment_file(
    src: Path,
    model,
    space: InputSpace,
    device: torch.device,
    limits: tuple[int, InferSettings],
    note: Callable[[str], None] | None = None,
):
    """(image, labels, model seconds) of one input, or the one-line error that skips it.

    Inference that cannot fit in the free memory is refused with the estimate, long inference said
    before it starts and then followed by progress lines (:mod:`fcnlab.inference.budget`).
    """
    max_pixels, settings = limits
    note, image = note or _info, None
    try:
        image = read_image(src, max_pixels)
        h, w = image.shape[-2:]
        need, free = memory_bytes(h, w, settings, model, model.num_classes), free_memory(device)
        if free is not None and need > free:
            return too_big_line(src, h, w, need, free, settings)
        net, windows = model, window_count(h, w, settings)
        if windows > MANY_WINDOWS:
            note(f"{src}: {windows:,} windows ({describe(settings)}); progress follows, Ctrl-C stops")
            net = CountedNet(model, windows, lambda line: note(f"{src}: {line}"))
        t1 = time.perf_counter()
        labels = segment(net, image, space, device, settings)
    except FCNLabError as e:
        return one_line(e)
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if image is None:
            return f"{src}: out of memory while reading it; downscale it or lower max_pixels"
        return out_of_memory_line(src, image.shape[-2], image.shape[-1], device, settings)
    return image, labels, time.perf_counter() - t1


def _write_pngs(
    image: torch.Tensor,
    labels: torch.Tensor,
    paths: tuple[Path, Path],
    output: Path,
    alpha: float,
    palette: np.ndarray,
):
    """The mask (palette PNG; 16-bit grey past 256 classes) and the overlay, each written atomically."""
    mask_path, overlay_path = paths
    labels_np = labels.numpy()
    if labels_np.dtype == np.uint8:
        mask = Image.fromarray(labels_np)  # mode L; putpalette turns it into P with the same indices
        mask.putpalette(palette[:256].reshape(-1).tolist())
    else:
        mask = Image.fromarray(labels_np.astype(np.uint16))  # mode I;16: pixel = class
    try:
        save_png(mask, mask_path)
        rgb = image.permute(1, 2, 0).numpy()
        save_png(Image.fromarray(overlay(rgb, labels_np, palette, alpha)), overlay_path)
    except FCNLabError as e:
        if not isinstance(e.__cause__, OSError):
            raise
        raise FCNLabError(
            f"{mask_path}: cannot write ({e.__cause__.strerror or e.__cause__}); "
            f"check space and permissions of output={output}"
        ) from None


def predict(cfg: DictConfig, report: Callable[[str], None] = _stderr) -> dict:
    """Segment every input image; per-file problems go to ``report`` and are skipped (see module doc)."""
    max_pixels, alpha = _checked_limits(cfg)
    settings = infer_settings(cfg.get("infer"))
    source, output = Path(str(cfg.input)).expanduser(), Path(str(cfg.output)).expanduser()
    inputs, ignored = list_inputs(source)
    plan = plan_outputs(source, inputs, output)
    legend_clash = next((src for src, mask, _ in plan if mask == output.resolve() / LEGEND_PNG), None)
    if legend_clash is not None:
        raise FCNLabError(
            f"input={legend_clash}: its mask would be {output / LEGEND_PNG}, the class legend's name; "
            "rename that image"
        )
    outputs = {output.resolve(): _output_names(output, plan)}  # folder -> the files written there
    outputs.setdefault(Path(cfg.paths.output_dir).resolve(), []).append("predict.json")
    foreign = [path for folder, names in outputs.items() for path in foreign_files(folder, names)]
    if not cfg.get("overwrite", False) and foreign:
        raise FCNLabError(
            f"output={output}: {len(foreign)} file(s) there were not written by fcnlab-predict (first: "
            f"{foreign[0]}); choose another output folder, or overwrite=true to replace them"
        )
    device = resolve_device(cfg.device)
    torch.set_flush_denormal(True)
    module, model = _load_checkpoint(cfg, device)
    palette = class_palette(module.class_colors, module.model.num_classes)
    _make_output_dir(output)
    with contextlib.ExitStack() as owned:  # recorded as fcnlab-predict's: the same command may replace them
        for folder, names in outputs.items():
            owned.enter_context(own_outputs(folder, names, "fcnlab-predict"))
        legend = write_legend(output, list(module.class_names), palette)
        done, errors, model_seconds, start = [], [], 0.0, time.perf_counter()
        for src, mask_path, overlay_path in plan:
            t0 = time.perf_counter()
            result = _segment_file(src, model, module.input_space, device, (max_pixels, settings))
            if isinstance(result, str):
                errors.append(result)
                report(result)
                continue
            image, labels, seconds = result
            model_seconds += seconds
            _write_pngs(image, labels, (mask_path, overlay_path), output, alpha, palette)
            done.append(
                {
                    "input": str(src),
                    "mask": str(mask_path),
                    "overlay": str(overlay_path),
                    "height": int(image.shape[-2]),
                    "width": int(image.shape[-1]),
                    "ms": round(1000 * (time.perf_counter() - t0), 1),
                }
            )
        timing = (time.perf_counter() - start, model_seconds)
        record = {**_record(cfg, source, output, device, module, done, errors, ignored, timing), **legend}
        record.update(infer=settings.as_dict(), peak_rss_mib=peak_rss_mib())
        write_json(Path(cfg.paths.output_dir) / "predict.json", record)
    return record


def _output_names(output: Path, plan: list[tuple[Path, Path, Path]]) -> list[str]:
    """Every file the run writes, relative to ``output``: masks, overlays, the legend and classes.txt."""
    out = output.resolve()
    names = [p.relative_to(out).as_posix() for _, mask, over in plan for p in (mask, over)]
    return [*names, LEGEND_PNG, CLASSES_TXT]


def _record(cfg, source, output, device, module, done, errors, ignored, timing) -> dict:
    """What ``predict.json`` holds: the run's inputs, the checkpoint's classes and input space, timings."""
    seconds, model_seconds = timing
    space, num_classes = module.input_space, module.model.num_classes
    return {
        "ckpt": str(cfg.ckpt),
        "input": str(source),
        "output": str(output),
        "device": str(device),
        "num_classes": num_classes,
        "class_names": list(module.class_names),
        "class_colors": class_palette(module.class_colors, num_classes)[:num_classes].tolist(),
        "input_space": space.as_dict(),
        "mean": list(space.mean),
        "std": list(space.std),
        "images": done,
        "errors": errors,
        "ignored_files": ignored,
        "seconds": round(seconds, 3),
        "ms_per_image": round(1000 * seconds / max(1, len(done)), 1),
        "model_ms_per_image": round(1000 * model_seconds / max(1, len(done)), 1),
    }


def peak_rss_mib() -> int:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def summary(record: dict) -> str:
    """One line: how many images, time per image, where the masks went, what failed or was ignored."""
    n, total = len(record["images"]), len(record["images"]) + len(record["errors"])
    line = (
        f"predicted {n}/{total} images on {record['device']} in {record['seconds']:.1f} s "
        f"({record['ms_per_image']:.0f} ms/image, model {record['model_ms_per_image']:.0f} ms) "
        f"-> {record['output']} (masks <stem>.png, overlays {OVERLAY_DIR}/<stem>.png, {LEGEND_PNG})"
    )
    if "infer" in record:
        line += f"; inference {record['infer']['label']}, peak RSS {record['peak_rss_mib']} MiB"
    if record["errors"]:
        line += f"; {len(record['errors'])} failed (see errors above)"
    if record["ignored_files"]:
        line += f"; {record['ignored_files']} non-image file(s) ignored"
    return line
