"""Packaged experiment configs: ``equijax train --config <name>`` finds them by name."""

from importlib import resources
from pathlib import Path


def resolve_config(name_or_path: str) -> Path:
    """A YAML path, or the packaged ``experiment/<name>.yaml``; raises `FileNotFoundError`."""
    path = Path(name_or_path)
    if path.exists():
        return path
    packaged = resources.files("equijax.configs") / "experiment" / f"{path.stem}.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    available = sorted(
        p.name[:-5]
        for p in (resources.files("equijax.configs") / "experiment").iterdir()
        if p.name.endswith(".yaml")
    )
    raise FileNotFoundError(
        f"config {name_or_path!r}: no such file, and no packaged config of that "
        f"name (packaged: {available})"
    )
