"""Every kind of report.json validates against docs/report-schema.json (the contract of report-schema.md)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema  # a dev dependency (make setup): a missing one fails here instead of skipping
import pytest

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "report-schema.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator, doc: dict) -> list[str]:
    """Every violation as ``path: message``, those inside ``oneOf`` alternatives included."""

    def flat(errs):
        for e in errs:
            yield e
            yield from flat(e.context or [])

    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in flat(validator.iter_errors(doc))]


def reported(cli, *args: str) -> dict:
    res = cli("report", *map(str, args), "--format", "json")
    assert res.exit_code in (0, 6), res.stderr
    return json.loads(res.stdout)


def test_compiled_cpu_fp32_and_int8(validator, digits_fp32, digits_int8):
    for art in (digits_fp32, digits_int8):
        doc = json.loads((art / "report.json").read_text())
        assert doc["compiled"] is True and doc["energy"]["totals"]["macs"] > 0
        assert errors(validator, doc) == [], art.name


@pytest.mark.slow
def test_compiled_loihi(validator, loihi_mlp):
    doc = json.loads((loihi_mlp / "report.json").read_text())
    assert doc["energy"]["totals"]["sops"]["exact"] > 0
    assert errors(validator, doc) == []


def test_report_of_models_artifacts_and_gates(validator, cli, tmp_path, digits_int8):
    ann = reported(cli, "zoo:digits-cnn")
    assert ann["compiled"] is False and ann["check"]["ok"] is True
    snn = reported(cli, "zoo:digits-snn-mlp", "--target", "loihi")
    assert snn["energy"]["totals"]["sops"] is not None
    on_loihi = reported(cli, "zoo:digits-cnn", "--target", "loihi")  # violations, unpriced MACs
    assert on_loihi["check"]["violations"] and on_loihi["energy"]["headline"]["energy_j"] is None
    artifact = reported(cli, digits_int8)
    assert artifact["artifact"] == str(digits_int8)
    base = tmp_path / "base.json"
    base.write_text(json.dumps(ann))
    gated = reported(cli, "zoo:digits-cnn", "--baseline", base)
    assert gated["gate"]["passed"] is True and gated["gate"]["deltas"]
    for name, doc in [
        ("ann", ann),
        ("snn", snn),
        ("ann on loihi", on_loihi),
        ("artifact", artifact),
        ("gate", gated),
    ]:
        assert errors(validator, doc) == [], name


def test_the_schema_rejects_what_the_docs_forbid(validator, digits_int8):
    """The schema is not vacuous: each broken copy of a valid report fails, naming the field."""
    doc = json.loads((digits_int8 / "report.json").read_text())
    assert errors(validator, doc) == []
    cases = {
        "energy/totals": lambda d: d["energy"]["totals"].pop("macs"),
        "energy/totals/macs": lambda d: d["energy"]["totals"].update(macs="337536"),
        "energy/layers/0/role": lambda d: d["energy"]["layers"][0].update(role="layer"),
        "energy/layers/0/other_ops": lambda d: d["energy"]["layers"][0]["other_ops"].update(flops=1),
        "energy/table/ref": lambda d: d["energy"]["table"].update(ref="cmos45-int8"),
        "files/model/sha256": lambda d: d["files"]["model"].update(sha256="abc"),
        "schema_version": lambda d: d.update(schema_version=2),
        "": lambda d: d.pop("files"),  # a compiled report lists its files
        "energy/headline/energy_j": lambda d: d["energy"]["headline"].update(
            complete=False
        ),  # no figure then
    }
    for where, breaks in cases.items():
        broken = copy.deepcopy(doc)
        breaks(broken)
        found = errors(validator, broken)
        assert any(e.startswith(f"{where}:") for e in found), (where, found)
