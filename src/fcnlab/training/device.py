"""The job's device and float32 math, settled before any data is generated or any backbone pretrained.

A trainer that needs CUDA (``trainer=gpu``, ``ddp``, and the VOC presets) gets a usable device or one
line saying why not, naming a driver/CUDA mismatch when ``nvidia-smi`` sees a GPU that torch cannot
use; ``trainer=auto`` (the default) takes CUDA when it works and the CPU when the machine has no GPU,
but refuses a GPU it cannot use rather than training on the CPU without a word. ``trainer=cpu`` (or
``CUDA_VISIBLE_DEVICES=``) is how a run asks for the CPU.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess

import torch

from fcnlab.errors import FCNLabError

# float32_matmul_precision: highest = IEEE float32 everywhere; high = TF32 in matmuls and convolutions on
# CUDA (and oneDNN); medium = also bf16-based matmuls. Set for convolutions too: torch leaves cuDNN on TF32.
FLOAT32_PRECISIONS = ("highest", "high", "medium")
NEEDS_CUDA = ("gpu", "cuda")


def gpus_hidden() -> bool:
    """``CUDA_VISIBLE_DEVICES`` set to hide every GPU: the CPU was asked for."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() in ("", "-1")


def nvidia_smi() -> tuple[list[str], str | None, str | None]:
    """(GPU names, driver version, newest CUDA the driver runs) as ``nvidia-smi`` reports them."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], None, None
    try:
        listed = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30).stdout
        table = subprocess.run([exe], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return [], None, None
    names = re.findall(r"^GPU \d+: (.+?)(?: \(UUID: .*)?$", listed, re.MULTILINE)
    driver = re.search(r"Driver Version:\s*([\d.]+)", table)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", table)
    return names, driver and driver.group(1), cuda and cuda.group(1)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def why_no_cuda(smi: tuple[list[str], str | None, str | None]) -> str:
    """Why torch has no CUDA device here, and the fix, in a few words."""
    if gpus_hidden():
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU"
    names, driver, driver_cuda = smi
    built = torch.version.cuda
    if built is None:
        return f"this torch ({torch.__version__}) is built without CUDA; install a CUDA build of torch"
    if not names:
        return "this machine has no NVIDIA GPU (nvidia-smi lists none)"
    seen = f"nvidia-smi lists {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
    if driver and driver_cuda:
        seen += f" (driver {driver}, CUDA {driver_cuda})"
    if driver_cuda and _version(driver_cuda) < _version(built):
        return (
            f"{seen} but torch {torch.__version__} is built for CUDA {built}, newer than the driver runs; "
            f"update the NVIDIA driver, or install a torch built for CUDA {driver_cuda} or older"
        )
    try:
        torch.cuda.init()
        detail = "torch.cuda.init() raised nothing"
    except Exception as e:  # torch's own reason, whatever its type
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"{seen} but torch cannot use it ({detail[:200]})"


def require_device(accelerator: str | None, devices: object = None) -> None:
    """Refuse, in one line, a trainer whose device this machine cannot give (see the module doc)."""
    accelerator = str(accelerator or "auto").lower()
    if accelerator not in (*NEEDS_CUDA, "auto"):
        return  # cpu, or a device Lightning checks itself
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if isinstance(devices, int) and not isinstance(devices, bool) and devices > count:
            raise FCNLabError(
                f"trainer.devices={devices} but this machine has {count} usable GPU(s); "
                f"use trainer.devices={count} (or -1: all of them)"
            )
        return
    if accelerator == "gpu" and torch.backends.mps.is_available():
        return  # Apple's GPU: Lightning's "gpu" means it there
    smi = nvidia_smi()
    if accelerator == "auto" and (gpus_hidden() or not smi[0]):
        return  # no GPU on this machine (or hidden on purpose): auto means the CPU
    raise FCNLabError(
        f"trainer.accelerator={accelerator} but no CUDA device is usable: {why_no_cuda(smi)}; "
        "or train on the CPU with trainer=cpu"
    )


def set_float32_precision(value: str) -> None:
    """``float32_matmul_precision`` for this process: matmuls and cuDNN convolutions alike."""
    if value not in FLOAT32_PRECISIONS:
        raise FCNLabError(
            f"float32_matmul_precision={value}: use highest (IEEE float32), high (TF32 on CUDA) or medium"
        )
    torch.set_float32_matmul_precision(value)
    # The flag, not torch.backends.cudnn.conv.fp32_precision: once that newer setting is used, reading
    # the flag raises (torch 2.14), and torch.backends.cudnn.flags() (torch.export among others) reads it.
    torch.backends.cudnn.allow_tf32 = value != "highest"
    # Lightning suggests TF32 to every run left at "highest"; here that is a choice the config states.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_drop_tensor_core_advice)


def _drop_tensor_core_advice(record: logging.LogRecord) -> bool:
    return "set_float32_matmul_precision" not in record.getMessage()
