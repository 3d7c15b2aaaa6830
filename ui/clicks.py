"""One launch per click: a click on a launch button that comes back before the page has shown
what the first click made makes nothing new.

Streamlit ignores clicks while it reruns the script for the first one, but the button is live
again before the page has redrawn to show the new run or study (a second or more on a busy
machine): a user who thinks the first click was lost clicks again, and that rerun carries the
same trigger and the same form values. So a launch is remembered for a few seconds with what it
was asked to make, and the same request again within that time gets the first one's result back.
Launching the very same config twice on purpose (same seed: the same run) waits that long.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")
REPEAT_S = 3.0  # the same request this soon after a launch is the same click again
_LAUNCHES = "_ui_launches"  # action -> (request, when, result)


def launch_once(action: str, request: Any, launch: Callable[[], T]) -> T:
    """``launch()``, or what it returned under REPEAT_S ago for the same ``action`` and the same
    ``request`` (JSON-able: the config, the names) in this browser session."""
    key = json.dumps(request, sort_keys=True, default=str)
    launches = st.session_state.setdefault(_LAUNCHES, {})
    previous = launches.get(action)
    if previous is not None and previous[0] == key and time.monotonic() - previous[1] < REPEAT_S:
        return previous[2]
    made = launch()
    # Recorded before the caller's next Streamlit call: a rerun stops a script only at one.
    launches[action] = (key, time.monotonic(), made)
    return made
