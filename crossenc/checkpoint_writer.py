"""Write a Hugging Face checkpoint atomically: a temporary folder beside the target, then one rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_checkpoint(model, tokenizer, target: Path, config_updates: dict[str, Any], *, overwrite: bool) -> Path:
    """Save ``model`` and ``tokenizer`` to ``target`` with ``config_updates`` merged into config.json.

    ``overwrite=False``: if ``target`` appears meanwhile (another process built it), keep that one.
    ``overwrite=True``: an old ``target`` is renamed aside, the new one renamed in, then the old one
    deleted; a reader sees the old checkpoint, none, or the new one, never a half-written one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        config_path = staging / "config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **config_updates}, indent=2))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp made it private
        if overwrite and target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
            return target
        try:
            os.replace(staging, target)
        except OSError:
            if overwrite:
                raise
            shutil.rmtree(staging, ignore_errors=True)  # built by someone else first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
