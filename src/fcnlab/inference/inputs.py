"""The input side of ``fcnlab-predict``: which files to read, where each result goes, reading one image.

Inputs are never overwritten: :func:`plan_outputs` refuses an output folder that is the input's
folder, or any output path equal to an input, before anything is written. :func:`read_image` checks
``max_pixels`` on the header, before decoding.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fcnlab.data.input_space import InputSpace
from fcnlab.data.loading import rgb_pixels
from fcnlab.data.transforms import eval_transform
from fcnlab.errors import FCNLabError, one_line

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
