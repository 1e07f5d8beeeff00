"""Kubernetes resource quantities ("100m", "0.5", "128Mi", "1G", "1e3").

The kubelet role needs numbers (podman takes CPU as a fraction and memory in bytes),
while manifests carry Kubernetes' string form; this module is the one place that knows
the grammar. Exact arithmetic (Fraction) avoids float rounding ("0.1" CPU is exactly
100 millicores); values round up like Kubernetes' MilliValue/Value do.
"""
from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
# The exponent form is tried before the single-letter suffixes so "1E3" is 1000, not "1 exa" + junk.
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE]?)"
)
# Kubernetes stores quantities in int64 with at most nano precision; anything longer
# is a typo, and a bound here keeps exact arithmetic cheap on hostile input.
_MAX_TEXT = 64
_MAX_EXPONENT = 30
_MAX_VALUE = 2**63 - 1  # Kubernetes keeps quantities in int64 (bytes, or cores)


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a quantity; raises QuantityError with a one-sentence reason."""
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise QuantityError("must be a quantity such as 500m, 0.5, 128Mi or 1G")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError("must be a finite number")
        text = repr(value)
    elif abs(value) >= 10**_MAX_TEXT:  # str() of a huge int is slow (or refused) and pointless
        raise QuantityError("is too long to be a quantity")
    else:
        text = str(value)
    return _parse_text(text)


@functools.lru_cache(maxsize=4096)  # manifests repeat the same few quantities
def _parse_text(text: str) -> Fraction:
    if len(text) > _MAX_TEXT:
        raise QuantityError("is too long to be a quantity")
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise QuantityError(f"{text!r} is not a quantity; use a form such as 500m, 0.5, 128Mi or 1G")
    number = Fraction(match["number"])
    suffix = match["suffix"]
    if suffix in _BINARY:
        value = number * _BINARY[suffix]
    elif suffix in _DECIMAL:
        value = number * _DECIMAL[suffix]
    else:
        exponent = int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"{text!r} has an exponent out of range")
        value = number * Fraction(10) ** exponent
    if abs(value) > _MAX_VALUE:
        raise QuantityError(f"{text!r} is too large")
    return value


def parse_cpu(value: str | int | float) -> int:
    """CPU in millicores, rounded up: "100m" -> 100, "0.5" -> 500, 2 -> 2000."""
    quantity = parse_quantity(value)
    if quantity < 0:
        raise QuantityError("must not be negative")
    return math.ceil(quantity * 1000)


def parse_memory(value: str | int | float) -> int:
    """Memory in bytes, rounded up: "128Mi" -> 134217728, "1G" -> 1000000000."""
    quantity = parse_quantity(value)
    if quantity < 0:
        raise QuantityError("must not be negative")
    return math.ceil(quantity)
