"""Write a Hugging Face checkpoint atomically (through :func:`crossenc.paths.atomic_output_dir`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crossenc.paths import atomic_output_dir


def write_checkpoint(
    model,
    tokenizer,
    target: Path,
    config_updates: dict[str, Any],
    *,
    overwrite: bool,
    merge: bool = False,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Save ``model`` and ``tokenizer`` to ``target`` with ``config_updates`` merged into config.json.

    ``overwrite=False`` raises FileExistsError when ``target`` exists (or appears meanwhile);
    ``merge`` keeps the files of an existing ``target`` that this does not write; ``extra(folder)``
    writes more files beside the checkpoint before it is installed.
    """
    with atomic_output_dir(target, overwrite=overwrite, merge=merge) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        config_path = staging / "config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **config_updates}, indent=2))
        if extra is not None:
            extra(staging)
    return target
