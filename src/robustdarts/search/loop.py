"""The bilevel search loop: one obvious path, changed by a method only through its hooks (methods/base.py).

Each step: draw a train and a val batch from persistent cycling streams; α step on the val batch (first order,
second order or mixed level); weight step on the train batch with clipped gradients. Each epoch: evaluate the
supernet, derive the genotype, log metrics and diagnostics, archive α/β, checkpoint atomically. A run resumed
from its directory gives exactly the α and genotype of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..archparams import ArchParams
from ..config import SearchConfig
from ..data import BatchStream, scaled_augment, dataset_info, eval_batches, load_dataset, search_split
from ..discretize import derive
from ..errors import RobustDartsError
from ..genotype import Genotype
from ..methods import get_method
from ..runs import RunDir
from ..schedules import cosine_lr
from ..spaces import get_space
from ..supernet import Supernet, count_parameters
from . import architect


def mean_entropy(weights: torch.Tensor) -> float:
    """Mean over edges of the entropy (nats) of each edge's mixing distribution."""
    p = weights.clamp_min(1e-12)
    return float(-(p * p.log()).sum(-1).mean())


class Search:
    """A search run. ``Search(cfg, out_dir).run()``; ``Search.resume(out_dir).run()`` continues one."""

    def __init__(self, cfg: SearchConfig, out_dir: str | Path | None = None, *, console=None, progress: bool = True,
                 _resuming: bool = False):
        self.cfg, self.console, self.show_progress = cfg, console, progress
        self.space = get_space(cfg.space)
        self.method = get_method(cfg.method)(cfg, self.space)
        if cfg.arch_order not in ("first", "second", "mixed", "none"):
            raise RobustDartsError(f"unknown arch_order {cfg.arch_order!r}; choose one of: first, second, mixed, none.")
        self.device = torch.device(cfg.device)
        self.run_dir = RunDir(out_dir) if out_dir is not None else None
        torch.manual_seed(cfg.seed)

        info = dataset_info(cfg.dataset)
        data = load_dataset(cfg.dataset, "train", cfg.data_dir, image_size=cfg.image_size, limit=cfg.limit_images,
                            seed=cfg.seed)
        self.train_set, self.val_set = search_split(data, cfg.train_portion, cfg.seed, cfg.ordered_split)
        self.augment = scaled_augment(data.mean, data.std, data.size, cfg.augment, cfg.cutout)
        self.train_stream = BatchStream(self.train_set, cfg.batch_size, self.augment, cfg.seed, self.device)
        self.val_stream = BatchStream(self.val_set, cfg.batch_size, self.augment, cfg.seed + 1, self.device)

        self.supernet = Supernet(self.space, cfg.init_channels, cfg.layers, info.num_classes, data.channels,
                                 aux_skip=getattr(self.method, "uses_aux_skip", False)).to(self.device)
        self.arch = ArchParams(self.space, generator=torch.Generator().manual_seed(cfg.seed)).to(self.device)
        self.w_opt = torch.optim.SGD(self.supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                     weight_decay=cfg.weight_decay)
        self.a_opt = self.method.make_arch_optimizer(self) if hasattr(self.method, "make_arch_optimizer") else \
            torch.optim.Adam(self.arch.parameters(), lr=cfg.arch_lr, betas=(cfg.arch_beta1, cfg.arch_beta2),
                             weight_decay=cfg.arch_weight_decay)
        self.epoch, self.step = 0, 0
        self.archive: dict[int, dict[str, torch.Tensor]] = {}
        self.genotype = None
        self.wall_offset = 0.0  # seconds of earlier sessions of this run
        if hasattr(self.method, "setup"):
            self.method.setup(self)
        if self.run_dir is not None and not _resuming:
            self.run_dir.create(cfg)

    # --- construction from a run directory ------------------------------------------------------------------------
    @classmethod
    def resume(cls, out_dir: str | Path, **kwargs) -> "Search":
        run = RunDir(out_dir)
        cfg = run.load_config(SearchConfig)
        state = run.load_checkpoint()
        search = cls(cfg, out_dir, _resuming=True, **kwargs)
        search.load_state(state)
        search.archive, _ = run.load_archive()
        search.archive = {e: a for e, a in search.archive.items() if e < search.epoch}
        run.truncate_metrics(search.epoch)
        if search.epoch > 0 and run.genotype_path.exists():
            # The genotype recorded with the checkpoint's epoch: what run() returns at once for a finished run.
            search.genotype = Genotype.load(run.genotype_path)
        return search

    def state(self) -> dict:
        return {
            "epoch": self.epoch, "supernet": self.supernet.state_dict(), "arch": self.arch.state_dict(),
            "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
            "train_stream": self.train_stream.state_dict(), "val_stream": self.val_stream.state_dict(),
            "rng": torch.get_rng_state(), "method": self.method.state_dict(), "wall": self.wall_offset,
            "weight_decay": self.w_opt.param_groups[0]["weight_decay"],
        }

    def load_state(self, state: dict) -> None:
        try:
            self.supernet.load_state_dict(state["supernet"])
            self.arch.load_state_dict(state["arch"])
            self.w_opt.load_state_dict(state["w_opt"])
            self.a_opt.load_state_dict(state["a_opt"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise RobustDartsError(f"the checkpoint does not match this run's configuration "
                                   f"({str(e).splitlines()[0][:120]}); resume with the run's own config.yaml.") from None
        self.train_stream.load_state_dict(state["train_stream"])
        self.val_stream.load_state_dict(state["val_stream"])
        torch.set_rng_state(state["rng"])
        self.method.load_state_dict(state["method"])
        self.epoch, self.wall_offset = int(state["epoch"]), float(state["wall"])
        for g in self.w_opt.param_groups:
            g["weight_decay"] = float(state["weight_decay"])

    # --- the pieces a method uses ---------------------------------------------------------------------------------
    def forward(self, x, weights):
        return self.supernet(x, weights, drop_prob=self.method.drop_prob(self),
                             aux_skip_scale=self.method.aux_skip_scale(self))

    @property
    def arch_params(self) -> list[torch.Tensor]:
        return list(self.arch.parameters())

    @property
    def weight_decay(self) -> float:
        return self.w_opt.param_groups[0]["weight_decay"]

    def set_weight_decay(self, value: float) -> None:
        for g in self.w_opt.param_groups:
            g["weight_decay"] = value

    def lr_at(self, epoch: int) -> float:
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            return cfg.lr
        if cfg.lr_schedule == "cosine":
            return cosine_lr(epoch, cfg.lr, cfg.lr_min, cfg.epochs)
        raise RobustDartsError(f"unknown lr_schedule {cfg.lr_schedule!r}; choose one of: constant, cosine.")

    # --- one step -----------------------------------------------------------------------------------------------
    def arch_step(self, x_train, y_train, x_val, y_val, lr: float) -> None:
        order = self.cfg.arch_order
        if order == "none":
            return
        self.a_opt.zero_grad(set_to_none=True)
        weights_fn = lambda: self.method.arch_weights(self, self.step)  # noqa: E731
        if order == "first":
            architect.first_order(self.forward, self.arch_params, weights_fn, x_val, y_val,
                                  extra_loss=lambda: self.method.arch_loss_extra(self) or 0.0)
        elif order == "mixed":
            architect.mixed_level(self.forward, self.arch_params, weights_fn, x_train, y_train, x_val, y_val,
                                  lam=self.method.opts.get("mixed_lambda", 1.0))
        else:
            buffers = [self.w_opt.state.get(p, {}).get("momentum_buffer") for p in self.supernet.parameters()]
            architect.unrolled(self.supernet, self.arch_params, weights_fn, x_train, y_train, x_val, y_val, lr=lr,
                               momentum=self.cfg.momentum, weight_decay=self.weight_decay, momentum_buffers=buffers,
                               forward_kwargs={"drop_prob": self.method.drop_prob(self),
                                               "aux_skip_scale": self.method.aux_skip_scale(self)})
        self.a_opt.step()

    def weight_step(self, x, y):
        self.w_opt.zero_grad(set_to_none=True)
        loss, logits = self.method.weight_backward(self, x, y, self.method.weight_weights(self, self.step))
        torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.cfg.grad_clip)
        self.w_opt.step()
        return loss, logits

    # --- one epoch ----------------------------------------------------------------------------------------------
    def train_epoch(self, progress=None, task=None) -> dict:
        cfg, lr = self.cfg, self.lr_at(self.epoch)
        for g in self.w_opt.param_groups:
            g["lr"] = lr
        self.augment.cutout_prob = self.method.cutout_prob(self) if cfg.cutout > 0 else 1.0
        self.method.begin_epoch(self)
        self.supernet.train()
        steps = self.train_stream.steps_per_epoch
        # Accumulated as tensors: no host sync inside the step loop.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        train_weights = getattr(self.method, "train_weights", True)
        for step in range(steps):
            self.step = step
            x, y = next(self.train_stream)
            if cfg.arch_order != "none":
                xv, yv = next(self.val_stream)
                self.arch_step(x, y, xv, yv, lr)
            if train_weights:
                loss, logits = self.weight_step(x, y)
                bad = ~torch.isfinite(loss)
                first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
                loss_sum += torch.where(bad, torch.zeros_like(loss), loss) * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
            if progress is not None:
                progress.advance(task)
        bad_step = int(first_bad)
        if bad_step >= 0:
            kept = f"the last good checkpoint (after epoch {self.epoch - 1}) is kept in {self.run_dir.path}" \
                if self.run_dir is not None and self.epoch > 0 else "no checkpoint was written"
            raise RobustDartsError(f"the training loss became NaN or inf at epoch {self.epoch}, step {bad_step}; "
                                   f"{kept}; lower the learning rate or check the data.")
        return {"lr": lr, "train_loss": float(loss_sum) / max(seen, 1), "train_acc": float(correct) / max(seen, 1)}

    @torch.no_grad()
    def evaluate(self, weights=None, images=None) -> dict:
        """Supernet loss/accuracy on the val half with the relaxed weights (eval-mode BN, as DARTS' infer)."""
        weights = weights if weights is not None else self.method.eval_weights(self)
        self.supernet.eval()
        total, correct, n = 0.0, 0, 0
        for x, y in eval_batches(images or self.val_set, 256, self.device):
            logits = self.supernet(x, weights)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        self.supernet.train()
        return {"val_loss": total / n, "val_acc": correct / n}

    def derive(self):
        return derive(self.space, self.method.derive_weights(self))

    def diagnostics(self, record: dict) -> None:
        """Per-epoch architecture statistics, eigenvalue and leakage measurements."""
        weights = self.method.derive_weights(self)
        for c in self.space.cell_types:
            record[f"entropy_{c}"] = mean_entropy(weights[c])
        g = self.genotype
        record["skip_normal"] = sum(1 for gene in g.normal if gene[0] == "skip_connect")
        cfg = self.cfg
        if cfg.hessian_every and (self.epoch % cfg.hessian_every == 0 or self.epoch == cfg.epochs - 1):
            from ..analysis.hessian import arch_hessian
            stream = BatchStream(self.val_set, cfg.batch_size, self.augment, cfg.seed * 1000 + self.epoch, self.device)
            batches = [next(stream) for _ in range(cfg.hessian_batches)]
            rng = torch.get_rng_state()  # the measurement must not shift the run's random stream
            h = arch_hessian(self.supernet, self.arch, batches, tau=self.method.tau(self, 0), bn_mode=cfg.hessian_bn_mode,
                             arch_weight_decay=cfg.arch_weight_decay)
            torch.set_rng_state(rng)
            record["eigenvalue"] = float(h["eigenvalue"])
        if cfg.leakage_every and self.epoch % cfg.leakage_every == 0:
            try:
                from ..analysis.leakage import leakage_metrics
            except ImportError:
                return
            rng = torch.get_rng_state()
            record.update(leakage_metrics(self, weights, g))
            torch.set_rng_state(rng)

    # --- the run ------------------------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None):
        """Search to the configured last epoch (or stop after epoch ``stop_after``, to test resumption)."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cfg = self.cfg
        steps = self.train_stream.steps_per_epoch
        if self.run_dir is not None and self.epoch == 0 and not self.archive:
            self.archive[-1] = self.arch.as_dict()  # the initial α, for derive --epoch -1
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                            disable=not self.show_progress, transient=False)
        with progress:
            task = progress.add_task(f"search {cfg.method} on {cfg.space}", total=(cfg.epochs - self.epoch) * steps)
            while self.epoch < cfg.epochs:
                t0 = time.perf_counter()
                record = {"epoch": self.epoch}
                record.update(self.train_epoch(progress, task))
                record.update(self.evaluate())
                self.genotype = self.derive()
                self.diagnostics(record)
                record["epoch_seconds"] = time.perf_counter() - t0
                self.wall_offset += record["epoch_seconds"]
                record["wall_seconds"] = self.wall_offset
                action = self.method.end_epoch(self, record) or {}
                self.archive[self.epoch] = self.arch.as_dict()
                if self.console is not None and self.show_progress:
                    self.console.print(self.epoch_line(record))
                self.epoch += 1
                self._persist(record)
                if "rollback" in action:
                    self.rollback(int(action["rollback"]))
                    progress.update(task, total=progress.tasks[0].completed + (cfg.epochs - self.epoch) * steps)
                    continue
                if action.get("stop"):
                    break
                if stop_after is not None and self.epoch > stop_after:
                    break
        return self.genotype

    def rollback(self, epoch: int) -> None:
        """Restore the state saved at the end of ``epoch`` (weights, α, optimizers, streams, RNG); the method's own
        state is kept, since it holds the decision that caused the rollback."""
        if self.run_dir is None:
            raise RobustDartsError("a rollback needs a run directory with per-epoch checkpoints; pass --out.")
        method_state = self.method.state_dict()
        wall = self.wall_offset
        self.load_state(self.run_dir.load_checkpoint(epoch))
        self.method.load_state_dict(method_state)
        self.wall_offset = wall
        self.archive = {e: a for e, a in self.archive.items() if e < self.epoch}

    def _persist(self, record: dict) -> None:
        if self.run_dir is None:
            return
        run = self.run_dir
        run.append_metrics(record)
        run.save_archive(self.archive, {"space": self.space.name, "method": self.cfg.method})
        self.genotype.save(run.genotype_path)
        run.save_checkpoint(self.state(), keep_epoch=self.epoch - 1, keep_last=self.cfg.keep_checkpoints)

    @staticmethod
    def epoch_line(r: dict) -> str:
        extra = f" λmax {r['eigenvalue']:.3g}" if "eigenvalue" in r else ""
        return (f"epoch {r['epoch']:3d}  train {r['train_loss']:.3f}/{100 * r['train_acc']:.1f}%  "
                f"val {r['val_loss']:.3f}/{100 * r['val_acc']:.1f}%  skip {r['skip_normal']}{extra}  "
                f"{r['epoch_seconds']:.1f}s")

    @property
    def num_weight_parameters(self) -> int:
        return count_parameters(self.supernet)
