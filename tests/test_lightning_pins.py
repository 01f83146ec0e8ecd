"""The private Lightning names fcnlab relies on still exist and behave as relied upon.

Each is pinned to the Lightning range pyproject allows; a Lightning that renames or reworks one
fails here, naming it, before a run silently loses what it gave (atomic checkpoints, the last good
checkpoint in the NaN message, DDP rank commands under Hydra, a quiet wandb start).
"""

from __future__ import annotations

import inspect

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies.launchers import subprocess_script
from torch.utils.data import DataLoader, TensorDataset

from fcnlab.training.callbacks import AtomicModelCheckpoint


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_model_checkpoint_save_hook_and_its_record_of_the_last_save(tmp_path):
    assert list(inspect.signature(ModelCheckpoint._save_checkpoint).parameters) == [
        "self",
        "trainer",
        "filepath",
    ]
    callback = AtomicModelCheckpoint(
        dirpath=tmp_path, filename="last", monitor=None, enable_version_counter=False
    )
    assert (callback._last_global_step_saved, callback._last_checkpoint_saved) == (0, "")
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    written = []
    save = trainer.save_checkpoint
    trainer.save_checkpoint = lambda path, weights_only=False: (
        written.append(path),
        save(path, weights_only),
    )
    trainer.fit(_Tiny(), DataLoader(TensorDataset(torch.zeros(3, 2)), batch_size=1))
    # Lightning saved through our hook (a .partial renamed into place) and recorded the final name.
    assert written == [f"{tmp_path / 'last.ckpt'}.partial"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert (callback._last_global_step_saved, callback._last_checkpoint_saved) == (
        3,
        str(tmp_path / "last.ckpt"),
    )


def test_ddp_launcher_takes_its_rank_command_from_the_module_global():
    launcher = subprocess_script._SubprocessScriptLauncher._call_children_scripts
    assert callable(subprocess_script._hydra_subprocess_cmd)
    assert "_hydra_subprocess_cmd" in launcher.__code__.co_names  # looked up at call time: patchable


def test_wandb_logger_keeps_its_init_arguments_in_a_dict(tmp_path):
    logger = WandbLogger(offline=True, save_dir=str(tmp_path))
    assert isinstance(logger._wandb_init, dict) and "anonymous" in logger._wandb_init
