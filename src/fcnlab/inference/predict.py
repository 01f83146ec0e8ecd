"""``fcnlab-predict ckpt=<checkpoint> input=<image or folder> [output=<folder>]``: segment images.

For every input image ``<stem>.<ext>`` it writes ``<output>/<stem>.png``, a palette PNG of class
indices (VOC colours, full input size), and ``<output>/overlay/<stem>.png``, the image with the
non-background classes blended in colour. A folder input is read non-recursively, in sorted order;
files with an image extension are segmented, other files and hidden files are ignored. A file that
cannot be read (corrupt, truncated, over ``max_pixels``) is reported on stderr as one line
``error: <path>: <why>`` and skipped, and the run exits with status 2 at the end. Inputs are never
overwritten: an output folder that is the input's folder, or any output path equal to an input,
is refused before anything is written. Every PNG is written to a temporary name and renamed, so a
killed run never leaves a half-written mask. Images go through the network one at a time at their
own size, in the checkpoint's input space, exactly as the evaluation transform feeds them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, ImageOps, UnidentifiedImageError

from fcnlab.data.classes import voc_palette
from fcnlab.data.input_space import InputSpace
from fcnlab.data.loading import rgb_pixels
from fcnlab.data.transforms import eval_transform
from fcnlab.errors import FCNLabError, one_line
from fcnlab.runinfo import write_json

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")
OVERLAY_DIR = "overlay"


def normalize(images: torch.Tensor, space: str | dict | InputSpace | None) -> torch.Tensor:
    """uint8 RGB ``(..., 3, H, W)`` to the float input the net was evaluated on (``eval_transform``)."""
    from torchvision import tv_tensors

    return eval_transform(space)(tv_tensors.Image(images)).as_subclass(torch.Tensor)


def list_inputs(source: Path) -> tuple[list[Path], int]:
    """The images to segment (sorted; folders are not searched recursively) and the count of other files."""
    if not source.exists():
        raise FCNLabError(f"input={source}: no such file or folder; check the path")
    if source.is_file():
        return [source], 0
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise FCNLabError(
            f"input={source}: no image files ({' '.join(IMAGE_SUFFIXES)}) in this folder "
            "(subfolders are not searched)"
        )
    return images, len(files) - len(images)


def plan_outputs(source: Path, inputs: list[Path], output: Path) -> list[tuple[Path, Path, Path]]:
    """(input, mask, overlay) paths; refuses a plan that could overwrite an input or write a file twice."""
    out = output.resolve()
    input_dir = source.resolve() if source.is_dir() else source.resolve().parent
    if out == input_dir:
        raise FCNLabError(
            f"output={output} is the input folder; choose another folder (inputs are never overwritten)"
        )
    if output.exists() and not output.is_dir():
        raise FCNLabError(f"output={output} is a file; give a folder for the masks")
    originals = {p.resolve(): p for p in inputs}
    writers: dict[Path, Path] = {}
    plan = []
    for src in inputs:
        mask, over = out / f"{src.stem}.png", out / OVERLAY_DIR / f"{src.stem}.png"
        if mask in writers:
            raise FCNLabError(
                f"input={source}: {writers[mask].name} and {src.name} would both write {mask.name}; "
                "rename one"
            )
        writers[mask] = src
        for dst in (mask, over):
            clash = originals.get(dst) or originals.get(dst.resolve())
            if clash is not None:
                raise FCNLabError(
                    f"output={output}: {dst} would overwrite the input {clash}; choose another output folder"
                )
        plan.append((src, mask, over))
    return plan


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


@contextlib.contextmanager
def _no_pil_pixel_limit() -> Iterator[None]:
    # max_pixels is checked on the header instead, so a user can raise it past PIL's own bomb limit.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def read_image(path: Path, max_pixels: int) -> torch.Tensor:
    """(3, H, W) uint8 RGB in display orientation (EXIF applied); the size is checked before decoding.

    16-bit greyscale is rescaled to 8 bits (``fcnlab.data.loading.rgb_pixels``), not clipped to white.
    """
    try:
        with _no_pil_pixel_limit(), warnings.catch_warnings(), Image.open(path) as img:
            warnings.simplefilter("ignore")
            width, height = img.size
            if width * height > max_pixels:
                too_big = f"{width}x{height}"
            else:
                too_big = ""
                rgb = rgb_pixels(ImageOps.exif_transpose(img))
    except UnidentifiedImageError:
        raise FCNLabError(f"{path}: not a readable image (unknown format or corrupt header)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        reason = one_line(e).replace(str(path), "").strip(" '\"") or type(e).__name__
        raise FCNLabError(f"{path}: not a readable image ({reason})") from None
    if too_big:
        raise FCNLabError(
            f"{path}: {too_big} = {width * height} pixels is over max_pixels={max_pixels}; "
            f"raise it (max_pixels={width * height}) if memory allows, or downscale the image"
        )
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def segment(
    model: torch.nn.Module,
    image: torch.Tensor,
    space: InputSpace,
    device: torch.device,
) -> torch.Tensor:
    """(H, W) uint8 class indices for one (3, H, W) uint8 image, at the image's own size."""
    x = normalize(image, space).unsqueeze(0).to(device)
    with torch.inference_mode():
        logits = model(x)
    if tuple(logits.shape[-2:]) != tuple(image.shape[-2:]):  # the FCN crops to the input; never expected
        raise RuntimeError(f"model output {tuple(logits.shape[-2:])} != input {tuple(image.shape[-2:])}")
    return logits[0].argmax(0).to(torch.uint8).cpu()


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """(H, W, 3) uint8: class colours blended over the image, background (class 0) left as it is."""
    out = image.astype(np.float32)
    fg = labels != 0
    out[fg] = (1 - alpha) * out[fg] + alpha * palette[labels[fg]].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_png(img: Image.Image, path: Path) -> None:
    """Write a PNG atomically: a hidden temp file in the same folder, then rename over the target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stderr(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def predict(cfg: DictConfig, report: Callable[[str], None] = _stderr) -> dict:
    """Segment every input image; per-file problems go to ``report`` and are skipped (see module doc)."""
    from fcnlab.training import load_module

    max_pixels, alpha = int(cfg.max_pixels), float(cfg.overlay_alpha)
    if max_pixels < 1:
        raise FCNLabError(f"max_pixels={max_pixels}: must be a positive number of pixels")
    if not 0.0 <= alpha <= 1.0:
        raise FCNLabError(f"overlay_alpha={alpha}: must be between 0 and 1")
    source, output = Path(str(cfg.input)).expanduser(), Path(str(cfg.output)).expanduser()
    inputs, ignored = list_inputs(source)
    plan = plan_outputs(source, inputs, output)
    device = resolve_device(cfg.device)
    torch.set_flush_denormal(True)
    module = load_module(str(cfg.ckpt), name=cfg.get("model", {}).get("name"))
    num_classes = module.model.num_classes
    if num_classes > 255:
        raise FCNLabError(f"ckpt={cfg.ckpt}: {num_classes} classes do not fit a palette PNG (at most 255)")
    space = module.input_space
    model = module.model.eval().to(device)
    palette = voc_palette()
    try:
        (output / OVERLAY_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FCNLabError(f"output={output}: cannot create the folder ({e.strerror})") from None

    done, errors, model_seconds = [], [], 0.0
    start = time.perf_counter()
    for src, mask_path, overlay_path in plan:
        t0 = time.perf_counter()
        image = None
        try:
            image = read_image(src, max_pixels)
            t1 = time.perf_counter()
            labels = segment(model, image, space, device)
        except FCNLabError as e:
            errors.append(one_line(e))
            report(errors[-1])
            continue
        except (torch.OutOfMemoryError, MemoryError):
            if device.type == "cuda":
                torch.cuda.empty_cache()
            size = "" if image is None else f" at {image.shape[-1]}x{image.shape[-2]}"
            errors.append(
                f"{src}: out of memory{size} on {device}; "
                "downscale it, lower max_pixels or use another device"
            )
            report(errors[-1])
            continue
        model_seconds += time.perf_counter() - t1
        labels_np = labels.numpy()
        mask = Image.fromarray(labels_np)  # mode L; putpalette turns it into P with the same indices
        mask.putpalette(palette.reshape(-1).tolist())
        try:
            save_png(mask, mask_path)
            rgb = image.permute(1, 2, 0).numpy()
            save_png(Image.fromarray(overlay(rgb, labels_np, palette, alpha)), overlay_path)
        except OSError as e:
            raise FCNLabError(
                f"{mask_path}: cannot write ({e.strerror or e}); "
                f"check space and permissions of output={output}"
            ) from None
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
    seconds = time.perf_counter() - start
    record = {
        "ckpt": str(cfg.ckpt),
        "input": str(source),
        "output": str(output),
        "device": str(device),
        "num_classes": num_classes,
        "class_names": list(module.class_names),
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
    write_json(Path(cfg.paths.output_dir) / "predict.json", record)
    return record


def summary(record: dict) -> str:
    """One line: how many images, time per image, where the masks went, what failed or was ignored."""
    n, total = len(record["images"]), len(record["images"]) + len(record["errors"])
    line = (
        f"predicted {n}/{total} images on {record['device']} in {record['seconds']:.1f} s "
        f"({record['ms_per_image']:.0f} ms/image, model {record['model_ms_per_image']:.0f} ms) "
        f"-> {record['output']} (masks <stem>.png, overlays {OVERLAY_DIR}/<stem>.png)"
    )
    if record["errors"]:
        line += f"; {len(record['errors'])} failed (see errors above)"
    if record["ignored_files"]:
        line += f"; {record['ignored_files']} non-image file(s) ignored"
    return line
