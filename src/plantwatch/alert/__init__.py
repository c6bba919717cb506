"""Alerts: rules, per-instance state (pending → firing → resolved). Notifiers and the alarm
lifecycle (acknowledge, assign, escalate) build on this."""

from plantwatch.alert.rules import DEFAULT_RULES, Rule
from plantwatch.alert.state import AlertStates, Transition

__all__ = ["DEFAULT_RULES", "AlertStates", "Rule", "Transition"]
