"""A small SOPS encryptor for tests: makes SOPS files the parser's tests need beyond the fixtures.

The fixtures in tests/fixtures/sops/ (written by the real `sops` tool) prove compatibility;
this helper, written from the same format notes, only builds files with contents the
fixtures do not have (an invalid field next to a secret, a Deployment with an encrypted
env value). It encrypts clear values exactly as sops does: AES-256-GCM with a 32-byte nonce,
the key path plus ':' as additional data, the data key in an armored age file, and the MAC
over the values in document order as sops' Go code types them.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyrage import encrypt as age_encrypt
from pyrage import x25519

LASTMODIFIED = "2025-01-02T03:04:05Z"


def armor(binary: bytes) -> str:
    body = base64.b64encode(binary).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN AGE ENCRYPTED FILE-----\n" + "\n".join(lines) + "\n-----END AGE ENCRYPTED FILE-----\n"


def enc(value: Any, key: bytes, aad: str) -> str:
    if isinstance(value, bool):
        kind, text = "bool", "True" if value else "False"
    elif isinstance(value, int):
        kind, text = "int", str(value)
    elif isinstance(value, float):
        kind, text = "float", repr(value)
    else:
        kind, text = "str", str(value)
    if text == "" and kind == "str":
        return ""
    iv = os.urandom(32)
    sealed = AESGCM(key).encrypt(iv, text.encode(), aad.encode())
    data, tag = sealed[:-16], sealed[-16:]
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"ENC[AES256_GCM,data:{b64(data)},iv:{b64(iv)},tag:{b64(tag)},type:{kind}]"


def mac_bytes(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, float):
        return (str(int(value)) if value.is_integer() else repr(value)).encode()
    return str(value).encode()


def sops_file(doc: dict[str, Any], *, recipient: str, encrypted_regex: str | None = None) -> str:
    """``doc`` encrypted to the age ``recipient``, as YAML text (values of mappings and lists only)."""
    key = os.urandom(32)
    digest = hashlib.sha512()
    rule = re.compile(encrypted_regex) if encrypted_regex else None

    def walk(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path) for v in value]
        if value is None:
            return None
        digest.update(mac_bytes(value))
        if rule is not None and not any(rule.search(p) for p in path):
            return value
        return enc(value, key, ":".join(path) + ":")

    body = walk(doc, ())
    sealed = age_encrypt(key, [x25519.Recipient.from_str(recipient)])
    metadata: dict[str, Any] = {
        "age": [{"recipient": recipient, "enc": armor(sealed)}],
        "lastmodified": LASTMODIFIED,
        "mac": enc(digest.hexdigest().upper(), key, LASTMODIFIED),
        "version": "3.10.2",
    }
    if encrypted_regex:
        metadata["encrypted_regex"] = encrypted_regex
    body["sops"] = metadata
    return yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
