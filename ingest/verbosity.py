"""Verbosity presets: which event types ingest keeps (``AUDIT_LOG_VERBOSITY``)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named set of event types to keep; ``allowed_types`` is ignored when ``allow_all``."""

    name: str
    label: str
    description: str
    allowed_types: frozenset[str]
    allow_all: bool = False

    def allows(self, event_type: str | None) -> bool:
        """True when an event of this type is kept."""
        return self.allow_all or event_type in self.allowed_types

    def describe(self) -> dict[str, Any]:
        """The JSON form used by ``GET /v1/audit/verbosity``."""
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "allowed_types": sorted(self.allowed_types),
            "allow_all": self.allow_all,
        }


_MINIMAL = frozenset({"cas_grant", "cas_reconcile"})
_IL2 = frozenset({"auth", "cas_grant", "cas_decision", "credential_action"})

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("minimal", "Minimal", "Capability grants and reconciliations only.", _MINIMAL),
        Preset("standard", "Standard", "Minimal plus authentication, capability decisions and credential actions.",
               _MINIMAL | {"auth", "cas_decision", "credential_action"}),
        Preset("il2", "IL2", "Authentication, capability grants and decisions, and credential actions.", _IL2),
        Preset("soc2", "SOC 2", "IL2 plus agent delegation.", _IL2 | {"agent_delegation"}),
        Preset("verbose", "Verbose", "Every event type.", frozenset(), allow_all=True),
        Preset("il5", "IL5", "Every event type, as IL5 requires.", frozenset(), allow_all=True),
    )
}


def resolve(name: str) -> Preset:
    """The preset of a name; an unknown name allows everything."""
    preset = PRESETS.get(name)
    if preset is not None:
        return preset
    return Preset(name, "Custom", f"Unknown preset {name!r}: every event type is kept.", frozenset(), allow_all=True)


def describe_setting(preset: Preset) -> dict[str, Any]:
    """The body of ``GET /v1/audit/verbosity``."""
    body = preset.describe()
    body["verbosity"] = body.pop("name")
    body["available_presets"] = [item.describe() for item in PRESETS.values()]
    return body
