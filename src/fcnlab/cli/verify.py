"""``fcnlab-verify --voc /data/voc`` (``make verify-voc VOC=/data/voc``): check your data first.

Evaluates, with ``fcnlab-eval`` on seg11valid, whichever of the reference release's trained nets
(torchfcn's converted files: ``fcn32s_from_caffe.pth``, ``fcn16s_from_caffe.pth``,
``fcn8s_from_caffe.pth``, ``fcn8s-atonce_from_caffe.pth``) lie in ``--weights`` (default
``$TORCH_HOME/hub/checkpoints``), and prints one line per net: its four metrics next to the ones the
release's nets score on the official seg11valid. A VOC2011 + SBD tree that reproduces them is read
the way the reference reads it; one that does not is worth fixing before any training.

Exit status: 0 when every net found is within ``--tolerance`` points of its expected metrics,
1 when one differs or its evaluation failed, 2 when no net file was found (one line says where to
put them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from fcnlab.models.weights import TORCHFCN_FILES, hub_checkpoints_dir

METRICS = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")
# The release's Caffe nets on seg11valid (736 images), evaluated after conversion by torchfcn's author
# (wkentaro/fcn README, "Original" rows; torchfcn's README lists the same mean IUs to 0.01).
EXPECTED = {
    "fcn32s": (90.4810, 76.4824, 63.6261, 83.4580),
    "fcn16s": (90.9971, 78.0710, 65.0050, 84.2614),
    "fcn8s": (91.2212, 77.6146, 65.5126, 84.5445),
    "fcn8s_atonce": (91.1288, 78.4979, 65.3998, 84.4326),
}


def find_nets(folder: Path) -> list[tuple[str, Path]]:
    """(variant, file) for each release net present in ``folder``, in 32s, 16s, 8s, at-once order."""
    return [(v, folder / name) for v, name in TORCHFCN_FILES.items() if (folder / name).is_file()]


def evaluate_net(variant: str, path: Path, voc: str, out: Path, extra: list[str]) -> dict:
    """Run ``fcnlab-eval`` on one net (its own process: a VGG16 at a time); its eval.json, or an error."""
    run_dir = out / variant
    cmd = [
        sys.executable,
        "-m",
        "fcnlab.cli.eval",
        f"ckpt={path}",
        "data=voc_sbd",
        f"data.root={voc}",
        f"model.name={variant}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result_file = run_dir / "eval.json"
    if proc.returncode != 0 or not result_file.is_file():
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"fcnlab-eval exited with status {proc.returncode}"}
    return json.loads(result_file.read_text())


def report_line(variant: str, path: Path, result: dict, tolerance: float) -> tuple[str, bool]:
    """One line: the four metrics (%) next to the expected ones, and whether they agree."""
    if "error" in result:
        return f"{variant:<13} {path.name}: evaluation failed: {result['error']}", False
    got = [100 * float(result["metrics"][k]) for k in METRICS]
    expected = EXPECTED[variant]
    ok = all(abs(g - e) <= tolerance for g, e in zip(got, expected, strict=True))
    pairs = ", ".join(
        f"{k} {g:.2f} (expected {e:.2f})" for k, g, e in zip(METRICS, got, expected, strict=True)
    )
    verdict = "matches" if ok else f"DIFFERS by more than {tolerance:g} points: check the data"
    return f"{variant:<13} {path.name}: {pairs}: {verdict}", ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fcnlab-verify", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--voc", required=True, help="data.root: holds VOCdevkit/VOC2011 and benchmark_RELEASE"
    )
    parser.add_argument(
        "--weights", default=None, help="folder of the release nets (default: torch's hub cache)"
    )
    parser.add_argument("--out", default=None, help="folder for the eval runs (default: a temporary one)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="allowed difference, in points")
    parser.add_argument("overrides", nargs="*", help="extra fcnlab-eval overrides, e.g. trainer=gpu")
    args = parser.parse_args(argv)
    folder = Path(args.weights).expanduser() if args.weights else hub_checkpoints_dir()
    nets = find_nets(folder)
    if not nets:
        print(
            f"error: no release net in {folder}; put torchfcn's {', '.join(TORCHFCN_FILES.values())} "
            "there (the reference release's Caffe nets converted by github.com/wkentaro/pytorch-fcn) "
            "or pass WEIGHTS=/folder/with/them",
            file=sys.stderr,
        )
        return 2
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="fcnlab_verify_") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for variant, path in nets:
            line, ok = report_line(variant, path, evaluate_net(variant, path, args.voc, out, args.overrides),
                                   args.tolerance)  # fmt: skip
            print(line, flush=True)
            all_ok = all_ok and ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
