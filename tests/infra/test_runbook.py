"""The operator's runbook (docs/deploy.md, section Alarms) covers every alarm the stack makes."""

from __future__ import annotations

from stacks.alarms import ALARMS, function_alarms
from stacks.signals import FUNCTION_KEYS
from tests.infra.conftest import ROOT


def test_every_alarm_has_a_row_in_the_runbook_with_its_meaning() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    section = text.split("## Alarms", 1)[1].split("\n## ", 1)[0]
    specs = ALARMS + tuple(s for key in FUNCTION_KEYS for s in function_alarms(key))
    for spec in specs:
        rows = [line for line in section.splitlines() if line.startswith(f"| `{spec.name}` |")]
        assert len(rows) == 1, f"{spec.name} has no row in docs/deploy.md#alarms"
        assert spec.meaning in rows[0], f"{spec.name}: the runbook's text is out of date"
