"""The training stage's typed configs (train, evaluate) and commands."""

from __future__ import annotations

from dataclasses import dataclass, field

from clickscore.core.commands import Command, option

USE_GPU = ("auto", "yes", "no")


def _losses() -> tuple[str, ...]:
    return ("full", "sampled")


def _use_gpu() -> tuple[str, ...]:
    return USE_GPU


def _keep() -> tuple[str, ...]:
    return ("best", "last")


@dataclass(frozen=True)
class TrainConfig:
    """Train the sequence model on gold.training_examples (train and validation splits),
    evaluate it on the test split next to the baselines, register it as the challenger."""

    data_root: str
    num_processes: int = field(default=1, metadata=option(
        "training processes (TorchDistributor); one per GPU on GPU executors"))
    local_mode: bool = field(default=True, metadata=option(
        "run the processes on the driver (local) or as Spark tasks on executors"))
    use_gpu: str = field(default="auto", metadata=option(
        "auto: GPUs when Spark or CUDA offers them", choices=_use_gpu))
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
    d_model: int = field(default=64, metadata=option("embedding and hidden size"))
    n_heads: int = field(default=2, metadata=option("attention heads"))
    n_layers: int = field(default=2, metadata=option("Transformer layers"))
    dropout: float = field(default=0.1, metadata=option("dropout"))
    loss: str = field(default="full", metadata=option(
        "next-item loss: full softmax, or sampled (shared log-uniform negatives, logQ)",
        choices=_losses))
    negatives: int = field(default=256, metadata=option("negatives for --loss sampled"))
    propensity_weight: float = field(default=1.0, metadata=option(
        "weight of the propensity loss in the total"))
    repeat: bool = field(default=False, metadata=option(
        "a learned bonus for items already in the user's history (where users revisit "
        "items: it won on the real samples, and cost the generated planted pairs)"))
    popularity_prior: bool = field(default=False, metadata=option(
        "item scores start from the log of each item's frequency as a training target, so "
        "the model learns what a user's history adds to popularity"))
    category_output: bool = field(default=False, metadata=option(
        "an item's output embedding adds its category's, shared by the items of a category"))
    seed: int = field(default=42, metadata=option("same seed, same model on CPU"))
    resume: bool = field(default=False, metadata=option(
        "continue from the last checkpoint of the previous run"))
    promotion_margin: float = field(default=0.0, metadata=option(
        "promote the new model to champion when its validation recall@20 (all next items) "
        "beats the champion's by more than this"))
    auto_promote: bool = field(default=True, metadata=option(
        "promote automatically when the margin is met (or no champion exists yet)"))

    def __post_init__(self) -> None:
        for name in ("num_processes", "epochs", "batch_size", "n_heads", "n_layers", "d_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads "
                             f"({self.n_heads})")
        if self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")


@dataclass(frozen=True)
class EvaluateConfig:
    """A registered model on the test split, next to the baselines."""

    data_root: str
    model_version: str = field(default="champion", metadata=option(
        "a registry version number, or an alias (champion, challenger)"))


COMMANDS = (
    Command("train", "train the sequence model on gold.training_examples; register it",
            TrainConfig, "clickscore.training.job:run_train"),
    Command("evaluate", "a registered model vs the baselines on the test split",
            EvaluateConfig, "clickscore.training.job:run_evaluate"),
)
