"""Where edgec finds what a package adds to it: Python entry points (``importlib.metadata``).

A target package declares in its own pyproject.toml::

    [project.entry-points."edgec.targets"]
    mychip = "mychip_edgec.target:MyChipTarget"

    [project.entry-points."edgec.cost_tables"]
    mychip-int8 = "mychip_edgec.costs:MYCHIP_INT8"      # an edgec.energy.tables.CostTable

and is found once installed, with no edit to edgec. edgec's own targets and their cost tables are
declared the same way (edgec's pyproject.toml). Entry points are the packaging standard for plug-ins
(pytest, setuptools and flake8 find theirs so); nothing here imports a plug-in until it is used.
"""

from __future__ import annotations

from functools import cache

TARGET_GROUP = "edgec.targets"
COST_TABLE_GROUP = "edgec.cost_tables"


@cache
def registered(group: str) -> dict[str, str]:
    """``{name: "module:attribute"}`` of every installed entry point in ``group`` (read once)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=group)}


def load(value: str) -> object:
    """The object an entry point's ``"module:attribute"`` names (its module is imported now)."""
    import importlib

    module, _, attr = value.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj
