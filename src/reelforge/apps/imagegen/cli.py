"""`reelforge models pull`: a diffusers pipeline from the hub into the models directory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer


def models_pull(hub_id: str, name: Annotated[str | None, typer.Option()] = None) -> None:
    """Download a diffusers pipeline from the hub into the models directory (needs internet)."""
    from reelforge import errors
    from reelforge.apps.imagegen.models.diffusers_sd import pull
    from reelforge.config import get_settings

    s = get_settings()
    try:
        path = pull(hub_id, s.models_dir, name)
    except errors.ReelforgeError as exc:
        typer.secho(f"error: {exc.message} ({exc.code})", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"saved to {path}")


def register(app: typer.Typer, groups: Mapping[str, Any]) -> None:
    """Adds `reelforge models pull`."""
    groups["models"].command("pull")(models_pull)
