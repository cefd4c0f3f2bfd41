"""The cluster cookie: the shared secret nodes prove to each other.

Like Erlang's ``~/.erlang.cookie``: an explicit argument wins, then the
``SNOWG_COOKIE`` environment variable, then the file ``<home>/cookie``, made
with a random value on first use so that nodes of one user on one machine
agree without configuration.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
import string
from pathlib import Path
from typing import Union

from .._errors import NodeError
from ._certfiles import default_home

__all__ = ["resolve_cookie"]

logger = logging.getLogger("snowg")

COOKIE_ENV = "SNOWG_COOKIE"
COOKIE_FILE = "cookie"
_COOKIE_LEN = 20

PathLike = Union[str, "os.PathLike[str]"]


def resolve_cookie(cookie: str | None = None, *, home: PathLike | None = None) -> str:
    """Return the cookie this node uses.

    Order: ``cookie`` if given; else ``$SNOWG_COOKIE``; else the contents of
    ``<home>/cookie`` (surrounding whitespace stripped). When that file does
    not exist it is created, mode 0600, with 20 random upper-case letters.

    Args:
        cookie: an explicit cookie.
        home: snowg's home directory; None means
            :func:`snowg.cluster._certfiles.default_home` (``$SNOWG_HOME`` or ``~/.snowg``).

    Returns:
        The cookie, never empty.

    Raises:
        NodeError: the cookie is empty (argument, variable or file); the
            cookie file is accessible by group or others (``chmod 600`` it);
            the cookie file cannot be read or created.
    """
    if cookie is not None:
        if not isinstance(cookie, str):
            raise NodeError(f"the cookie must be a str, not {type(cookie).__name__}")
        if not cookie:
            raise NodeError("the cookie is empty")
        return cookie
    env = os.environ.get(COOKIE_ENV)
    if env is not None:
        # Set-but-empty is refused rather than skipped: falling through to a
        # file cookie would give this node a cookie the cluster does not share.
        if not env:
            raise NodeError(f"${COOKIE_ENV} is set but empty")
        return env
    path = Path(home).expanduser() if home is not None else default_home()
    path = path / COOKIE_FILE
    if not path.exists():
        _create(path)
    return _read(path)


def _read(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as exc:
        raise NodeError(f"cookie file {path}: cannot read it ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise NodeError(f"cookie file {path}: not a regular file")
    # POSIX only: Windows has no group/other mode bits to check.
    if os.name == "posix" and st.st_mode & 0o077:
        raise NodeError(
            f"cookie file {path}: readable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}`"
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeError(f"cookie file {path}: cannot read it ({exc})") from exc
    if not value:
        raise NodeError(f"cookie file {path}: empty; put a secret in it or delete it to have a new one made")
    return value


def _create(path: Path) -> None:
    """Create the cookie file without ever exposing a partial or replaced one.

    Two nodes starting at once on a fresh home must end with the same cookie,
    so the file appears atomically and an existing one is never overwritten:
    write a private temporary file, then hard-link it into place (which fails
    if someone else got there first).
    """
    value = "".join(secrets.choice(string.ascii_uppercase) for _ in range(_COOKIE_LEN))
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(value)
            os.chmod(str(tmp), 0o600)
            try:
                os.link(str(tmp), str(path))
            except FileExistsError:
                return
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # No hard links on this filesystem: O_EXCL still never replaces
                # an existing cookie, at the cost of a brief partial-file window.
                _create_exclusive(path, value)
        finally:
            try:
                os.unlink(str(tmp))
            except OSError:
                pass
    except FileExistsError:
        return
    except OSError as exc:
        raise NodeError(f"cookie file {path}: cannot create it ({exc.strerror or exc})") from exc
    logger.info("created cookie file %s", path)


def _create_exclusive(path: Path, value: str) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value)
    os.chmod(str(path), 0o600)
