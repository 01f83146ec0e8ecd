"""``fcnlab-export ckpt=<checkpoint> [format=onnx] [output=<file.onnx or folder>]``: a verified ONNX model.

The file is checked against PyTorch with onnxruntime at several sizes before it is kept; a JSON
sidecar says what input it expects (:mod:`fcnlab.inference.export`).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fcnlab.config import CONF_DIR
from fcnlab.errors import exit_on_user_error
from fcnlab.inference.export import export


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(cfg.get("output") or "the checkpoint's folder"):
        result = export(cfg)
    print(
        f"exported {result['model']} to {result['path']} (opset {result['opset']}, {result['exporter']}); "
        f"max |onnx - torch| {result['max_abs_diff']:.1e} on {len(result['checks'])} sizes; "
        f"sidecar {result['path']}.json"
    )


if __name__ == "__main__":
    main()
