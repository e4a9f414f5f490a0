"""The bilevel search loop: one obvious path, changed by a method only through its recipe (methods/recipe.py).

Each step: draw a train and a val batch from persistent cycling streams; relax α into mixing weights; α step on
the val batch (first order, second order or mixed level); weight step on the train batch with clipped gradients
(in AutoDL's NB201 order, the weight step first). Each epoch: evaluate the supernet, derive the genotype, log
metrics and diagnostics, archive α/β, let the recipe react (early stop, rollback), checkpoint atomically. A run
resumed from its directory gives exactly the α and genotype of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..archparams import ArchParams
from ..config import SearchConfig, preset_caps
from ..data import BatchStream, scaled_augment, dataset_info, eval_batches, load_dataset, search_split
from ..data.own import is_own, record as own_record
from ..distributed import Shard, check_world
from ..errors import RobustDartsError, first_line, unknown
from ..genotype import Genotype
from ..methods import EpochEnd, StepContext, genotype_of, make_recipe
from ..methods.recipe import derive_weights
from ..relax import detached, mixing_weights
from ..preserve import preserved
from ..runs import RunDir, atomic_write_text
from ..schedules import cosine_lr
from ..spaces import get_space
from ..memory import choose_recompute
from ..speed import given_threads, resolve_layout, threads_for
from ..supernet import Supernet, count_parameters
from . import architect

STEP_ORDERS = ("arch-first", "weight-first")
HESSIAN_RELAXATIONS = ("softmax", "method")
VAL_BATCH_MODES = ("first", "second", "mixed")  # arch-gradient modes that read a validation batch


def _loss_precision(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (amp) upcast to float32 for the loss; float32 and float64 ones as they are (the
    float64 second-order checks stay exact)."""
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def mean_entropy(weights: torch.Tensor) -> float:
    """Mean over edges of the entropy (nats) of each edge's mixing distribution."""
    p = weights.clamp_min(1e-12)
    return float(-(p * p.log()).sum(-1).mean())


class Search:
    """A search run. ``Search(cfg, out_dir).run()``; ``Search.resume(out_dir).run()`` continues one."""

    epoch_hooks: tuple = ()  # callables hook(search, record) run after each epoch is recorded (runlog: TensorBoard)

    def __init__(self, cfg: SearchConfig, out_dir: str | Path | None = None, *, console=None, progress: bool = True,
                 shard: Shard | None = None, _resuming: bool = False):
        cfg = resolve_layout(cfg)  # a config built by hand may still say auto (speed.py); resolved ones are kept
        self.cfg, self.console, self.show_progress = cfg, console, progress
        # Multi-process search (distributed.py): this process's rank; Shard() is the single process.
        self.shard = shard if shard is not None else Shard()
        if cfg.nproc != self.shard.world:
            raise RobustDartsError(f"the config says nproc={cfg.nproc} but this search runs in {self.shard.world} "
                                   f"process(es); start it with --nproc {cfg.nproc} (or torchrun with as many).")
        check_world(cfg, self.shard.world)
        self.space = get_space(cfg.space)
        self.recipe = make_recipe(cfg, self.space)
        if cfg.step_order not in STEP_ORDERS:
            raise unknown("step_order", cfg.step_order, STEP_ORDERS)
        if cfg.hessian_relax not in HESSIAN_RELAXATIONS:
            raise unknown("hessian_relax", cfg.hessian_relax, HESSIAN_RELAXATIONS)
        if self.recipe.rollback_depth and out_dir is None:
            raise RobustDartsError(f"{cfg.method} rolls back to per-epoch checkpoints and needs a run directory; "
                                   f"pass an output directory (--out).")
        self.device = self.shard.device(cfg.device)
        self.run_dir = RunDir(out_dir) if out_dir is not None else None
        if self.run_dir is not None and not _resuming and self.shard.writes:
            self.run_dir.check_new()  # before a minute of loading data, not after
        # Memory chosen, not refused: recompute=auto takes the first level that fits this machine (none, edge,
        # cell) and config.yaml records it; only what fits in no level is refused, before allocating any of it.
        recompute, _, memory_note = choose_recompute(cfg)
        if recompute != cfg.recompute:
            cfg = self.cfg = dataclasses.replace(cfg, recompute=recompute)
        if memory_note is not None and console is not None and self.shard.writes:
            console.print(f"note: {memory_note}", highlight=False, markup=False)
        torch.manual_seed(cfg.seed)

        info = dataset_info(cfg.dataset)
        data = load_dataset(cfg.dataset, "train", cfg.data_dir, image_size=cfg.image_size, limit=cfg.limit_images,
                            seed=cfg.seed, skip_bad_images=cfg.skip_bad_images,
                            cap=preset_caps(cfg, "limit_images"))
        if is_own(cfg.dataset) and self.run_dir is not None and _resuming:
            own_record(self.run_dir.path, cfg.dataset, resuming=True)  # the same data as the checkpoint's
        self.train_set, self.val_set = search_split(data, cfg.train_portion, cfg.seed, cfg.ordered_split)
        self.augment = scaled_augment(data.mean, data.std, data.size, cfg.augment, cfg.cutout)
        # Threads from the work's size (speed.py): one for tiny tensors, which a second thread does not speed up
        # and a busy core stalls; set before environment.json records the count.
        self.threads = threads_for(cfg, data.size, given_threads())
        torch.set_num_threads(self.threads)
        # Single-level methods of LHD (SurgeNAS, GAEA ERM) train the weights on the whole training set; the val
        # half still scores the supernet each epoch (then not held out: its metrics say so by the config).
        weight_set = data if cfg.weights_on_all_data else self.train_set
        part = self.shard.part(cfg.batch_size) if self.shard.active else None  # this rank's slice of each batch
        self.train_stream = BatchStream(weight_set, cfg.batch_size, self.augment, cfg.seed, self.device, part=part)
        self.val_stream = BatchStream(self.val_set, cfg.batch_size, self.augment, cfg.seed + 1, self.device, part=part)

        self.supernet = Supernet(self.space, cfg.init_channels, cfg.layers, info.num_classes, data.channels,
                                 edge_extra=self.recipe.edge_extra, partial_channels=cfg.partial_channels
                                 ).to(self.device)
        # How, not what, the supernet computes (config: skip_zero_ops, recompute, channels_last, compile, ...).
        # A method whose reference computes only the sampled op (GDAS) never computes the others, skip or not.
        self.supernet.skip_zero_ops = cfg.skip_zero_ops or not self.recipe.computes_zero_ops
        self.supernet.keep_skipped_current(self.recipe.computes_zero_ops, cfg.skipped_statistics == "current")
        for note in self.supernet.configure(cfg.recompute, cfg.channels_last, cfg.compile, cfg.mix_in_bn,
                                            cfg.share_pools, cfg.fast_depthwise):
            if console is not None and self.shard.writes:
                console.print(f"note: {note}", highlight=False, markup=False)
        self.arch = ArchParams(self.space, generator=torch.Generator().manual_seed(cfg.seed),
                               edge_betas=self.recipe.edge_betas).to(self.device)
        self.recipe.init_arch(self.arch.alphas, self.arch.betas)
        self.w_opt = torch.optim.SGD(self.supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                     weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        # Zero, never None: a candidate op whose mixing weight is exactly 0 is not computed, and its parameters must
        # still get a zero gradient, so that momentum and weight decay move them as computing the op would (every
        # reference computes it). The weight step zeroes these tensors instead of dropping them.
        for p in self.supernet.parameters():
            p.grad = torch.zeros_like(p)
        self.a_opt = architect.arch_optimizer(self.recipe.arch_update, self.arch, cfg)
        self.epoch, self.step = 0, 0
        self.drop_prob, self.extra_scale = 0.0, 0.0  # this epoch's, from the recipe
        self.archive: dict[int, dict[str, torch.Tensor]] = {}
        self.genotype = None
        self.wall_offset = 0.0  # seconds of earlier sessions of this run
        if self.shard.active:  # every rank its own draws (drop path, noise ops) from here on; init is shared
            torch.manual_seed(cfg.seed + 1_000_003 * (self.shard.rank + 1))
        self._rng_ranks = None  # every rank's random state at the last checkpoint (multi-process runs)
        if self.run_dir is not None and not _resuming and self.shard.writes:
            self.run_dir.create(cfg)
            if is_own(cfg.dataset):
                own_record(self.run_dir.path, cfg.dataset)  # classes and their indices, held-out test images
        self._resumed = _resuming  # run() records the session's environment once it continues the run

    # --- construction from a run directory ------------------------------------------------------------------------
    @classmethod
    def resume(cls, out_dir: str | Path, *, cfg: SearchConfig | None = None, **kwargs) -> "Search":
        """Every file of the run is read and checked before anything is written; then the directory is locked,
        temp files of a killed write are removed and metrics past the checkpoint dropped. ``cfg``: the run's
        config.yaml as ``RunDir.load_config`` returned it, when the caller has read it already (DARTS-PT)."""
        run = RunDir(out_dir)
        cfg = run.load_config(SearchConfig) if cfg is None else cfg
        state = run.load_checkpoint(kind="search")
        archive, _ = run.load_archive(cfg.space)
        run.check_agrees(state, run.read_metrics(), archive)
        genotype = None
        if state["epoch"] > 0 and run.genotype_path.exists():
            # The genotype recorded with the checkpoint's epoch: what run() returns at once for a finished run.
            genotype = Genotype.load(run.genotype_path)
        search = cls(cfg, out_dir, _resuming=True, **kwargs)
        search.load_state(state, run.checkpoint_path)
        search.archive = {e: a for e, a in archive.items() if e < search.epoch}
        search.genotype = genotype
        search.shard.barrier()  # every rank has read the run before rank 0 changes it
        if search.shard.writes:
            run.lock("search")
            run.remove_temp_files()
            run.truncate_metrics(search.epoch)
        return search

    def state(self) -> dict:
        return {
            "epoch": self.epoch, "supernet": self.supernet.state_dict(), "arch": self.arch.state_dict(),
            "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
            "train_stream": self.train_stream.state_dict(), "val_stream": self.val_stream.state_dict(),
            "rng": torch.get_rng_state(), "method": self.recipe.state_dict(), "wall": self.wall_offset,
            **({"rng_ranks": self._rng_ranks} if self._rng_ranks is not None else {}),
        }

    def load_state(self, state: dict, source: str | Path = "the checkpoint") -> None:
        try:
            self.supernet.load_state_dict(state["supernet"])
            self.arch.load_state_dict(state["arch"])
            self.w_opt.load_state_dict(state["w_opt"])
            self.a_opt.load_state_dict(state["a_opt"])
            self.train_stream.load_state_dict(state["train_stream"])
            self.val_stream.load_state_dict(state["val_stream"])
            torch.set_rng_state(state["rng_ranks"][self.shard.rank] if self.shard.active else state["rng"])
            self.recipe.load_state_dict(state["method"])
            self.epoch, self.wall_offset = int(state["epoch"]), float(state["wall"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
            detail = first_line(e)
            raise RobustDartsError(f"{source} does not match the run's config.yaml ({detail}); restore both from a "
                                   f"copy or start a new run.") from None

    # --- the pieces of a step ------------------------------------------------------------------------------------
    def forward(self, x, weights):
        with self.autocast():
            logits = self.supernet(x, weights, drop_prob=self.drop_prob, extra_scale=self.extra_scale)
        return _loss_precision(logits)

    def autocast(self):
        """The forward's precision: ``amp=bf16`` autocasts the supernet's convolutions and matmuls to bfloat16
        (α, the mixing weights, the loss and every parameter stay float32); ``off`` changes nothing."""
        if self.cfg.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def arch_params(self) -> list[torch.Tensor]:
        return list(self.arch.parameters())

    @property
    def weight_decay(self) -> float:
        return self.w_opt.param_groups[0]["weight_decay"]

    def lr_at(self, epoch: int) -> float:
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            return cfg.lr
        if cfg.lr_schedule == "cosine":
            return cosine_lr(epoch, cfg.lr, cfg.lr_min, cfg.epochs)
        raise unknown("lr_schedule", cfg.lr_schedule, ("constant", "cosine"))

    def relaxed(self, ctx: StepContext, purpose: str) -> dict:
        """The recipe's mixing weights of the current α for ``purpose``; only the arch purpose keeps a graph (without
        one, the supernet skips the ops whose weight is exactly zero)."""
        weights = self.recipe.relax(*self.arch.relax_inputs(), ctx, purpose)
        return weights if purpose == "arch" else detached(weights)

    # --- one step -----------------------------------------------------------------------------------------------
    def arch_step(self, ctx: StepContext, train_batch, val_batch, lr: float) -> None:
        """α step: ∇α of the validation loss (first order, unrolled or mixed level) + the recipe's penalty."""
        mode = self.recipe.arch_grad
        if mode not in VAL_BATCH_MODES or val_batch is None:
            return  # none, single level (the weight step's own pass fills ∇α), or an arch warmup epoch
        (x_train, y_train), (x_val, y_val) = train_batch, val_batch
        self.a_opt.zero_grad(set_to_none=True)
        weights_fn = lambda: self.relaxed(ctx, "arch")  # noqa: E731
        if mode == "first":
            penalty = lambda: self.recipe.arch_penalty(*self.arch.relax_inputs(), ctx)  # noqa: E731
            architect.first_order(self.forward, self.arch_params, weights_fn, x_val, y_val, penalty=penalty)
        elif mode == "mixed":
            architect.mixed_level(self.forward, self.arch_params, weights_fn, x_train, y_train, x_val, y_val,
                                  lam=self.cfg.mixed_lambda)
        else:
            buffers = [self.w_opt.state.get(p, {}).get("momentum_buffer") for p in self.supernet.parameters()]
            with self.autocast():
                architect.unrolled(self.supernet, self.arch_params, weights_fn, x_train, y_train, x_val, y_val,
                                   lr=lr, momentum=self.cfg.momentum, weight_decay=self.weight_decay,
                                   momentum_buffers=buffers, average=self.shard.average,
                                   forward_kwargs={"drop_prob": self.drop_prob, "extra_scale": self.extra_scale})
        self.shard.average_grads(self.arch_params)  # multi-process: the global batch's ∇α on every rank
        self.a_opt.step()

    def weight_step(self, ctx: StepContext, x, y):
        """Weight step: the recipe's weight gradient (plain, perturbed, aligned ...), clipped, one SGD step. In the
        single-level mode the same pass fills ∇α too, and α takes its step here."""
        self.w_opt.zero_grad(set_to_none=False)  # zero, not None: see __init__
        single = self.recipe.arch_grad == "single"
        if single:
            self.a_opt.zero_grad(set_to_none=True)
        weights = self.relaxed(ctx, "arch" if single else "weight")
        loss, logits = self.recipe.weight_backward(self.supernet, self.forward, x, y, weights, ctx)
        self.shard.average_grads(self.supernet.parameters())  # multi-process: the global batch's gradients
        if single:
            self.shard.average_grads(self.arch_params)
            self.a_opt.step()
        torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.cfg.grad_clip)
        self.w_opt.step()
        return loss, logits

    # --- one epoch ----------------------------------------------------------------------------------------------
    def begin_epoch(self) -> tuple[StepContext, float]:
        """Set this epoch's learning rate, weight decay, drop path, extra-op scale and cutout from the recipe."""
        cfg, steps = self.cfg, self.train_stream.steps_per_epoch
        ctx, lr = StepContext(self.epoch, 0, cfg.epochs, steps), self.lr_at(self.epoch)
        for g in self.w_opt.param_groups:
            g["lr"], g["weight_decay"] = lr, self.recipe.weight_decay(ctx)
        self.drop_prob, self.extra_scale = self.recipe.drop_prob(ctx), self.recipe.extra_scale(ctx)
        self.augment.cutout_prob = self.recipe.cutout_prob(ctx)
        self.recipe.begin_epoch(ctx, dict(self.arch.alphas))
        return ctx, lr

    def train_epoch(self, progress=None, task=None) -> dict:
        cfg = self.cfg
        epoch_ctx, lr = self.begin_epoch()
        self.supernet.train()
        steps = self.train_stream.steps_per_epoch
        # Accumulated as tensors: no host sync inside the step loop.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        # No validation batch is drawn while a recipe takes no arch step (PC-DARTS' warmup, as its code).
        val_needed = self.recipe.arch_grad in VAL_BATCH_MODES and self.recipe.updates_arch(epoch_ctx)
        for step in range(steps):
            self.step = step
            ctx = dataclasses.replace(epoch_ctx, step=step)
            x, y = next(self.train_stream)
            val = next(self.val_stream) if val_needed else None
            if cfg.step_order == "arch-first":
                self.arch_step(ctx, (x, y), val, lr)
            if self.recipe.trains_weights:
                loss, logits = self.weight_step(ctx, x, y)
                bad = ~torch.isfinite(loss)
                first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
                loss_sum += torch.where(bad, torch.zeros_like(loss), loss) * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
            if cfg.step_order == "weight-first":
                self.arch_step(ctx, (x, y), val, lr)
            if progress is not None:
                progress.advance(task)
        if self.shard.active:  # the epoch's totals over every rank, and the first bad step of any
            first_bad = torch.where(first_bad < 0, torch.full_like(first_bad, steps), first_bad)
            self.shard.reduce_([first_bad], "min")
            first_bad = torch.where(first_bad == steps, torch.full_like(first_bad, -1), first_bad)
            self.shard.reduce_([loss_sum, correct])
            seen *= self.shard.world
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
        if weights is None:
            with torch.no_grad():
                weights = self.relaxed(self.context(), "eval")
        self.supernet.eval()
        total, correct, n = 0.0, 0, 0
        for i, (x, y) in enumerate(eval_batches(images or self.val_set, 256, self.device)):
            if i % self.shard.world != self.shard.rank:
                continue  # multi-process: each rank scores every N-th batch, the totals are summed below
            with self.autocast():
                logits = _loss_precision(self.supernet(x, weights))
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        self.supernet.train()
        if self.shard.active:
            sums = torch.tensor([total, correct, n], dtype=torch.float64, device=self.device)
            self.shard.reduce_([sums])
            total, correct, n = sums[0].item(), int(sums[1].item()), int(sums[2].item())
        return {"val_loss": total / n, "val_acc": correct / n}

    def context(self) -> StepContext:
        return StepContext(self.epoch, 0, self.cfg.epochs, self.train_stream.steps_per_epoch)

    def genotype_of(self, values: dict, epoch: int):
        """The genotype of archived α/β ``values`` (``methods.genotype_of``: one derivation path everywhere)."""
        return genotype_of(values, self.recipe, self.space, epoch)

    def derive(self):
        return self.genotype_of(self.arch.as_dict(), self.epoch)

    def diagnostics(self, record: dict) -> None:
        """Per-epoch architecture statistics, eigenvalue and leakage measurements."""
        weights = derive_weights(self.recipe, self.arch.as_dict(), self.epoch)
        for c in self.space.cell_types:
            record[f"entropy_{c}"] = mean_entropy(weights[c])
        g = self.genotype
        record["skip_normal"] = sum(1 for gene in g.normal if gene[0] == "skip_connect")
        cfg = self.cfg
        if cfg.hessian_every and (self.epoch % cfg.hessian_every == 0 or self.epoch == cfg.epochs - 1):
            from ..analysis.hessian import arch_hessian
            stream = BatchStream(self.val_set, cfg.batch_size, self.augment, cfg.seed * 1000 + self.epoch, self.device)
            batches = [next(stream) for _ in range(cfg.hessian_batches)]
            # RobustDARTS' protocol by default: softmax(α) at τ = 1 for every method, deterministic, so that λ_max
            # compares across methods and epochs (a method's step τ or sample would make it swing with the step).
            ctx = self.context()
            relax = mixing_weights if cfg.hessian_relax == "softmax" else \
                (lambda space, alphas, betas, tau: self.recipe.relax(alphas, betas, ctx, "eval"))
            with preserved(rng=True, device=self.device):  # the measurement must not shift the run's random stream
                h = arch_hessian(self.supernet, self.arch, batches, relax=relax, bn_mode=cfg.hessian_bn_mode,
                                 arch_weight_decay=cfg.arch_weight_decay)
            record["eigenvalue"] = float(h["eigenvalue"])
        if cfg.leakage_every and self.epoch % cfg.leakage_every == 0:
            from ..analysis.leakage import leakage_metrics
            with preserved(rng=True, device=self.device):
                record.update(leakage_metrics(self, weights, g))

    # --- the run ------------------------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None):
        """Search to the configured last epoch (or stop after epoch ``stop_after``, to test resumption)."""
        from ..progressbar import progress_bar

        cfg = self.cfg
        steps = self.train_stream.steps_per_epoch
        if self.run_dir is not None and self.epoch == 0 and not self.archive:
            self.archive[-1] = self.arch.as_dict()  # the initial α, for derive --epoch -1
        progress = progress_bar(self.console, self.show_progress)  # a terminal only: no last frame in a log
        if self._resumed and self.epoch < cfg.epochs and self.run_dir is not None and self.shard.writes:
            self.run_dir.record_resume(cfg.device)  # warns when the numerics changed since the run started
        self._resumed = False
        with progress:
            task = progress.add_task(f"search {cfg.method} on {cfg.space}", total=(cfg.epochs - self.epoch) * steps)
            while self.epoch < cfg.epochs:
                t0 = time.perf_counter()
                record = {"epoch": self.epoch}
                record.update(self.train_epoch(progress, task))
                self.shard.sync_buffers(self.supernet)  # multi-process: one set of BN running statistics
                record.update(self.evaluate())
                self.genotype = self.derive()
                self.diagnostics(record)
                record["epoch_seconds"] = time.perf_counter() - t0
                self.wall_offset += record["epoch_seconds"]
                record["wall_seconds"] = self.wall_offset
                self.archive[self.epoch] = self.arch.as_dict()
                end = EpochEnd(record, self.archive, self.genotype_of, last=self.epoch == cfg.epochs - 1)
                action = self.recipe.end_epoch(self.context(), end)
                if action.genotype is not None:
                    self.genotype = action.genotype
                if self.run_dir is not None and self.shard.writes:
                    for name, text in action.files.items():
                        atomic_write_text(self.run_dir.path / name, text)
                if self.console is not None and self.show_progress:
                    self.console.print(self.epoch_line(record))
                self.epoch += 1
                self._persist(record)
                for hook in self.epoch_hooks:
                    hook(self, record)
                if action.rollback is not None:
                    self.rollback(action.rollback)
                    progress.update(task, total=progress.tasks[0].completed + (cfg.epochs - self.epoch) * steps)
                    continue
                if action.stop:
                    break
                if stop_after is not None and self.epoch > stop_after:
                    break
        return self.genotype

    def rollback(self, epoch: int) -> None:
        """Restore the state saved at the end of ``epoch`` (weights, α, optimizers, streams, RNG); the recipe's own
        state is kept, since it holds the decision that caused the rollback."""
        if self.run_dir is None:
            raise RobustDartsError("a rollback needs a run directory with per-epoch checkpoints; pass --out.")
        recipe_state = self.recipe.state_dict()
        wall = self.wall_offset
        self.load_state(self.run_dir.load_checkpoint(epoch, kind="search"), self.run_dir.epoch_checkpoint(epoch))
        self.recipe.load_state_dict(recipe_state)
        self.wall_offset = wall
        self.archive = {e: a for e, a in self.archive.items() if e < self.epoch}

    def _persist(self, record: dict) -> None:
        if self.run_dir is None:
            return
        self._rng_ranks = self.shard.gather_rng_states()  # multi-process: every rank's stream into the checkpoint
        if self.shard.writes:
            run = self.run_dir
            run.append_metrics(record)
            run.save_archive(self.archive, {"space": self.space.name, "method": self.cfg.method})
            self.genotype.save(run.genotype_path)
            run.save_checkpoint(self.state(), keep_epoch=self.epoch - 1, keep_last=self.cfg.keep_checkpoints)
        self.shard.barrier()  # the checkpoint is complete before any rank may read it (rollback)

    @staticmethod
    def epoch_line(r: dict) -> str:
        extra = f" λmax {r['eigenvalue']:.3g}" if "eigenvalue" in r else ""
        return (f"epoch {r['epoch']:3d}  train {r['train_loss']:.3f}/{100 * r['train_acc']:.1f}%  "
                f"val {r['val_loss']:.3f}/{100 * r['val_acc']:.1f}%  skip {r['skip_normal']}{extra}  "
                f"{r['epoch_seconds']:.1f}s")

    @property
    def num_weight_parameters(self) -> int:
        return count_parameters(self.supernet)
