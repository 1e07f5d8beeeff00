"""SOPS-encrypted manifests: decrypt a YAML file as the `sops` tool wrote it, with age identities.

A SOPS file keeps its structure and keys in clear text and encrypts values one by one. Each
value is ``ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]``: AES-256-GCM with a 32-byte nonce
under the file's data key, with the value's key path (``stringData:key:``; a list item uses
its list's path) as additional data, so a value cannot be moved to another key. The data key
is encrypted to each recipient in ``sops.age[].enc`` (an armored age file). ``sops.mac`` is
SHA-512 over every value in document order (only the encrypted ones with
``mac_only_encrypted``), encrypted like a value with ``sops.lastmodified`` as additional
data: it is what makes a reordered list, an edited clear-text value or a removed value fail.
Which values are encrypted follows the file's own rules (``encrypted_regex``,
``unencrypted_suffix`` …), exactly as sops decides it: a clear-text value where the rules
say "encrypted" is refused, never taken as is.

Why these libraries: age is a real file format (X25519, scrypt, ChaCha20-Poly1305 stanzas,
armor) and pyrage binds the maintained Rust implementation (rage); AES-GCM comes from
cryptography, which the daemon already depends on and whose AESGCM accepts sops' 32-byte
nonces. Why the SOPS layer is written here: there is no maintained Python SOPS library that
decrypts age recipients (the Python ``sops`` package on PyPI is the long-retired 1.x,
PGP/KMS only), and shelling out to the Go binary would add a binary dependency and a
process per file. The layer is small: parse the value format, walk the tree, recompute the
MAC. It follows sops' ``sops.go`` and ``aes/cipher.go``; the compatibility fixtures
written by the real tool are in tests/fixtures/sops/.

The MAC hashes values as sops' Go YAML reader typed them, which differs from the
Kubernetes-style reading of documents.py for some clear-text scalars (``yes`` is a string
there, ``012`` an int); documents.py keeps each scalar's text for SOPS files so that
``_go_scalar`` can type it the Go way. The decrypted document keeps the Kubernetes reading.

Not supported, each a clear error: Shamir key groups (more than one), comment-based rules
(``encrypted_comment_regex``), and files without an age recipient (KMS, PGP, Vault).
Decrypted values exist only in memory: nothing here logs them or puts them in a message,
and documents that came out of this module are marked ``sensitive`` so the parser never
quotes their values in problems.

pyrage and cryptography are imported when a SOPS file is met: most repositories have
none, and the daemon should not pay for them at start.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path as FsPath
from typing import Any

from .documents import Document, Path
from .messages import format_path

_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.*),iv:(.+),tag:(.+),type:(.+)\]\Z", re.DOTALL)
_MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()  # sops' MACOnlyEncryptedInitialization
_UNSUPPORTED_RULES = ("encrypted_comment_regex", "unencrypted_comment_regex")
_RULES = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex")


class AgeKeyError(ValueError):
    """The age key file cannot be used; the message names the file."""


class SopsError(Exception):
    """A SOPS file that cannot be decrypted; ``line`` is where, the message never holds a value."""

    def __init__(self, *, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class AgeKeys:
    """The age identities of one key file (``AGE-SECRET-KEY-1…`` lines; ``#`` lines are comments)."""

    source: str                      # the file name, for messages
    identities: tuple[Any, ...]      # pyrage.x25519.Identity

    @classmethod
    def from_file(cls, path: str | FsPath) -> AgeKeys:
        try:
            text = FsPath(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AgeKeyError(f"{path}: age key file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a text file"
            raise AgeKeyError(f"{path}: cannot read the age key file: {reason}") from None
        return cls.from_text(text, source=str(path))

    @classmethod
    def from_text(cls, text: str, *, source: str) -> AgeKeys:
        from pyrage import x25519

        identities = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                identities.append(x25519.Identity.from_str(line))
            except Exception:  # noqa: BLE001 - pyrage raises its own error types; the line is a secret
                raise AgeKeyError(f"{source}:{number}: not an age identity (expected AGE-SECRET-KEY-1…)") from None
        if not identities:
            raise AgeKeyError(f"{source}: no age identity in the file (expected AGE-SECRET-KEY-1… lines)")
        return cls(source=source, identities=tuple(identities))


def is_sops(documents: list[Document]) -> bool:
    """Whether these documents are a SOPS file: one of them has a ``sops`` mapping at the top."""
    return any(isinstance(d.value, dict) and isinstance(d.value.get("sops"), dict) for d in documents)


def decrypt(documents: list[Document], keys: AgeKeys | None) -> list[Document]:
    """The documents of a SOPS file, decrypted and without their ``sops`` key; raises SopsError.

    ``documents`` must have been read with ``scalars=True``. sops takes the metadata from the
    first document and covers every document with one MAC, so the whole file decrypts or none of it.
    """
    first = documents[0]
    metadata = first.value.get("sops") if isinstance(first.value, dict) else None
    if not isinstance(metadata, dict):
        raise SopsError(line=first.line, message="SOPS file without sops metadata in its first document")
    meta = _Metadata(metadata, first)
    data_key = meta.data_key(keys)
    walk = _Walk(meta, data_key)
    result = []
    for document in documents:
        if not isinstance(document.value, dict):
            raise SopsError(line=document.line, message="a SOPS document must be a mapping")
        value = {k: v for k, v in document.value.items() if k != "sops"}
        walk.encrypted_paths = set()
        plain = walk.branch(value, (), document)
        result.append(replace(document, value=plain, sensitive=True, encrypted_paths=frozenset(walk.encrypted_paths)))
    meta.check_mac(walk.digest(), data_key)
    return result


class _Metadata:
    """The ``sops:`` mapping, checked."""

    def __init__(self, raw: dict[str, Any], document: Document) -> None:
        self.raw, self.document = raw, document
        for key in _UNSUPPORTED_RULES:
            if raw.get(key):
                raise self.error(key, "is not supported (comments are not read); use encrypted_regex")
        rules = [key for key in _RULES if raw.get(key)]
        if len(rules) > 1:
            raise self.error(rules[1], f"cannot be combined with {rules[0]}")
        self.rule = rules[0] if rules else ""
        pattern = raw[self.rule] if rules else ""
        if not isinstance(pattern, str):
            raise self.error(self.rule, "must be a string")
        self.pattern: str = pattern
        self.regex: Any = None
        if self.rule.endswith("_regex"):
            # RE2, as sops itself uses (Go's regexp): the same syntax, and linear time. The
            # pattern comes from the file, so Python's backtracking `re` would let whoever can
            # push make one parse take as long as they like.
            import re2  # here, not at the top: most repositories have no SOPS file, and re2 is 2.5 MB of RSS

            try:
                self.regex = re2.compile(self.pattern)
            except (re2.error, ValueError, RecursionError):
                raise self.error(self.rule, "is not a valid regular expression") from None
        self.mac_only_encrypted = raw.get("mac_only_encrypted") is True

    def line(self, key: str) -> int:
        return self.document.line_of(("sops", key))

    def error(self, key: str, message: str) -> SopsError:
        return SopsError(line=self.line(key), message=f"sops.{key}: {message}")

    def encrypted(self, path: tuple[str, ...]) -> bool:
        """sops' shouldBeEncrypted, without the comment rules."""
        if not self.rule:
            return True
        if self.rule == "unencrypted_suffix":
            return not any(part.endswith(self.pattern) for part in path)
        if self.rule == "encrypted_suffix":
            return any(part.endswith(self.pattern) for part in path)
        assert self.regex is not None
        matched = any(self.regex.search(part) for part in path)
        return matched if self.rule == "encrypted_regex" else not matched

    def recipients(self) -> list[tuple[str, str]]:
        """(recipient, armored data key) of every age recipient."""
        groups = self.raw.get("key_groups")
        if isinstance(groups, list) and groups:
            if len(groups) > 1:
                raise self.error("key_groups", "Shamir key groups are not supported; use one group of age recipients")
            entries = groups[0].get("age") if isinstance(groups[0], dict) else None
        else:
            entries = self.raw.get("age")
        found = []
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("enc"), str):
                found.append((str(entry.get("recipient", "?")), entry["enc"]))
        return found

    def data_key(self, keys: AgeKeys | None) -> bytes:
        recipients = self.recipients()
        if not recipients:
            raise SopsError(line=self.document.line_of(("sops",)),
                            message="SOPS file without age recipients: only age keys are supported")
        if keys is None:
            raise SopsError(line=self.document.line_of(("sops",)),
                            message="encrypted with SOPS, but no age key is configured "
                                    "(decryption.ageKeyFile in the daemon's config, --age-key for validate)")
        from pyrage import decrypt as age_decrypt

        for _recipient, armored in recipients:
            try:
                key = age_decrypt(armored.encode(), list(keys.identities))
            except Exception:  # noqa: BLE001 - pyrage's DecryptError and friends: try the next recipient
                continue
            if len(key) != 32:
                raise self.error("age", "the data key is not 32 bytes: not a file sops wrote")
            return bytes(key)
        shown = ", ".join(r[:20] + "…" for r, _ in recipients)
        raise SopsError(line=self.line("age") if "age" in self.raw else self.document.line_of(("sops",)),
                        message=f"cannot decrypt: no identity in {keys.source} matches the file's age "
                                f"recipients ({shown})")

    def check_mac(self, digest: str, data_key: bytes) -> None:
        stored, modified = self.raw.get("mac"), self.raw.get("lastmodified")
        if not isinstance(stored, str) or not stored:
            raise self.error("mac", "missing: the file's integrity cannot be checked")
        if not isinstance(modified, str):
            raise self.error("lastmodified", "missing or not a string")
        aad = _rfc3339(modified)
        if aad is None:
            raise self.error("lastmodified", "not an RFC 3339 time")
        try:
            plain = _open(stored, data_key, aad)
        except _Unopenable:
            raise self.error("mac", "MAC mismatch: the MAC itself was altered, or lastmodified was changed") from None
        if not hmac.compare_digest(plain.decode("utf-8", "replace").upper(), digest):
            raise self.error("mac", "MAC mismatch: the file was changed after sops encrypted it "
                                    "(a value, its order or a clear-text field)")


class _Unopenable(Exception):
    pass


def _open(value: str, data_key: bytes, aad: str) -> bytes:
    """The plaintext of one ENC[…] value; raises _Unopenable (never with the value in it)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    match = _ENC.match(value)
    if match is None:
        raise _Unopenable
    try:
        data, iv, tag = (base64.b64decode(part, validate=True) for part in match.groups()[:3])
    except (binascii.Error, ValueError):
        raise _Unopenable from None
    if len(tag) != 16 or not 8 <= len(iv) <= 128:
        raise _Unopenable
    try:
        return AESGCM(data_key).decrypt(iv, data + tag, aad.encode())
    except (InvalidTag, ValueError):
        raise _Unopenable from None


class _Walk:
    """Decrypts values in document order and hashes them for the MAC, as sops' Decrypt does."""

    def __init__(self, meta: _Metadata, data_key: bytes) -> None:
        self.meta, self.key = meta, data_key
        self.hash = hashlib.sha512()
        self.encrypted_paths: set[Path] = set()  # of the document being walked
        if meta.mac_only_encrypted:
            self.hash.update(_MAC_ONLY_ENCRYPTED_INIT)

    def digest(self) -> str:
        return self.hash.hexdigest().upper()

    def branch(self, value: Any, path: tuple[str, ...], document: Document, at: Path = ()) -> Any:
        if isinstance(value, dict):
            return {k: self.branch(v, (*path, k), document, (*at, k)) for k, v in value.items()}
        if isinstance(value, list):
            # A list item is encrypted under its list's path (sops' walkSlice keeps the path).
            return [self.branch(v, path, document, (*at, i)) for i, v in enumerate(value)]
        if value is None:
            return None  # sops neither decrypts nor hashes null
        encrypted = self.meta.encrypted(path)
        if encrypted:
            plain, digest_bytes = self.leaf(value, path, document, at)
            self.encrypted_paths.add(at)
        else:
            plain = value
            digest_bytes = _go_bytes(_go_scalar(document.scalars.get(at), value))
        if digest_bytes is not None and (encrypted or not self.meta.mac_only_encrypted):
            self.hash.update(digest_bytes)
        return plain

    def leaf(self, value: Any, path: tuple[str, ...], document: Document, at: Path) -> tuple[Any, bytes | None]:
        line = document.line_of(at)
        where = format_path(at)
        if value == "":
            return "", b""  # sops stores an empty string as it is
        if not isinstance(value, str):
            raise SopsError(line=line, message=f"{where}: not encrypted, but the file's sops rules say it must be")
        match = _ENC.match(value)
        if match is None:
            raise SopsError(line=line, message=f"{where}: not encrypted, but the file's sops rules say it must be")
        try:
            raw = _open(value, self.key, ":".join(path) + ":")
        except _Unopenable:
            raise SopsError(line=line, message=f"{where}: cannot decrypt this value: it was altered, moved from "
                                               "another key, or encrypted with another data key") from None
        kind = match.group(4)
        typed = _typed(raw, kind)
        if typed is _BAD:
            raise SopsError(line=line, message=f"{where}: the decrypted value is not a valid {kind}")
        return typed, (raw if kind == "bytes" else _go_bytes(typed))


_BAD = object()
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_GO_DECIMAL = re.compile(r"[+-]?[0-9]+\Z")


def _typed(raw: bytes, kind: str) -> Any:
    """A decrypted value as sops' cipher types it (str, int, float, bool, bytes)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _BAD
    if kind in ("str", "bytes"):
        return text  # bytes only say how sops read the file; a manifest holds text
    if kind == "int":
        return int(text) if _GO_DECIMAL.match(text) else _BAD
    if kind == "float":
        try:
            return _BAD if "_" in text else float(text)  # Python also reads 1_000, Go's ParseFloat does not
        except ValueError:
            return _BAD
    if kind == "bool":
        return True if text in _GO_TRUE else False if text in _GO_FALSE else _BAD
    return _BAD  # "comment" values belong to comments, which a manifest never has


# ---------------------------------------------------------------------- Go's view of values

_GO_NULL = ("", "~", "null", "Null", "NULL")
_GO_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_GO_SPECIAL_FLOAT = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf, "+.Inf": math.inf,
                     "+.INF": math.inf, "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
                     ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan}
_GO_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INT64 = 2**63


def _go_scalar(scalar: tuple[str, bool] | None, value: Any) -> Any:
    """A clear-text scalar as gopkg.in/yaml.v3 decodes it into an interface{} (what sops hashes).

    Without the text (a value from an alias), the Kubernetes-style value stands in."""
    if scalar is None:
        return value
    text, plain = scalar
    if not plain:
        return text
    if text in _GO_NULL:
        return None
    if text in _GO_BOOL:
        return _GO_BOOL[text]
    if text in _GO_SPECIAL_FLOAT:
        return _GO_SPECIAL_FLOAT[text]
    if not text or text[0] not in "0123456789+-.":
        return text
    digits = text.replace("_", "")
    match = _GO_INT.match(digits)
    if match:
        sign, body = match.groups()
        lower = body.lower()
        if lower.startswith(("0x", "0o", "0b")):
            number = int(lower[2:], {"x": 16, "o": 8, "b": 2}[lower[1]])
        else:  # Go's ParseInt(s, 0, 64), which yaml.v3 uses, reads a leading 0 as octal
            number = int(body, 8 if len(body) > 1 and body[0] == "0" else 10)
        number = -number if sign == "-" else number
        if -_INT64 <= number < 2 * _INT64:
            return number
    if _GO_FLOAT.match(digits):
        return float(digits)
    return text  # timestamps too: yaml.v3 keeps them as strings in an interface{}


def _go_bytes(value: Any) -> bytes | None:
    """sops' ToBytes: how a value is fed to the MAC (None: not hashed)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return _go_float(value).encode()
    return str(value).encode("utf-8", "surrogatepass")


def _go_float(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): the shortest digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return format(Decimal(repr(value)).normalize(), "f")


def _rfc3339(text: str) -> str | None:
    """``sops.lastmodified`` as Go's time.Format(time.RFC3339) writes it back (the MAC's AAD)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    offset = moment.utcoffset() or timedelta(0)
    base = moment.replace(microsecond=0, tzinfo=None).isoformat()
    if offset == timedelta(0):
        return base + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{base}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

