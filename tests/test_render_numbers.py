"""How figures read in the tables: prefixes, rounding, and small values that must not read as zero."""

from __future__ import annotations

import pytest

from cnncalc.render import human_bytes, human_count, human_ms, human_rate


@pytest.mark.parametrize(("value", "shown"), [
    # by hand: 999,999 / 1e6 = 0.999999, two decimals -> 1.00 of the next prefix (not '1000.00k')
    (999_999, "1.00M"),
    (999_994, "999.99k"),  # 999.994k keeps its prefix
    (999_999_999, "1.00G"),
    (999, "999"),
    (999.5, "1.00k"),  # rounds to 1000 with no decimals: that is 1.00k
    (1_234_567, "1.23M"),
    (0, "0"),
])
def test_count_prefix_follows_the_rounded_value(value, shown):
    assert human_count(value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    # by hand: 1,048,575 B / 1024 = 1023.999 KiB, one decimal -> 1024.0 KiB = 1.0 MiB
    (1_048_575, "1.0 MiB"),
    (1_048_000, "1023.4 KiB"),  # 1,048,000 / 1024 = 1023.44
    (2**30 - 1, "1.0 GiB"),
    (1023, "1023 B"),
    (1536, "1.5 KiB"),
])
def test_bytes_unit_follows_the_rounded_value(value, shown):
    assert human_bytes(value) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (4e-7, "<0.001"),  # 0.0004 ms: three decimals would print 0.000 for a time that is not zero
    (1e-12, "<0.001"),
    (0.0, "0.000"),  # a fused layer really costs nothing
    (5e-6, "0.005"),
    (0.0009996, "1.00"),  # 0.9996 ms rounds to 1.000 ms: shown with the precision of 1 ms and up
    (0.0999999, "100"),  # 99.9999 ms rounds to 100.00: whole milliseconds from 100 ms
    (0.099994, "99.99"),
    (0.25, "250"),
])
def test_milliseconds(seconds, shown):
    assert human_ms(seconds) == shown


@pytest.mark.parametrize(("per_s", "shown"), [
    (2628.8, "2,628.8"),  # thousands separated, one decimal
    (1 / 20.0, "0.05"),  # a 20 s batch-1 latency: 0.05 samples/s, which one decimal showed as 0.0
    (float("inf"), "-"),  # a network without layers takes no time: nothing to divide
])
def test_throughput(per_s, shown):
    assert human_rate(per_s) == shown
