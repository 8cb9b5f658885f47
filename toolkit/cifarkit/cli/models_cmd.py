"""``cifarkit models``: the registry as a table."""

from __future__ import annotations

import typer

from cifarkit.cli._common import console, err_console


def models(
    pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'cnn*'."),
    params: bool = typer.Option(
        True, "--params/--no-params", help="Build each model to count its parameters."
    ),
) -> None:
    """List the registered architectures: parameters, description, the notebook's accuracy."""
    from rich.table import Table

    from cifarkit.models import create_model, get_model_info, list_models

    names = list_models(pattern)
    if not names:
        err_console.print(f"no architecture matches {pattern!r}")
        raise typer.Exit(1)
    table = Table(title="cifarkit architectures")
    table.add_column("name", style="bold cyan")
    if params:
        table.add_column("params", justify="right")
        table.add_column("trainable", justify="right")
    table.add_column("description")
    table.add_column("notebook", justify="right")
    for name in names:
        info = get_model_info(name)
        row = [name]
        if params:
            # Random init: counting must not need ImageNet weights (or a network).
            kwargs = {"weights": None} if info.pretrained else {}
            model = create_model(name, **kwargs)
            trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
            row += [f"{model.count_params():,}", f"{trainable:,}"]
        row += [info.description, info.notebook_accuracy or "—"]
        table.add_row(*row)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
