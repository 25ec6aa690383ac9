"""YAML files a careless or hostile author writes: the billion laughs, and files that are huge, deep or odd."""

from __future__ import annotations

import itertools

LEVELS = "abcdefghi"


def billion_laughs(tail: str = "") -> str:
    """About 700 bytes: nine anchors, each a list of nine aliases to the one before (9**9 strings expanded).

    ``tail`` is appended (e.g. the keys of a valid definition), so that only the aliases make it hostile.
    """
    lines = [f'{LEVELS[0]}: &{LEVELS[0]} ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, current in itertools.pairwise(LEVELS):
        aliases = ", ".join([f"*{previous}"] * 9)
        lines.append(f"{current}: &{current} [{aliases}]")
    return "\n".join(lines) + "\n" + tail


BOMB_DEFINITION = billion_laughs("name: Bomb\njob: repair_stuck_tasks\nexpression: '@daily'\n")
BOMB_INCOMING = billion_laughs(
    "name: Product catalog\nidentifier: product-catalog\nentity_key: sku\n"
    "subscriber:\n  type: file\n  base_folder: inbox/product-catalog\n  pattern: '*.csv'\n"
)
