"""What the benchmark modules share: where the shared data lives, and printing a summary at the end."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_summary(request, lines: list[str]) -> None:
    """Print lines after the benchmark tables (a module fixture's teardown is captured otherwise)."""
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if not lines or reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Every saved result names the machine: CPU model, cores, memory and package versions."""
    from dpi.bench.machine import machine_info as dpi_machine_info

    machine_info["dpi"] = dpi_machine_info()
