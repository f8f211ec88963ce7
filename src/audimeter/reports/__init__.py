"""Audience reports: the radio industry's numbers (Cume, TLH, AQH, ...) from finished sessions.

`history` reads the sessions, `periods` cuts a period into quarter hours and slices, `metrics`
computes, `render` and `html` write the results.
"""
