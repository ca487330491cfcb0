"""The applications shipped with reelforge, one package each. The core finds them through the `reelforge.apps`
entry-point group (pyproject.toml), exactly as it finds a third-party one; it never imports this package."""
