"""Training a discrete network from scratch: the DARTS evaluation recipe (spec D §1.7).

SGD with momentum, cosine LR per epoch to lr_min, gradient clipping, auxiliary head (weight 0.4), cutout, and drop
path ramped linearly from 0 (LHD: its maximum raised by the adaptive rule, ``adaptive_drop_path``). The reported
number is the final-epoch test accuracy — never a maximum over epochs on the test set. Where the recipe names one
(``report_best_after``, LHD), the reference's own metric — the best test accuracy over the later epochs, a number
selected on the test set (spec L §8 item 1) — is reported beside it, labelled. ``valid_images`` holds out training
images scored every epoch, the number to select architectures by. Resumable with identical results.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import TrainConfig, preset_caps
from .data import BatchStream, dataset_info, eval_batches, holdout, load_dataset, scaled_augment
from .data.own import is_own, record as own_record
from .errors import RobustDartsError, first_line
from .evalnet import EvalNetwork
from .memory import check_train
from .genotype import Genotype
from .runs import RunDir
from .schedules import cosine_lr
from .speed import given_threads, resolve_layout, threads_for


class Train:
    def __init__(self, cfg: TrainConfig, genotype: Genotype, out_dir: str | Path | None = None, *, console=None,
                 progress: bool = True, _resuming: bool = False):
        cfg = resolve_layout(cfg)  # "auto" speed fields chosen for this device and recorded so (speed.py)
        self.cfg, self.genotype, self.console, self.show_progress = cfg, genotype, console, progress
        if cfg.adaptive_drop_path is not None and len(cfg.adaptive_drop_path) != 5:
            raise RobustDartsError(f"adaptive_drop_path needs 5 numbers (last early epoch, early train-accuracy "
                                   f"threshold, early step, late threshold, late step), got {cfg.adaptive_drop_path}.")
        self.device = torch.device(cfg.device)
        self.run_dir = RunDir(out_dir) if out_dir is not None else None
        if self.run_dir is not None and not _resuming:
            self.run_dir.check_new()  # before loading data, not after
        check_train(cfg, genotype)  # refuse what cannot fit before allocating any of it
        torch.manual_seed(cfg.seed)
        info = dataset_info(cfg.dataset)
        self.train_set = load_dataset(cfg.dataset, "train", cfg.data_dir, image_size=cfg.image_size,
                                      limit=cfg.limit_images, seed=cfg.seed, skip_bad_images=cfg.skip_bad_images,
                                      cap=preset_caps(cfg, "limit_images"))
        self.valid_set = None
        if cfg.valid_images:
            self.train_set, self.valid_set = holdout(self.train_set, cfg.valid_images, cfg.seed)
            self.valid_set = self.valid_set.to(self.device)
        self.test_set = load_dataset(cfg.dataset, "test", cfg.data_dir, image_size=cfg.image_size,
                                     limit=cfg.limit_test, seed=cfg.seed, skip_bad_images=cfg.skip_bad_images,
                                     cap=preset_caps(cfg, "limit_test")).to(self.device)
        if is_own(cfg.dataset) and self.run_dir is not None and _resuming:
            own_record(self.run_dir.path, cfg.dataset, resuming=True)  # the same data as the checkpoint's
        # Threads from the work's size (speed.py), set before environment.json records the count.
        self.threads = threads_for(cfg, self.train_set.size, given_threads())
        torch.set_num_threads(self.threads)
        self.augment = scaled_augment(self.train_set.mean, self.train_set.std, self.train_set.size, cfg.augment,
                                      cfg.cutout)
        self.stream = BatchStream(self.train_set, cfg.batch_size, self.augment, cfg.seed, self.device)
        self.net = EvalNetwork(genotype, cfg.init_channels, cfg.layers, info.num_classes, self.train_set.channels,
                               auxiliary=cfg.auxiliary, macro=cfg.macro).to(self.device)
        self.net.configure(cfg.channels_last, cfg.fast_depthwise)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.epoch, self.wall = 0, 0.0
        self.drop_max = cfg.drop_path  # the drop-path maximum of the linear ramp (LHD's adaptive rule raises it)
        self.best_late: float | None = None  # best test accuracy after epoch report_best_after (reference metric)
        if self.run_dir is not None and not _resuming:
            self.run_dir.create(cfg)
            genotype.save(self.run_dir.genotype_path)
            if is_own(cfg.dataset):
                own_record(self.run_dir.path, cfg.dataset)  # classes and their indices, held-out test images
        self._resumed = _resuming  # run() records the session's environment once it continues the run

    @classmethod
    def resume(cls, out_dir, **kwargs) -> "Train":
        """Every file of the run is read and checked before anything is written; then the directory is locked,
        temp files of a killed write are removed and metrics past the checkpoint dropped."""
        run = RunDir(out_dir)
        cfg = run.load_config(TrainConfig)
        state = run.load_checkpoint(kind="train")
        run.check_agrees(state, run.read_metrics())
        train = cls(cfg, Genotype.load(run.genotype_path), out_dir, _resuming=True, **kwargs)
        try:
            train.net.load_state_dict(state["net"])
            train.opt.load_state_dict(state["opt"])
            train.stream.load_state_dict(state["stream"])
            torch.set_rng_state(state["rng"])
            train.epoch, train.wall = int(state["epoch"]), float(state["wall"])
            train.drop_max = float(state.get("drop_max", cfg.drop_path))
            best = state.get("best_late")
            train.best_late = None if best is None else float(best)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
            detail = first_line(e)
            raise RobustDartsError(f"{run.checkpoint_path} does not match the run's config.yaml ({detail}); "
                                   f"restore both from a copy or start a new run.") from None
        run.lock("train")
        run.remove_temp_files()
        run.truncate_metrics(train.epoch)
        return train

    def train_epoch(self, progress=None, task=None) -> dict:
        cfg = self.cfg
        lr = cosine_lr(self.epoch, cfg.lr, cfg.lr_min, cfg.epochs)
        for g in self.opt.param_groups:
            g["lr"] = lr
        drop_prob = self.drop_max * self.epoch / cfg.epochs
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
            kept = (f"the last good checkpoint (after epoch {self.epoch - 1}) is kept in {self.run_dir.path}"
                    if self.run_dir is not None and self.epoch > 0 else "no checkpoint was written")
            raise RobustDartsError(f"the training loss became NaN or inf at epoch {self.epoch}, step {int(first_bad)}; "
                                   f"{kept}; lower the learning rate or check the data.")
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
        from .progressbar import progress_bar

        cfg = self.cfg
        steps = self.stream.steps_per_epoch
        record: dict = {}
        if self._resumed and self.epoch < cfg.epochs and self.run_dir is not None:
            self.run_dir.record_resume(cfg.device)  # warns when the numerics changed since the run started
        self._resumed = False
        progress = progress_bar(self.console, self.show_progress)  # a terminal only: no last frame in a log
        with progress:
            task = progress.add_task("train", total=(cfg.epochs - self.epoch) * steps)
            while self.epoch < cfg.epochs:
                t0 = time.perf_counter()
                record = {"epoch": self.epoch, **self.train_epoch(progress, task), **self.test()}
                self.after_epoch(record)
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
                                                  "rng": torch.get_rng_state(), "wall": self.wall,
                                                  "drop_max": self.drop_max, "best_late": self.best_late})
                if stop_after is not None and self.epoch > stop_after:
                    break
        if not record and self.run_dir is not None:
            records = self.run_dir.read_metrics()
            record = records[-1] if records else {}
        return self.summary(record)

    def after_epoch(self, record: dict) -> None:
        """LHD's per-epoch rules: the reference metric's running best, and the adaptive drop-path maximum
        (eval/cifar100|svhn/train.py: the train accuracy of this epoch decides the next epochs' maximum)."""
        cfg = self.cfg
        if cfg.report_best_after is not None and self.epoch > cfg.report_best_after:
            self.best_late = max(self.best_late or 0.0, record["test_acc"])
        if cfg.adaptive_drop_path:
            until, early_acc, early_step, late_acc, late_step = cfg.adaptive_drop_path
            if self.epoch <= until:
                self.drop_max += early_step if record["train_acc"] > early_acc else 0.0
            else:
                self.drop_max += late_step if record["train_acc"] > late_acc else 0.0
            record["drop_path_max"] = self.drop_max

    def summary(self, last: dict) -> dict:
        valid = {"final_valid_acc": last.get("valid_acc")} if self.valid_set is not None else {}
        reference = {}
        if self.cfg.report_best_after is not None:
            reference = {"reference_best_test_acc": self.best_late,
                         "reference_metric": f"best test accuracy over epochs > {self.cfg.report_best_after} (the "
                                             f"reference's logged number; chosen on the test set, not for selection)"}
        return {"final_test_acc": last.get("test_acc"), **valid, **reference, "epochs": self.epoch,
                "params": self.net.num_parameters(), "params_with_aux": self.net.num_parameters(with_aux=True),
                "wall_seconds": self.wall}
