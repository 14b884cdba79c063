"""tqdm progress bars that share the terminal with log lines.

A bar is drawn only on an interactive terminal; in CI and in ``run.log`` the
per-epoch log lines carry the same information.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


@contextmanager
def progress(total: int, desc: str, unit: str = "epoch") -> Iterator[Callable[..., None]]:
    """Yield a function that advances the bar by one step (or by its argument)."""
    interactive = sys.stderr.isatty()
    with tqdm(total=total, desc=desc, unit=unit, disable=not interactive, leave=False, dynamic_ncols=True) as bar:
        if interactive:
            import logging
            with logging_redirect_tqdm([logging.getLogger("tinyml_modelzoo")]):
                yield lambda steps=1: bar.update(steps)
        else:
            yield lambda steps=1: bar.update(steps)
