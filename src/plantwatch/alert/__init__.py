"""Alerts: rules (file and model), evaluation in the stream (instance states), alarms (the
lifecycle people act on: acknowledge, assign, escalate) and notifications."""

from plantwatch.alert.rules import Health, Level, Rule, Selector, Threshold
from plantwatch.alert.state import AlertStates, Transition

__all__ = ["AlertStates", "Health", "Level", "Rule", "Selector", "Threshold", "Transition"]
