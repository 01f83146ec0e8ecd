"""``fcnlab-export ckpt=<checkpoint> [format=onnx] [output=<file.onnx or folder>]``: a verified ONNX model.

The graph takes ``image``, float32 ``(N, 3, H, W)`` in the checkpoint's input space, as evaluation
feeds it (torchvision: RGB / 255, then ``(x - mean) / std``; caffe: BGR, 0–255, minus the mean
pixel; the sidecar says which, with channel order, scale, mean and std), and returns ``logits``,
float32 ``(N, C, H, W)``; N, H and W are dynamic.
Right after export, onnxruntime runs the file on ``check_sizes`` (odd sizes and a batch of 2 by
default) and the largest ``|onnx - torch|`` is printed per size; above ``tolerance`` × the logit
scale the file is deleted and the command exits with status 2. A JSON sidecar ``<output>.json``
records classes, input space, opset, the differences measured, the checkpoint and the git shas.
An existing file at either name that fcnlab-export did not write is never replaced (a manifest in
the folder lists its own, so the same command again replaces them), unless ``overwrite=true``.

Exporter: ``dynamo`` (``torch.export``, the default) traces sizes symbolically, so the skip fusions'
``min()`` over two cropped maps stays a computation on the input size. The older TorchScript
exporter (``exporter=torchscript``) evaluates that ``min()`` once at the example size and bakes the
winner into the graph: FCN-8s with the faithful geometry then fails at other sizes, which the check
catches. FCN-32s (no fusion) exports correctly with both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fcnlab.atomic import atomic_path, own_outputs, refuse_foreign, write_json
from fcnlab.data.classes import class_palette
from fcnlab.data.input_space import InputSpace
from fcnlab.errors import FCNLabError, one_line
from fcnlab.inference.inputs import normalize
from fcnlab.models.tta import graph_note
from fcnlab.runinfo import git_sha

FORMATS = ("onnx",)
EXPORTERS = ("dynamo", "torchscript")
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class LogitsGraph(nn.Module):
    """The FCN with its argument named ``image``, so the exported input is named after what it takes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


def output_path(ckpt: str, output: str | None) -> Path:
    """The .onnx path: ``output`` (a file, or a folder for ``<ckpt stem>.onnx``), else beside the ckpt."""
    source = Path(ckpt)
    if output in (None, "", "null"):
        target = source.with_suffix(".onnx")
    else:
        target = Path(str(output)).expanduser()
        if target.is_dir():
            target = target / f"{source.stem}.onnx"
    if target.resolve() == source.resolve():
        raise FCNLabError(f"output={output} is the checkpoint itself; give another file name")
    return target


def _check_options(cfg: DictConfig) -> tuple[str, list[tuple[int, int, int]]]:
    fmt = str(cfg.format).lower()
    if fmt not in FORMATS:
        raise FCNLabError(f"format={cfg.format} is not supported; supported: {', '.join(FORMATS)}")
    exporter = str(cfg.exporter).lower()
    if exporter not in EXPORTERS:
        raise FCNLabError(f"exporter={cfg.exporter}: unknown; use {' or '.join(EXPORTERS)}")
    if not float(cfg.tolerance) > 0:
        raise FCNLabError(f"tolerance={cfg.tolerance}: must be positive")
    sizes = []
    for size in OmegaConf.to_container(cfg.check_sizes) if cfg.check_sizes else []:
        valid = isinstance(size, list) and len(size) == 3
        if not (valid and all(isinstance(v, int) and v > 0 for v in size)):
            raise FCNLabError(f"check_sizes: {size} is not [batch, height, width] of positive integers")
        sizes.append(tuple(size))
    if not sizes:
        raise FCNLabError("check_sizes is empty; the export is only kept after onnxruntime agrees on them")
    return exporter, sizes


def _import_onnx(exporter: str) -> None:
    needed = ["onnx", "onnxruntime"] + (["onnxscript"] if exporter == "dynamo" else [])
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            raise FCNLabError(f"format=onnx needs the {name} package: pip install 'fcnlab[export]'") from None


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    # The exporter's passes log every rewrite at INFO, and Hydra's job logging shows INFO.
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def _runtime_failure(error: Exception) -> str:
    message = one_line(error)
    node = re.search(r"running (\w+ node\. Name:'[^']*')", message)
    return f"{node.group(1)} failed" if node else message[:160]


def export_onnx(model: nn.Module, path: Path, exporter: str, opset: int) -> int:
    """Write ``model`` as a self-contained ONNX file with dynamic batch, height and width; its opset."""
    # NCHW weights (the tiny net trains with NHWC ones): NHWC strides would pin the exported graph's
    # height and width to guards on the example's size instead of leaving them dynamic.
    graph = LogitsGraph(model.to(memory_format=torch.contiguous_format)).eval()
    example = torch.randn(2, 3, 64, 80)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_loggers():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {
                0: torch.export.Dim("batch", min=1),
                2: torch.export.Dim("height", min=1),
                3: torch.export.Dim("width", min=1),
            }
            program = torch.onnx.export(
                graph,
                (example,),
                None,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={INPUT_NAME: dims},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
            program.save(str(path), external_data=False)
            return max(o.version for o in program.model_proto.opset_import if not o.domain)
        else:
            axes = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(
                graph,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                opset_version=opset,
                dynamo=False,
            )
            return opset


def verify_onnx(
    model: nn.Module,
    path: Path,
    sizes: list[tuple[int, int, int]],
    tolerance: float,
    space: InputSpace,
    exporter: str,
) -> list[dict]:
    """Run the file with onnxruntime and PyTorch on random images of each size; raise on any disagreement."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # its own errors come back as exceptions, reported in one line below
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    checks = []
    for n, h, w in sizes:
        shape = f"{n}x3x{h}x{w}"
        pixels = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=generator)
        x = normalize(pixels, space)
        with torch.inference_mode():
            expected = model(x).numpy()
        try:
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        except Exception as e:
            raise FCNLabError(
                f"ONNX check at {shape}: onnxruntime cannot run the exported graph ({_runtime_failure(e)}); "
                f"exporter={exporter} fixed a size-dependent crop, use exporter=dynamo"
            ) from None
        if got.shape != expected.shape:
            raise FCNLabError(
                f"ONNX check at {shape}: output {got.shape} but PyTorch gives {expected.shape}; "
                f"exporter={exporter} fixed a size-dependent crop, use exporter=dynamo"
            )
        diff = float(np.abs(got - expected).max())
        scale = max(1.0, float(np.abs(expected).max()))
        agree = float((got.argmax(1) == expected.argmax(1)).mean())
        checks.append(
            {"shape": [n, 3, h, w], "max_abs_diff": diff, "logit_scale": scale, "argmax_agreement": agree}
        )
        print(
            f"onnx check {shape:>14}: max |onnx - torch| = {diff:.2e} "
            f"(logit scale {scale:.2f}, argmax agreement {100 * agree:.2f} %)",
            flush=True,
        )
        if not diff <= tolerance * scale:
            raise FCNLabError(
                f"ONNX check at {shape}: max |onnx - torch| = {diff:.3g} is over tolerance={tolerance} "
                f"x logit scale {scale:.3g}; the exported graph computes something else, not kept"
            )
    return checks


def check_writable(target: Path, probe: Path) -> None:
    """The export's folder exists (made if need be) and takes a new file: ``probe``, removed again."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FCNLabError(f"output={target}: cannot create its folder ({e.strerror})") from None
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise FCNLabError(
            f"output={target}: cannot write there ({e.strerror}); choose another output folder"
        ) from None


def export(cfg: DictConfig) -> dict:
    """Export ``cfg.ckpt``, verify it, keep the file and write its JSON sidecar (returned, with ``path``)."""
    from fcnlab.training import load_module

    exporter, sizes = _check_options(cfg)
    _import_onnx(exporter)
    target = output_path(str(cfg.ckpt), cfg.get("output"))
    check_writable(target, target.with_name(f".{target.name}.{os.getpid()}.probe"))  # before the slow part
    names = [target.name, target.name + ".json"]  # the model and its sidecar
    if not cfg.get("overwrite", False):
        what_to_do = "give another output=<file.onnx>, or overwrite=true to replace it"
        refuse_foreign([target.parent / n for n in names], "fcnlab-export", what_to_do)
    torch.set_flush_denormal(True)
    module = load_module(str(cfg.ckpt), name=cfg.get("model", {}).get("name"))
    model = module.model.eval()
    with own_outputs(target.parent, names, "fcnlab-export"):  # the same command again may replace them
        with atomic_path(target) as tmp:  # a failed export or check leaves no file
            try:
                opset = export_onnx(model, tmp, exporter, int(cfg.opset))
            except Exception as e:
                raise FCNLabError(
                    f"exporter={exporter} could not export {model.name}: {type(e).__name__}: "
                    f"{one_line(e)[:200]}"
                ) from None
            checks = verify_onnx(model, tmp, sizes, float(cfg.tolerance), module.input_space, exporter)
        sidecar = _sidecar(cfg, module, target, {"opset": opset, "exporter": exporter, "checks": checks})
        write_json(target.with_name(target.name + ".json"), sidecar)
    return {**sidecar, "path": str(target)}


def _sidecar(cfg: DictConfig, module, target: Path, export: dict) -> dict:
    """``<output>.json``: the graph's input and output, classes (names and ``[R, G, B]`` colours: the
    checkpoint's, else VOC's palette), the export's checks, shas and versions."""
    import onnx
    import onnxruntime

    model, space, hparams = module.model, module.input_space, module.hparams["model"]
    checks = export["checks"]
    return {
        "format": "onnx",
        "file": target.name,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, "height", "width"],
            "dtype": "float32",
            "input_space": space.name,
            "channel_order": space.channels,
            "scale": space.scale,
            "normalisation": space.describe(),
            "mean": list(space.mean),
            "std": list(space.std),
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch", model.num_classes, "height", "width"]},
        "inference": graph_note(),
        "model": model.name,
        "geometry": hparams.get("geometry"),
        "backbone": hparams.get("backbone"),
        "num_classes": model.num_classes,
        "class_names": list(module.class_names),
        "class_colors": class_palette(module.class_colors, model.num_classes)[: model.num_classes].tolist(),
        "opset": export["opset"],
        "exporter": export["exporter"],
        "tolerance": float(cfg.tolerance),
        "checks": checks,
        "max_abs_diff": max(c["max_abs_diff"] for c in checks),
        "source_ckpt": str(Path(str(cfg.ckpt)).resolve()),
        "train_git_sha": getattr(module, "train_git_sha", "unknown"),
        "export_git_sha": git_sha(),
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
