"""Kubernetes name and key rules: DNS-1123/1035 names, label keys and values, port names.

Each check returns ``None`` when the value is fine, else a short message in Kubernetes'
own words, so the pydantic field types (``fields.py``) and the cross-field checks
(``checks.py``) report the same sentence for the same mistake.
"""
from __future__ import annotations

import re

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_HAS_LETTER = re.compile(r"[a-z]")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")

# The image reference grammar of github.com/distribution/reference (what docker, podman and
# the kubelet parse), transcribed rather than imported: no maintained Python package
# implements it, and the grammar is a few stable lines of regular expression.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IMAGE_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_IMAGE_NAME_MAX = 255


def dns1123_label(value: str) -> str | None:
    """Names of namespaces, containers, volumes and service ports."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _DNS1123_LABEL.fullmatch(value):
        return ("must be a lowercase RFC 1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit")
    return None


def dns1123_subdomain(value: str) -> str | None:
    """Names of most objects (Deployment, Pod, ConfigMap...)."""
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return ("must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', "
                "starting and ending with a letter or digit")
    return None


def dns1035_label(value: str) -> str | None:
    """Service names: they become DNS names and environment variable prefixes."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _DNS1035_LABEL.fullmatch(value):
        return ("must be a lowercase RFC 1035 label: lowercase letters, digits and '-', "
                "starting with a letter and ending with a letter or digit")
    return None


def qualified_name(value: str) -> str | None:
    """Label and annotation keys: an optional DNS subdomain prefix and '/', then a name."""
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            return "prefix part must be non-empty"
        problem = dns1123_subdomain(prefix)
        if problem:
            return f"prefix part {problem}"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME_PART.fullmatch(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character")
    return None


def label_value(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if value and not _QUALIFIED_NAME_PART.fullmatch(value):
        return ("must be empty or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character")
    return None


def port_name(value: str) -> str | None:
    """Container port names (IANA service names), which probes and Services refer to."""
    if len(value) > 15:
        return "must be no more than 15 characters"
    if not _IANA_SVC_NAME.fullmatch(value):
        return "must contain only lowercase letters, digits and '-', starting and ending with a letter or digit"
    if "--" in value:
        return "must not contain consecutive hyphens"
    if not _HAS_LETTER.search(value):
        return "must contain at least one letter"
    return None


def env_name(value: str) -> str | None:
    if not _ENV_NAME.fullmatch(value):
        return "must consist of letters, digits, '_', '-' or '.', and must not start with a digit"
    return None


def config_key(value: str) -> str | None:
    """Keys of ConfigMap and Secret data: they become file names in volumes."""
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _CONFIG_KEY.fullmatch(value):
        return "must consist of alphanumeric characters, '-', '_' or '.'"
    if value in (".", "..") or value.startswith(".."):
        return "must not be '.' or '..' or start with '..'"
    return None


def image_reference(value: str) -> str | None:
    """A container image: ``[registry[:port]/]path[:tag][@digest]``, as the engine parses it.

    Anything else (``../x``, a URL, a transport such as ``docker://``) would reach the
    engine's API as a path or an option rather than an image name.
    """
    if not value:
        return "must not be empty"
    if any(c.isspace() for c in value):
        return "must not contain whitespace"
    rest, at, digest = value.partition("@")
    if at and not _IMAGE_DIGEST.fullmatch(digest):
        return "has an invalid digest (expected algorithm:hex, such as sha256:...)"
    # A ':' after the last '/' starts the tag; one before it belongs to a registry's port.
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    name, tag = (rest[:colon], rest[colon + 1:]) if colon > slash else (rest, None)
    if tag is not None and not _IMAGE_TAG.fullmatch(tag):
        return "has an invalid tag (letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-')"
    if len(name) > _IMAGE_NAME_MAX:
        return f"has a name longer than {_IMAGE_NAME_MAX} characters"
    if not _IMAGE_NAME.fullmatch(name):
        return ("is not a valid image reference: [registry[:port]/]name[:tag][@digest], with a lowercase "
                "name of letters, digits and single '.', '_', '__' or '-' between '/'-separated parts")
    return None
