"""One action per click: a click on Launch, Stop, Resume or Promote that comes back before the
page has shown what the first click did does nothing new.

Streamlit ignores clicks while it reruns the script for the first one, but the button is live
again before the page has redrawn to show the new run or study (a second or more on a busy
machine): a user who thinks the first click was lost clicks again, and that rerun carries the
same trigger and the same form values. Without this: a second run or study, or an error saying
the run is already stopped or resumed. So an action is remembered for a few seconds with what it
was asked to do, and the same request again within that time gets the first one's result back.
Launching the very same config twice on purpose (same seed: the same run) waits that long.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")
REPEAT_S = 3.0  # the same request this soon after the last action is the same click again
_LAST = "_ui_last_action"  # (action, request, when, result): one slot, so Stop, Resume, Stop acts


def act_once(action: str, request: Any, act: Callable[[], T]) -> T:
    """``act()``, or what it returned under REPEAT_S ago when this browser session's last action
    was the same ``action`` with the same ``request`` (JSON-able: the config, the ids)."""
    key = (action, json.dumps(request, sort_keys=True, default=str))
    last = st.session_state.get(_LAST)
    if last is not None and last[:2] == key and time.monotonic() - last[2] < REPEAT_S:
        return last[3]
    made = act()
    # Recorded before the caller's next Streamlit call: a rerun stops a script only at one.
    st.session_state[_LAST] = (*key, time.monotonic(), made)
    return made
