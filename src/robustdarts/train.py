"""Training a discrete network from scratch: the DARTS evaluation recipe (spec D §1.7).

SGD with momentum, cosine LR per epoch to lr_min, gradient clipping, auxiliary head (weight 0.4), cutout, and drop
path ramped linearly from 0. The reported number is the final-epoch test accuracy — never a maximum over epochs
on the test set (the LHD reference's protocol, spec L §8 item 1). ``valid_images`` holds out training images scored
every epoch, the number to select architectures by. Resumable with identical results.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import BatchStream, dataset_info, eval_batches, holdout, load_dataset, scaled_augment
from .errors import RobustDartsError
from .evalnet import EvalNetwork
from .genotype import Genotype
from .runs import RunDir
from .schedules import cosine_lr


class Train:
    def __init__(self, cfg: TrainConfig, genotype: Genotype, out_dir: str | Path | None = None, *, console=None,
                 progress: bool = True, _resuming: bool = False):
        self.cfg, self.genotype, self.console, self.show_progress = cfg, genotype, console, progress
        self.device = torch.device(cfg.device)
        self.run_dir = RunDir(out_dir) if out_dir is not None else None
        torch.manual_seed(cfg.seed)
        info = dataset_info(cfg.dataset)
        self.train_set = load_dataset(cfg.dataset, "train", cfg.data_dir, image_size=cfg.image_size,
                                      limit=cfg.limit_images, seed=cfg.seed)
        self.valid_set = None
        if cfg.valid_images:
            self.train_set, self.valid_set = holdout(self.train_set, cfg.valid_images, cfg.seed)
            self.valid_set = self.valid_set.to(self.device)
        self.test_set = load_dataset(cfg.dataset, "test", cfg.data_dir, image_size=cfg.image_size,
                                     limit=cfg.limit_test, seed=cfg.seed).to(self.device)
        self.augment = scaled_augment(self.train_set.mean, self.train_set.std, self.train_set.size, cfg.augment,
                                      cfg.cutout)
        self.stream = BatchStream(self.train_set, cfg.batch_size, self.augment, cfg.seed, self.device)
        self.net = EvalNetwork(genotype, cfg.init_channels, cfg.layers, info.num_classes, self.train_set.channels,
                               auxiliary=cfg.auxiliary, macro=cfg.macro).to(self.device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.epoch, self.wall = 0, 0.0
        if self.run_dir is not None and not _resuming:
            self.run_dir.create(cfg)
            genotype.save(self.run_dir.genotype_path)

    @classmethod
    def resume(cls, out_dir, **kwargs) -> "Train":
        run = RunDir(out_dir)
        cfg = run.load_config(TrainConfig)
        train = cls(cfg, Genotype.load(run.genotype_path), out_dir, _resuming=True, **kwargs)
        state = run.load_checkpoint()
        try:
            train.net.load_state_dict(state["net"])
            train.opt.load_state_dict(state["opt"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise RobustDartsError(f"the checkpoint in {out_dir} does not match its config ({str(e)[:120]}); "
                                   f"start a new run.") from None
        train.stream.load_state_dict(state["stream"])
        torch.set_rng_state(state["rng"])
        train.epoch, train.wall = int(state["epoch"]), float(state["wall"])
        run.truncate_metrics(train.epoch)
        return train

    def train_epoch(self, progress=None, task=None) -> dict:
        cfg = self.cfg
        lr = cosine_lr(self.epoch, cfg.lr, cfg.lr_min, cfg.epochs)
        for g in self.opt.param_groups:
            g["lr"] = lr
        drop_prob = cfg.drop_path * self.epoch / cfg.epochs
        self.net.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        seen = 0
        for step in range(self.stream.steps_per_epoch):
            x, y = next(self.stream)
            self.opt.zero_grad(set_to_none=True)
            logits, aux = self.net(x, drop_prob)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if aux is not None:
                loss = loss + cfg.auxiliary_weight * F.cross_entropy(aux, y, label_smoothing=cfg.label_smoothing)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            self.opt.step()
            bad = ~torch.isfinite(loss.detach())
            first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
            loss_sum += torch.where(bad, torch.zeros_like(loss), loss.detach()) * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if progress is not None:
                progress.advance(task)
        if int(first_bad) >= 0:
            raise RobustDartsError(f"the training loss became NaN or inf at epoch {self.epoch}, step {int(first_bad)}; "
                                   f"the last good checkpoint is kept; lower the learning rate or check the data.")
        return {"lr": lr, "drop_prob": drop_prob, "train_loss": float(loss_sum) / seen,
                "train_acc": float(correct) / seen}

    def test(self) -> dict:
        """Test accuracy and loss, and the same on the held-out validation images when there are any."""
        result = {f"test_{k}": v for k, v in self.evaluate(self.test_set).items()}
        if self.valid_set is not None:
            result.update({f"valid_{k}": v for k, v in self.evaluate(self.valid_set).items()})
        return result

    @torch.no_grad()
    def evaluate(self, images) -> dict:
        self.net.eval()
        total, correct, n = 0.0, 0, 0
        for x, y in eval_batches(images, 256, self.device):
            logits, _ = self.net(x)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        return {"loss": total / n, "acc": correct / n}

    def run(self, stop_after: int | None = None) -> dict:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cfg = self.cfg
        steps = self.stream.steps_per_epoch
        record: dict = {}
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                            disable=not self.show_progress)
        with progress:
            task = progress.add_task("train", total=(cfg.epochs - self.epoch) * steps)
            while self.epoch < cfg.epochs:
                t0 = time.perf_counter()
                record = {"epoch": self.epoch, **self.train_epoch(progress, task), **self.test()}
                record["epoch_seconds"] = time.perf_counter() - t0
                self.wall += record["epoch_seconds"]
                record["wall_seconds"] = self.wall
                self.epoch += 1
                if self.console is not None and self.show_progress:
                    valid = f"valid {100 * record['valid_acc']:.2f}%  " if "valid_acc" in record else ""
                    self.console.print(f"epoch {record['epoch']:3d}  train {record['train_loss']:.3f}/"
                                       f"{100 * record['train_acc']:.1f}%  {valid}"
                                       f"test {100 * record['test_acc']:.2f}%  {record['epoch_seconds']:.1f}s")
                if self.run_dir is not None:
                    self.run_dir.append_metrics(record)
                    self.run_dir.save_checkpoint({"epoch": self.epoch, "net": self.net.state_dict(),
                                                  "opt": self.opt.state_dict(), "stream": self.stream.state_dict(),
                                                  "rng": torch.get_rng_state(), "wall": self.wall})
                if stop_after is not None and self.epoch > stop_after:
                    break
        if not record and self.run_dir is not None:
            records = self.run_dir.read_metrics()
            record = records[-1] if records else {}
        return self.summary(record)

    def summary(self, last: dict) -> dict:
        valid = {"final_valid_acc": last.get("valid_acc")} if self.valid_set is not None else {}
        return {"final_test_acc": last.get("test_acc"), **valid, "epochs": self.epoch,
                "params": self.net.num_parameters(), "params_with_aux": self.net.num_parameters(with_aux=True),
                "wall_seconds": self.wall}
