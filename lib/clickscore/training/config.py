"""The training stage's typed configs (train, evaluate) and commands."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from clickscore.core.commands import Command, option
from clickscore.model.config import ModelHyper

USE_GPU = ("auto", "yes", "no")


def _use_gpu() -> tuple[str, ...]:
    return USE_GPU


def _keep() -> tuple[str, ...]:
    return ("best", "last")


@dataclass(frozen=True)
class LoopConfig:
    """How to train: steps, optimizer, stopping, checkpoints. Picklable, sent to each rank;
    each default is written here once."""

    epochs: int = field(default=5, metadata=option("at most this many epochs"))
    batch_size: int = field(default=256, metadata=option("sequences per step and process"))
    learning_rate: float = field(default=1e-3, metadata=option("AdamW's peak learning rate"))
    weight_decay: float = field(default=0.01, metadata=option("AdamW's weight decay"))
    warmup_steps: int = field(default=50, metadata=option("linear warm-up steps"))
    patience: int = field(default=2, metadata=option(
        "stop after this many epochs without a better validation recall@20 (all next items)"))
    keep: str = field(default="best", metadata=option(
        "the weights registered: the best validation epoch's, or the last epoch's (a "
        "validation split of a few hundred users makes the best epoch mostly noise)",
        choices=_keep))
    max_steps_per_epoch: int | None = field(default=None, metadata=option(
        "cap the steps of an epoch (smoke runs)"))
    seed: int = field(default=42, metadata=option("same seed, same model on CPU"))
    resume: bool = field(default=False, metadata=option(
        "continue the newest unfinished training run with the same settings and training "
        "set from its last checkpoint (a finished run is refused: its weights are "
        "registered already)"))
    grad_clip: float = field(default=1.0, metadata=option(hidden=True))
    k: int = field(default=20, metadata=option(hidden=True))  # recall@k for early stopping
    checkpoint_dir: str = field(default="", metadata=option(hidden=True))  # set by the job

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class DistributionConfig:
    """Where the training processes run."""

    num_processes: int = field(default=1, metadata=option(
        "training processes (TorchDistributor); one per GPU on GPU executors"))
    local_mode: bool = field(default=True, metadata=option(
        "run the processes on the driver (local) or as Spark tasks on executors"))
    use_gpu: str = field(default="auto", metadata=option(
        "auto: GPUs when Spark or CUDA offers them", choices=_use_gpu))

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise ValueError(f"num_processes must be at least 1, got {self.num_processes}")


@dataclass(frozen=True)
class TrainConfig:
    """Train the sequence model on one training set of gold.training_examples (train and
    validation splits), fit the baselines on the same rows, decide on validation which scorer
    serves each head, evaluate every scorer on validation and test, and register the bundle as
    the challenger. Composed of the model's hyper-parameters, the loop's settings and the
    distribution's; the command line shows their fields as one flat set of options."""

    data_root: str
    training_set: str | None = field(default=None, metadata=option(
        "the training set (ml.training_sets) to train on; default: the newest build"))
    model: ModelHyper = field(default_factory=ModelHyper)
    loop: LoopConfig = field(default_factory=LoopConfig)
    distribution: DistributionConfig = field(default_factory=DistributionConfig)
    promotion_margin: float = field(default=0.0, metadata=option(
        "the sequence model serves a head only when it beats that head's best baseline by "
        "more than this on validation; the new version becomes champion when its next-item "
        "head's validation NDCG@20 (all next items) beats the champion's by more than this"))
    auto_promote: bool = field(default=True, metadata=option(
        "promote automatically when the margin is met (or no champion exists yet)"))
    registered_by: str | None = field(default=None, metadata=option(
        "tag the new version with who registered it (a scheduler's run id), so that later "
        "steps of the same run name exactly it: --model-version registered-by:ID"))

    @classmethod
    def of(cls, data_root: str, **settings: Any) -> TrainConfig:
        """A config from flat settings, as the command line gives them (`epochs=1,
        d_model=32`): each goes to the part that declares it."""
        parts: dict[str, Any] = {}
        for name, part in (("model", ModelHyper), ("loop", LoopConfig),
                           ("distribution", DistributionConfig)):
            own = {f.name for f in fields(part)}
            parts[name] = part(**{k: settings.pop(k) for k in list(settings) if k in own})
        return cls(data_root=data_root, **parts, **settings)


@dataclass(frozen=True)
class EvaluateConfig:
    """A registered model's scorers (the sequence model and its baselines) on the validation
    and test splits, each metric with its interval, and which scorer holds each head."""

    data_root: str
    model_version: str = field(default="champion", metadata=option(
        "a registry version number, or an alias (champion, challenger)"))
    training_set: str | None = field(default=None, metadata=option(
        "the training set whose test split to use; default: the one it was trained on"))
    format: str = field(default="table", metadata=option(
        "table (aligned text) or json (every metric with its interval, for machines)",
        choices=lambda: ("table", "json")))


@dataclass(frozen=True)
class TuneConfig:
    """Search the sequence model's configuration on validation with Optuna (TPE sampler,
    median pruning per epoch, each trial a nested MLflow run), then train and register the
    best one as `train` does."""

    data_root: str
    training_set: str | None = field(default=None, metadata=option(
        "the training set (ml.training_sets) to tune on; default: the newest build"))
    trials: int = field(default=20, metadata=option("at most this many trials"))
    timeout_s: float = field(default=3600.0, metadata=option(
        "the trials' wall-clock budget in seconds: no trial starts after it, and a running "
        "one stops at the end of its epoch"))
    epochs: int = field(default=8, metadata=option("epochs per trial, and for the best"))
    batch_size: int = field(default=256, metadata=option("sequences per step"))
    max_steps_per_epoch: int | None = field(default=None, metadata=option(
        "cap the steps of an epoch (smoke runs)"))
    seed: int = field(default=42, metadata=option("the sampler's and every trial's seed"))
    promotion_margin: float = field(default=0.0, metadata=option("as for train"))
    auto_promote: bool = field(default=True, metadata=option("as for train"))
    registered_by: str | None = field(default=None, metadata=option("as for train"))

    def __post_init__(self) -> None:
        if self.trials < 1 or self.epochs < 1 or self.timeout_s <= 0:
            raise ValueError("trials and epochs must be at least 1, timeout_s positive")


COMMANDS = (
    Command("train", "train the sequence model on gold.training_examples; register it",
            TrainConfig, "clickscore.training.job:run_train"),
    Command("tune", "choose the model's configuration on validation with Optuna; train the "
            "best and register it", TuneConfig, "clickscore.training.tune:run_tune"),
    Command("evaluate", "a registered model vs the baselines on validation and test",
            EvaluateConfig, "clickscore.training.job:run_evaluate"),
)
