"""Numbers given on the command line are bounded like those in manifests: exit 2, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from drover.cli.main import cli


@pytest.mark.parametrize("n", ["10001", "18446744073709551616", "1e3", "nan", "9" * 5000])
def test_scale_out_of_range_is_exit_2(n: str) -> None:
    result = CliRunner().invoke(cli, ["scale", "web", n, "--nats", "nats://127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert "is not a number of replicas (an integer 0-10000)" in result.stderr
    assert "Traceback" not in result.output + result.stderr
