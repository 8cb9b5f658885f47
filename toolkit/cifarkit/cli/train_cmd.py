"""``cifarkit train ARCH``: fit an architecture with a recipe, with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cifarkit.cli._common import DataOpt, console, err_console, progress_bar

# --- the options, declared once each (in --help's order) --------------------------------------

ArchArg = Annotated[str, typer.Argument(help="Architecture name (see `cifarkit models`).")]
RecipeOpt = Annotated[str | None, typer.Option(
    "--recipe", help="default | seed (the notebook's) | fast (airbench94's) | fast-l "
    "(airbench95's). Default: the architecture's own (fast-l for fastnet-l, fast for the other "
    "fastnet*, else default).")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Override the recipe's epochs.")]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", help="Override the batch size.")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Override the (peak) learning rate.")]
ValSplitOpt = Annotated[float | None, typer.Option(
    "--val-split", help="Validation fraction, stratified.")]
WeightDecayOpt = Annotated[float | None, typer.Option(
    "--weight-decay", help="Override decoupled weight decay (per unit lr).")]
LabelSmoothingOpt = Annotated[float | None, typer.Option(
    "--label-smoothing", help="Override label smoothing.")]
CutoutOpt = Annotated[int | None, typer.Option(
    "--cutout", help="Cutout augmentation: fill one N×N square of each training image with the "
    "mean pixel (0: off, the recipes' default).")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", help="Seed for splits, init and augmentation (default 0).")]
LimitOpt = Annotated[int | None, typer.Option(
    "--limit", help="Stratified subset of N images per split.")]
ImageSizeOpt = Annotated[int | None, typer.Option(
    "--image-size", help="Build the model for N×N images and decode the data to N×N (16-512, "
    "default 32; VGG16: 32-224).")]
InitOpt = Annotated[str | None, typer.Option(
    "--init", help="Start from a trained model: a run folder, a .keras or fp32 .onnx file, or a "
    "shipped model's name (e.g. fastnet-relu). The head is rebuilt for the data's classes; the "
    "peak learning rate is the recipe's x0.2 unless --lr is given.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Fail on an image file that cannot be decoded (default: skip and list it).")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Run folder (default runs/<arch>/).")]
MixedPrecisionOpt = Annotated[bool, typer.Option("--mixed-precision", help="float16 compute.")]
ResumeOpt = Annotated[bool, typer.Option(
    "--resume", help="Continue an interrupted run with its own recipe, seed and options (any given "
    "again must match).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Discard an interrupted run.")]
WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", help="VGG16 only: 'imagenet' (default), a .h5 path, or 'none'.")]
FeatureCacheOpt = Annotated[bool | None, typer.Option(
    "--feature-cache/--no-feature-cache", help="VGG16 only: train the head on base features "
    "computed once (default), or through the frozen base every epoch (with the recipe's "
    "translations).")]
FinetuneEpochsOpt = Annotated[int | None, typer.Option(
    "--finetune-epochs", help="vgg16-finetune: epochs with block5 unfrozen, after the head's "
    "--epochs (default 5).")]
FinetuneLrOpt = Annotated[float | None, typer.Option(
    "--finetune-lr", help="vgg16-finetune: block5 phase's initial learning rate, Nesterov SGD with "
    "cosine decay (default 1e-4).")]


def train(
    arch: ArchArg,
    recipe: RecipeOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    val_split: ValSplitOpt = None,
    weight_decay: WeightDecayOpt = None,
    label_smoothing: LabelSmoothingOpt = None,
    cutout: CutoutOpt = None,
    seed: SeedOpt = None,
    data: DataOpt = None,
    limit: LimitOpt = None,
    image_size: ImageSizeOpt = None,
    init: InitOpt = None,
    strict: StrictOpt = False,
    out: OutOpt = None,
    mixed_precision: MixedPrecisionOpt = False,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    weights: WeightsOpt = None,
    feature_cache: FeatureCacheOpt = None,
    finetune_epochs: FinetuneEpochsOpt = None,
    finetune_lr: FinetuneLrOpt = None,
) -> None:
    """Train ARCH on CIFAR-10 or your own class folders (--data) and write runs/<arch>/
    (model, history, curves, run.json)."""
    given = dict(locals())  # the parameters are TrainOptions' fields
    from cifarkit.cli._tfquiet import quiet_tensorflow
    from cifarkit.train import TrainOptions
    from cifarkit.train import train as run_training

    quiet_tensorflow()
    options = TrainOptions(**given)
    view = _TrainView()
    try:
        with progress_bar() as data_update:
            result = run_training(options, progress=view, data_progress=data_update)
    finally:
        view.bar.stop()
    if result.interrupted:
        resume = TrainOptions(arch, result.recipe.name, out=result.run_dir, resume=True)
        err_console.print(f"[yellow]interrupted after {len(result.epoch_seconds)} epoch(s)[/]; "
                          f"continue with `{resume.command()}`")
        raise typer.Exit(130)
    _summary(arch, result)


class _TrainView:
    """Renders the training's progress events: one method per event name."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=err_console,
            transient=True,
        )
        self.task: dict[str, Any] = {}

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        getattr(self, f"on_{event}", lambda info: None)(info)

    def on_data(self, info: dict[str, Any]) -> None:
        skipped = (f", {info['skipped']} undecodable file(s) skipped" if info["skipped"]
                   else "")
        console.print(f"data: {info['source']} ({info['kind']}): {info['classes']} classes "
                      f"at {info['image_size']}×{info['image_size']}, train "
                      f"{info['train']:,}, val {info['val']:,}, test {info['test']:,}{skipped}")
        for note in info["notes"]:
            console.print(f"  [dim]{note}[/]")

    def on_init(self, info: dict[str, Any]) -> None:
        skipped = ", ".join(f"{k} ({v})" for k, v in info["skipped"].items())
        console.print(f"init: {info['loaded']} layers from {info['source']}"
                      + (f"; fresh: {skipped}" if skipped else ""))

    def on_start(self, info: dict[str, Any]) -> None:
        r = info["recipe"]
        console.print(f"training [bold cyan]{info['arch']}[/], recipe [bold]{r['name']}[/] "
                      f"({r['epochs']} epochs, batch {r['batch_size']}, lr {r['lr']}) "
                      f"on [bold]{info['device']}[/]")
        if info["resumed_epochs"]:
            console.print(f"resuming after epoch {info['resumed_epochs']}")
        self.bar.start()

    def on_phase(self, info: dict[str, Any]) -> None:
        if "id" in self.task:
            self.bar.remove_task(self.task.pop("id"))
        what = ("head on cached VGG16 features" if info["cached"] else
                "head, through the frozen VGG16 base") if info["phase"] == 1 else (
                f"block5 unfrozen, learning rate {info['lr']:g}")
        n = info["epochs"]
        self.bar.console.print(f"[bold]phase {info['phase']}[/]: {what}, "
                               f"{n} epoch{'s' * (n != 1)}")

    def on_features(self, info: dict[str, Any]) -> None:
        if "features" not in self.task:
            self.task["features"] = self.bar.add_task("VGG16 features", total=info["total"],
                                                      stats="")
        self.bar.update(self.task["features"], completed=info["done"],
                        stats=f"{info['done']:,}/{info['total']:,} images")

    def on_features_done(self, info: dict[str, Any]) -> None:
        self.bar.remove_task(self.task.pop("features"))
        self.bar.console.print(f"features of {info['images']:,} images computed once in "
                               f"{info['seconds']:.1f}s")

    def on_epoch_begin(self, info: dict[str, Any]) -> None:
        if "id" in self.task:
            self.bar.remove_task(self.task["id"])
        self.task["id"] = self.bar.add_task(f"epoch {info['epoch']}/{info['epochs']}",
                                            total=info["steps"], stats="")

    def on_batch(self, info: dict[str, Any]) -> None:
        self.bar.update(self.task["id"], completed=info["step"],
                        stats=f"loss {info['loss']:.4f} acc {info['accuracy']:.4f}")

    def on_epoch_end(self, info: dict[str, Any]) -> None:
        logs = info["logs"]
        val = ""
        if "val_accuracy" in logs:
            val = f"  val_loss {logs['val_loss']:.4f}  val_acc {logs['val_accuracy']:.4f}"
        self.bar.console.print(
            f"epoch {info['epoch']:>3}/{info['epochs']}  {info['seconds']:6.1f}s  "
            f"loss {logs.get('loss', float('nan')):.4f}  "
            f"acc {logs.get('accuracy', float('nan')):.4f}{val}")

    def on_evaluate(self, info: dict[str, Any]) -> None:
        self.bar.stop()
        console.print(f"evaluating on {info['test']:,} test images")


def _summary(arch: str, result: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{arch} · recipe {result.recipe.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    secs = result.epoch_seconds
    table.add_row("epochs", str(len(secs)))
    table.add_row("seconds / epoch (mean)", f"{sum(secs) / max(1, len(secs)):.1f}")
    table.add_row("train time", f"{sum(secs):.0f} s")
    if result.val_accuracy is not None:
        table.add_row("best epoch (validation)", str(result.best_epoch))
        table.add_row("validation accuracy", f"{result.val_accuracy:.2%}")
    table.add_row("test accuracy", f"[bold]{result.test_accuracy:.2%}")
    table.add_row("test loss", f"{result.test_loss:.4f}")
    table.add_row("device", result.device)
    table.add_row("run folder", str(result.run_dir))
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
