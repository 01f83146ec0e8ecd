"""``fcnlab-data``: the data tools.

    fcnlab-data generate --root data/shapes [--sbd-train 1000 ...]   # the generated VOC/SBD stand-in
    fcnlab-data throughput [train overrides]                          # images/s of the train loader

``throughput`` composes the same Hydra config as ``fcnlab-train`` (``data=shapes`` unless overridden),
so the number is for exactly the loader a training run gets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict

from hydra.utils import instantiate

from fcnlab.config import compose_train_config
from fcnlab.data.synthetic import SyntheticConfig, generate
from fcnlab.data.throughput import loader_images_per_s
from fcnlab.errors import exit_on_user_error


def generate_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="fcnlab-data generate", description="write the generated dataset")
    parser.add_argument("--root", required=True, help="output folder (created)")
    for field, default in asdict(SyntheticConfig()).items():
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=default)
    parser.add_argument("--workers", type=int, default=None)
    args = vars(parser.parse_args(argv))
    root, workers = args.pop("root"), args.pop("workers")
    start = time.perf_counter()
    with exit_on_user_error():
        out = generate(root, SyntheticConfig(**args), workers)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB, {time.perf_counter() - start:.1f} s")


def throughput_main(overrides: list[str]) -> None:
    with exit_on_user_error():
        cfg = compose_train_config(overrides)
        datamodule = instantiate(cfg.data, _convert_="all")
        datamodule.prepare_data()
        datamodule.setup("fit")
        rate, seen = loader_images_per_s(datamodule)
    print(
        f"train loader: {rate:.0f} images/s ({seen} images, batch {cfg.data.batch_size}, "
        f"crop {cfg.data.crop_size}, {datamodule.num_workers} workers, {os.cpu_count()} cores)"
    )


COMMANDS = {"generate": generate_main, "throughput": throughput_main}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: fcnlab-data {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        sys.exit(2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
