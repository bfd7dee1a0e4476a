# The console's restart budget: at most `limit` restarts in any `window_s` seconds (issue 9 part
# 4). A lifetime count let anyone who can crash the console remotely (one malformed SIP message
# per crash) power the phone off after a few crashes spread over days; a window still stops a
# console that crashes at once on every start. Time is passed in (sans-I/O).

DEFAULT_LIMIT = 5
DEFAULT_WINDOW_S = 60.0


class RestartBudget:
    def __init__(self, limit=DEFAULT_LIMIT, window_s=DEFAULT_WINDOW_S):
        if limit < 1 or window_s <= 0:
            raise ValueError("restart budget needs limit >= 1 and a positive window")
        self.limit = limit
        self.window_s = window_s
        self._times = []  # monotonic times of the restarts still inside the window

    def allow(self, now):
        """Record a restart at `now` (monotonic seconds); -> False when it would be more than
        `limit` restarts within the last `window_s` seconds (the caller powers off)."""
        self._times = [t for t in self._times if now - t < self.window_s]
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True

    def recent(self, now):
        return len([t for t in self._times if now - t < self.window_s])
