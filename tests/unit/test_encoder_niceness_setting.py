"""``AUDIT_SERVICE_ENCODER_NICENESS``: the writer's encoder process's nice value, 0-19, 5 by default."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.settings import Settings


def test_the_encoder_niceness_defaults_to_five_and_takes_zero_to_nineteen() -> None:
    assert Settings.from_env({}).encoder_niceness == 5
    assert Settings.from_env({"AUDIT_SERVICE_ENCODER_NICENESS": "0"}).encoder_niceness == 0
    assert Settings.from_env({"AUDIT_SERVICE_ENCODER_NICENESS": "19"}).encoder_niceness == 19


@pytest.mark.parametrize("raw", ["-1", "20", "low", ""])
def test_an_encoder_niceness_outside_zero_to_nineteen_is_refused_by_name(raw: str) -> None:
    with pytest.raises(ConfigError, match="AUDIT_SERVICE_ENCODER_NICENESS"):
        Settings.from_env({"AUDIT_SERVICE_ENCODER_NICENESS": raw})
