"""Rules for configuration values: a rule is a function ``value -> None`` (allowed) or a
phrase saying what is allowed, e.g. ``integer(1)(0) == "must be an integer >= 1"``.

Models declare their keys' rules next to them (``config_rules``) with these helpers, and
:mod:`recbole_gtc.config.validation` applies them; this module depends on nothing else of the
package, so models and validation can both import it.
"""

import math


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range_phrase(low, high, low_open=False, high_open=False):
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high}")
    return " and ".join(parts)


def _in_range(value, low, high, low_open, high_open):
    if low is not None and (value <= low if low_open else value < low):
        return False
    if high is not None and (value >= high if high_open else value > high):
        return False
    return True


def _optional(rule, optional):
    if not optional:
        return rule

    def check(value):
        if value is None:
            return None
        problem = rule(value)
        if problem is None or not problem.startswith("must"):
            return problem
        return f"{problem}, or None"

    return check


def _ranged(is_kind, noun, low, high, low_open, high_open, optional):
    phrase = f"must be {noun} {_range_phrase(low, high, low_open, high_open)}".rstrip()

    def check(value):
        return None if is_kind(value) and _in_range(value, low, high, low_open, high_open) else phrase

    return _optional(check, optional)


def integer(low=None, high=None, optional=False):
    """An int (not a bool) in ``[low, high]``; ``optional`` also allows ``None``."""
    return _ranged(_is_int, "an integer", low, high, False, False, optional)


def number(low=None, high=None, low_open=False, high_open=False, optional=False):
    """A finite int or float (not a bool) in the range; ``*_open`` excludes the bound."""
    return _ranged(_is_number, "a number", low, high, low_open, high_open, optional)


def boolean(optional=False):
    return _optional(lambda v: None if isinstance(v, bool) else "must be True or False", optional)


def string(optional=False):
    return _optional(lambda v: None if isinstance(v, str) and v else "must be a non-empty string", optional)


def choice(*choices, optional=False, ignore_case=False):
    allowed = " | ".join(str(c) for c in choices)
    folded = {str(c).lower() for c in choices}

    def check(value):
        if ignore_case and isinstance(value, str) and value.lower() in folded:
            return None
        if not ignore_case and isinstance(value, (str, int, float)) and value in choices:
            return None
        return f"must be one of {allowed}"

    return _optional(check, optional)


def mapping(value_rule=None, optional=False):
    def check(value):
        if not isinstance(value, dict):
            return "must be a mapping {name: value}"
        if value_rule is not None:
            for k, v in value.items():
                problem = value_rule(v)
                if problem is not None:
                    return f"entry {k}={v!r} {problem}"
        return None

    return _optional(check, optional)


def int_or_int_list(low=1):
    phrase = f"must be an integer >= {low} or a non-empty list of them"

    def check(value):
        values = [value] if _is_int(value) else value
        if isinstance(values, list) and values and all(_is_int(v) and v >= low for v in values):
            return None
        return phrase

    return check
