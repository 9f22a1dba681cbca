"""The key a run's pseudonyms are made with, kept so that a resumed run makes the same ones.

A pseudonym is ``HMAC-SHA-256(secret, label ‖ value)`` cut to a few hex digits
(`orchestrate.run.protection`). The run's *secret* is::

    secret = HMAC-SHA-256(master, "orchestrate-pseudonyms" ‖ salt)

- the *salt* is random for each run and written in its folder (``pseudonyms.json``,
  with the master key's id and where it came from): not secret, it only makes
  another run give the same person another token;
- the *master* key is never written in a run folder: it is ``ORCHESTRATE_PSEUDONYM_KEY``
  when set, else a key file made once for the user (``$XDG_CONFIG_HOME/orchestrate/
  pseudonym.key``, else ``~/.config/...``, mode 0600).

A resumed run (``--resume``) takes the salt of the folder it resumes and, with the
same master key, makes the same secret: the same value gets the same token in every
session, so prompts keep their fingerprints (reused agents stay reused), the trail
and the files name a person the same way throughout, and restoring finds every token.
Nothing maps a token back to its value on disk: the vault (token to value) is made
again in memory, as each session protects the same inputs and rows. A resume with
another master key is refused before anything runs (its tokens would not match).

The shards of one dataset run (``--shard K/N``, ``--shard auto``: separate processes,
often separate machines) are one run to whoever reads their results: the same
employee must get the same token in every shard, or the merged results name one
person several ways and restoring finds the tokens of one shard only. A shard
therefore takes no random salt but one derived from what makes the shards one run
(`shard_salt`: the workflow, the data file's SHA-256 and the shard count), the same in every shard; its secret is still keyed by the master key, so
tokens stay unguessable to anyone without it. Every shard must then have the same
master key: ``ORCHESTRATE_PSEUDONYM_KEY`` (the platform's secret store), since a
user's key file is made per machine (and per container: a pod's home dies with it).
``--shard auto`` (a platform's copies) refuses to start without the variable when
its policy makes pseudonyms (`check_shared_key`); ``--shard K/N`` uses the key file
when the variable is not set, which is shared by the shards of one machine and user,
and ``orchestrate merge`` refuses shards whose ``pseudonyms.json`` disagree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import TooLargeError, atomic_write_text, read_bytes_capped

__all__ = [
    "KEY_ENV",
    "PSEUDONYMS_FILE",
    "PSEUDONYMS_KIND",
    "RunSecret",
    "carried_secret",
    "check_shared_key",
    "input_check",
    "keep_secret",
    "kept_secret",
    "master_key",
    "new_secret",
    "shard_salt",
    "shard_secret",
]

PSEUDONYMS_FILE = "pseudonyms.json"
PSEUDONYMS_KIND = "pseudonyms"
KEY_ENV = "ORCHESTRATE_PSEUDONYM_KEY"
_KEY_FILE = Path("orchestrate") / "pseudonym.key"
_MAX_FILE = 64 * 1024


@dataclass(frozen=True)
class RunSecret:
    """What a run's pseudonyms are keyed by: its salt and the master key (never repr'd)."""

    salt: bytes
    master: bytes
    source: str  # where the master key came from, as the folder records it

    def __repr__(self) -> str:
        return f"RunSecret(source={self.source!r}, key_id={self.key_id!r})"

    @property
    def secret(self) -> bytes:
        return hmac.new(self.master, b"orchestrate-pseudonyms\0" + self.salt, hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        return key_id(self.master)

    def document(self) -> dict[str, Any]:
        """What ``pseudonyms.json`` holds: nothing that turns a token back into a value."""
        # "version" is the name schema_version had before kinds (2026-12); kept for readers of then.
        return {
            "kind": PSEUDONYMS_KIND,
            "schema_version": 1,
            "version": 1,
            "salt": self.salt.hex(),
            "key_id": self.key_id,
            "key": self.source,
        }


def key_id(master: bytes) -> str:
    """A short name for a master key: tells a resume that the key changed."""
    return hashlib.sha256(b"orchestrate-pseudonym-key-id\0" + master).hexdigest()[:16]


def master_key(env: Mapping[str, str] | None = None) -> tuple[bytes, str]:
    """The master key and where it came from: ORCHESTRATE_PSEUDONYM_KEY, else the user's key file
    (made on first use); a key for this process only when neither can be had."""
    env = os.environ if env is None else env
    value = env.get(KEY_ENV, "")
    if value:
        return value.encode("utf-8"), KEY_ENV
    path = _key_file(env)
    try:
        return _read_or_make(path), str(path)
    except OSError as exc:
        return secrets.token_bytes(32), f"this process only ({path}: {exc.strerror or exc})"


def _key_file(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / _KEY_FILE


def _read_or_make(path: Path) -> bytes:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by another run meanwhile
        return _read_key(path)
    try:
        os.write(fd, key.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key.encode("ascii")


def _read_key(path: Path) -> bytes:
    with open(path, "rb") as handle:
        key = handle.read(4096).strip()
    if len(key) < 32:
        raise OSError(f"{path} holds no key (fewer than 32 characters)")
    return key


def new_secret(env: Mapping[str, str] | None = None) -> RunSecret:
    """A new run's: a fresh salt under the master key."""
    master, source = master_key(env)
    return RunSecret(secrets.token_bytes(16), master, source)


def shard_salt(workflow: str, data_sha256: str, count: int) -> bytes:
    """The salt every shard of one dataset run derives alike: not secret (the master key is).

    Made of what the folder names of automatic shards are made of, never of an input's value
    (the salt is written in clear, and a digest of a value could be checked against guesses).
    """
    identity = json.dumps({"workflow": workflow, "data": data_sha256, "shards": count}, sort_keys=True)
    return hashlib.sha256(b"orchestrate-shard-run\0" + identity.encode("utf-8", "surrogatepass")).digest()[:16]


def shard_secret(salt: bytes, env: Mapping[str, str] | None = None) -> RunSecret:
    """A shard's: the salt its run's shards share, under the master key."""
    master, source = master_key(env)
    return RunSecret(salt, master, source)


def check_shared_key(what: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse copies a platform starts (`what`: where the shard came from) without a shared master key.

    Raises:
        UserInputError: ``ORCHESTRATE_PSEUDONYM_KEY`` is not set.
    """
    env = os.environ if env is None else env
    if not env.get(KEY_ENV, ""):
        raise UserInputError(
            f"--shard auto ({what}): this workflow's data_protection makes pseudonyms, and each copy would "
            f"make them with its own key file: set {KEY_ENV} to the same secret in every copy (from the "
            "platform's secret store) so that a person has one token in every shard"
        )


def input_check(secret: RunSecret, name: str, value: Any) -> str:
    """What ``invocation.json`` keeps of an input the policy protects: a check of the value given
    again on ``--resume``, keyed like the run's tokens (nobody without the master key can test a guess)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    message = f"orchestrate-input\0{name}\0{text}".encode("utf-8", "surrogatepass")
    return "hmac-sha256:" + hmac.new(secret.secret, message, hashlib.sha256).hexdigest()


def kept_secret(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's ``pseudonyms.json`` as written (salt and key id), None when it keeps none."""
    path = run_dir / PSEUDONYMS_FILE
    try:
        document = json.loads(read_bytes_capped(path, _MAX_FILE, special=False))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TooLargeError) as exc:
        raise UserInputError(f"{path}: cannot be read: {exc}") from None
    return document if isinstance(document, dict) else None


def carried_secret(run_dir: Path, env: Mapping[str, str] | None = None) -> RunSecret | None:
    """The secret of the run in `run_dir`, made again for its resume (None: the folder keeps none).

    Raises:
        UserInputError: The folder's pseudonyms were made with another master key, or its
            ``pseudonyms.json`` cannot be read: resuming would give people other tokens.
    """
    path = run_dir / PSEUDONYMS_FILE
    try:
        raw = read_bytes_capped(path, _MAX_FILE, special=False)  # a pipe in its place: refused, not waited on
    except FileNotFoundError:
        return None
    except TooLargeError:
        raise UserInputError(
            f"{path}: not a pseudonyms file this version can read (over {_MAX_FILE:,} bytes)"
        ) from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        document = json.loads(raw)
        # `kind` is written since 2026-12; a file from before has none and is read as it always was.
        if document.get("kind", PSEUDONYMS_KIND) != PSEUDONYMS_KIND:
            raise ValueError("another kind of document")
        salt = bytes.fromhex(document["salt"])
        recorded = str(document["key_id"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserInputError(f"{path}: not a pseudonyms file this version can read") from None
    master, source = master_key(env)
    if key_id(master) != recorded:
        raise UserInputError(
            f"{path}: this run's pseudonyms were made with another key (key id {recorded}, "
            f"from {document.get('key', 'unknown')}); resume it with that key ({KEY_ENV}, or the same "
            "user's key file) so that each person keeps their token"
        )
    return RunSecret(salt, master, source)


def keep_secret(run_dir: Path, secret: RunSecret) -> None:
    """Write ``run_dir/pseudonyms.json`` (the salt and the key's id; never a key or a value)."""
    atomic_write_text(run_dir / PSEUDONYMS_FILE, json.dumps(secret.document(), indent=2) + "\n")
