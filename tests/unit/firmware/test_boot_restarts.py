# firmware.boot.restarts: the console's restart budget is per time window (issue 9 part 4), so
# crashes spread over time never add up to a power-off, and a console crashing at every start
# still stops. Runs under pytest and MicroPython.
from firmware.boot.restarts import RestartBudget
from tests.unit.firmware.check import raises


def test_budget_refuses_the_restart_past_the_limit_in_one_window():
    b = RestartBudget(5, 60.0)
    assert [b.allow(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == [True] * 5
    assert b.allow(5.0) is False
    assert b.recent(5.0) == 5


def test_crashes_spread_over_time_never_exhaust_it():
    b = RestartBudget(5, 60.0)
    # one crash every 13 s for an hour: at most 5 in any 60 s window
    assert all(b.allow(13.0 * i) for i in range(300))


def test_old_restarts_leave_the_window():
    b = RestartBudget(2, 10.0)
    assert b.allow(0.0) and b.allow(1.0)
    assert not b.allow(9.9)
    assert b.allow(10.0)  # the one at 0.0 is 10 s old: out of the window
    assert not b.allow(10.5)


def test_bad_budget_is_refused():
    raises(ValueError, RestartBudget, 0, 60.0)
    raises(ValueError, RestartBudget, 5, 0)
