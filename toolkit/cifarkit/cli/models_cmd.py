"""``cifarkit models``: the registry as a table."""

from __future__ import annotations

import typer

from cifarkit.cli._common import console, err_console

#: Below this terminal width the table drops the "trainable" column and shortens no text
#: but the description (cut with "…"); ``--wide`` shows everything whatever the width.
WIDE_COLUMNS = 100


def models(
    pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'cnn*'."),
    params: bool = typer.Option(
        True, "--params/--no-params", help="Build each model to count its parameters "
        "(imports TensorFlow: Keras needs a backend to build a model)."
    ),
    wide: bool = typer.Option(
        False, "--wide", help="Every column, nothing cut, whatever the terminal's width."
    ),
) -> None:
    """List the registered architectures: parameters, description, the notebook's accuracy."""
    from rich.table import Table

    from cifarkit.models import create_model, get_model_info, list_models

    names = list_models(pattern)
    if not names:
        err_console.print(f"no architecture matches {pattern!r}")
        raise typer.Exit(1)
    if params:
        from cifarkit.cli._tfquiet import quiet_tensorflow

        quiet_tensorflow()
    wide = wide or console.width >= WIDE_COLUMNS
    # No box lines: two spaces between columns leave the description ~40 of 80 columns.
    table = Table(title="cifarkit architectures", box=None, padding=(0, 1), pad_edge=False,
                  header_style="bold", caption="§: the seed notebook's section")
    table.add_column("name", style="bold cyan", no_wrap=True)
    if params:
        table.add_column("params", justify="right", no_wrap=True)
        if wide:
            table.add_column("trainable", justify="right", no_wrap=True)
    table.add_column("notebook", justify="right", no_wrap=True)
    table.add_column("description", no_wrap=not wide, overflow="fold" if wide else "ellipsis")
    for name in names:
        info = get_model_info(name)
        row = [name]
        if params:
            # Random init: counting must not need ImageNet weights (or a network).
            kwargs = {"weights": None} if info.pretrained else {}
            model = create_model(name, **kwargs)
            row.append(f"{model.count_params():,}")
            if wide:
                trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
                row.append(f"{trainable:,}")
        row += [info.notebook_accuracy or "—", info.description]
        table.add_row(*row)
    if wide:
        console.print(table)
    else:
        # Never wrap rows: what does not fit is cut with "…" (--wide shows it all).
        console.print(table, crop=True)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
