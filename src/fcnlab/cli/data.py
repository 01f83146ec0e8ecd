"""``fcnlab-data``: the data tools.

    fcnlab-data generate --root data/shapes [--sbd-train 1000 ...]   # the generated VOC/SBD stand-in
    fcnlab-data generate --layout folder data/my_shapes              # the same, in the folder layout
    fcnlab-data convert-voc SRC DST [--protocol seg11valid]          # a VOC/SBD tree -> folder layout
    fcnlab-data check data=folder data.root=DIR                      # every check, all problems listed
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

from fcnlab.config import compose_train_config
from fcnlab.data.check import run_check
from fcnlab.data.convert import convert_voc
from fcnlab.data.synthetic import SyntheticConfig, generate
from fcnlab.data.throughput import loader_images_per_s
from fcnlab.data.voc import PROTOCOLS
from fcnlab.errors import exit_on_user_error
from fcnlab.training.settings import build


def generate_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="fcnlab-data generate", description="write the generated dataset")
    parser.add_argument("out", nargs="?", help="output folder (created); or --root")
    parser.add_argument("--root", help="output folder (created)")
    parser.add_argument("--layout", choices=("voc", "folder"), default="voc", help="VOC/SBD tree or folder")
    for field, default in asdict(SyntheticConfig()).items():
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=default)
    parser.add_argument("--workers", type=int, default=None)
    args = vars(parser.parse_args(argv))
    root, out, workers, layout = args.pop("root"), args.pop("out"), args.pop("workers"), args.pop("layout")
    if (root is None) == (out is None):
        parser.error("give the output folder once: fcnlab-data generate [--layout folder] OUT")
    start = time.perf_counter()
    with exit_on_user_error(root or out):
        out = generate(root or out, SyntheticConfig(**args), workers, layout=layout)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB, {time.perf_counter() - start:.1f} s")


def convert_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="fcnlab-data convert-voc", description="write a VOC/SBD tree's protocol in the folder layout"
    )
    parser.add_argument("src", help="a data.root of data=voc_sbd (VOCdevkit/VOC2011, benchmark_RELEASE)")
    parser.add_argument("dst", help="new folder: images/{train,val}, masks/{train,val}, classes.txt")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="seg11valid")
    args = parser.parse_args(argv)
    with exit_on_user_error(args.dst):
        out = convert_voc(args.src, args.dst, args.protocol)
    n = {s: sum(1 for _ in (out / "images" / s).iterdir()) for s in ("train", "val")}
    print(f"{out}: {n['train']} train and {n['val']} val images; train with data=folder data.root={out}")


def check_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="fcnlab-data check",
        description="check a dataset's every file before training; lists all problems, exit 2 if any",
    )
    parser.add_argument("overrides", nargs="*", help="data overrides, e.g. data=folder data.root=DIR")
    parser.add_argument("--root", help="shorthand for data=folder data.root=ROOT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    overrides = (["data=folder", f"data.root={args.root}"] if args.root else []) + args.overrides
    with exit_on_user_error("the data (the check writes nothing)"):
        code = run_check(overrides, bar=not args.no_progress)
    sys.exit(code)


def throughput_main(overrides: list[str]) -> None:
    with exit_on_user_error("the data (the measurement writes nothing)"):
        cfg = compose_train_config(overrides)
        datamodule = build("data", cfg.data, _convert_="all")
        datamodule.prepare_data()
        datamodule.setup("fit")
        rate, seen = loader_images_per_s(datamodule)
    print(
        f"train loader: {rate:.0f} images/s ({seen} images, batch {cfg.data.batch_size}, "
        f"crop {cfg.data.crop_size}, {datamodule.num_workers} workers, {os.cpu_count()} cores)"
    )


COMMANDS = {
    "generate": generate_main,
    "convert-voc": convert_main,
    "check": check_main,
    "throughput": throughput_main,
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: fcnlab-data {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        sys.exit(2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
