"""The outputs a configuration asks for, the same for `audimeter run` and `import`."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from audimeter.config import Config
from audimeter.outputs.base import Output
from audimeter.outputs.jsonl import JsonLinesOutput
from audimeter.store import Store


def make_outputs(
    config: Config, store: Store, out: IO[str], matomo_sink: Output | None
) -> list[Output]:
    """The configured outputs: Matomo's sink (made by the caller), [jsonl], else stdout."""
    outputs: list[Output] = [] if matomo_sink is None else [matomo_sink]
    jsonl = config.jsonl
    if jsonl is not None:
        path = None if jsonl.path == "-" else Path(jsonl.path)
        outputs.append(
            JsonLinesOutput(store, "jsonl", path=path, stream=out, limit=jsonl.outbox_limit)
        )
    if not outputs:
        outputs.append(JsonLinesOutput(store, "stdout", stream=out))
    return outputs
