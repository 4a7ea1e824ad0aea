"""Download dataset files once, verify them, and keep them in a local cache.

Any dataset plugin can reuse this module: it names a file, its SHA-256 and the
canonical base address; :func:`fetch` returns the path of a verified copy.

Where files live
    ``<cache>/<group>/<filename>``, where ``<cache>`` is ``$ZOO_DATA_DIR`` if set,
    else ``$XDG_CACHE_HOME/zoo/data``, else ``~/.cache/zoo/data``.

Where files come from
    ``$ZOO_DATA_MIRROR`` if set, else the caller's canonical base. The mirror is a
    local folder or an ``http(s)://`` base address, in one of two layouts:

    - one sub-folder per dataset family, named after the group (``planetoid/``,
      ``mnist/``: the layout of the project's shared ``datasets/`` folder): when
      ``<mirror>/<group>/`` is an existing local folder, the group's files (and its
      ``SHA256SUMS``) are read from there;
    - the files directly under the mirror, under their plain names: used for a local
      folder without a ``<group>/`` sub-folder (this keeps a folder of one family's
      files, such as ``datasets/planetoid``, working).

    An http(s) mirror is never probed (a request per file to find the layout would
    cost a round trip and could mistake an error page for a folder): its files are
    read directly under it, unless its address holds the placeholder ``{group}``,
    which is replaced by the group (``https://host/datasets/{group}``); a local
    folder may use the placeholder too.

Guarantees
    A file is only ever put into the cache by an atomic ``os.replace`` of a fully
    written temporary file in the same folder, after its checksum matched; the
    temporary file is removed on every failure. A cached file whose checksum no
    longer matches is deleted and fetched again. Every failure a user can hit is a
    :class:`zoo.errors.DataError` holding one sentence with the cause and the fix.

Files without a pinned hash (``sha256=None``) are checked against a ``SHA256SUMS``
file (``sha256sum`` format) fetched from the same source, with a warning that the
hash is not pinned; without one they are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, NoReturn

from zoo.errors import DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "ZOO_DATA_DIR"
MIRROR_ENV = "ZOO_DATA_MIRROR"
DEFAULT_TIMEOUT_S = 30.0
SUMS_FILENAME = "SHA256SUMS"
# No dataset file the zoo fetches comes near this; a source that sends more (a mirror
# file linked to /dev/zero, an endless HTTP body) is refused before it fills the disk.
MAX_BYTES = 1 << 30

_CHUNK = 1 << 20
_SUMS_MAX_BYTES = 1 << 20
_TEMP_SUFFIX = ".part"
# A temporary file this old cannot belong to a live download (those finish or time
# out long before), so it is the leftover of a killed process and safe to delete.
_STALE_TEMP_S = 3600.0
_USER_AGENT = "zoo-data-fetch/1"


def cache_root() -> Path:
    """Return the root folder of the data cache (``ZOO_DATA_DIR`` or the XDG default)."""
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "zoo" / "data"


def source_for(base_url: str, group: str | None = None) -> str:
    """Return where files of ``group`` are read from: the mirror or ``base_url``.

    With ``ZOO_DATA_MIRROR`` unset this is ``base_url``. Otherwise it is the mirror
    with its ``{group}`` placeholder filled in, or, for a local folder that has a
    ``<group>/`` sub-folder, that sub-folder; else the mirror itself (see the module
    docstring). Without ``group`` the mirror is returned as it is set.
    """
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return base_url
    if group is None:
        return mirror
    if "{group}" in mirror:
        return mirror.replace("{group}", group)
    if not is_url(mirror):
        family = Path(mirror).expanduser() / group
        if family.is_dir():
            return str(family)
    return mirror


def mirror_file(filename: str, group: str) -> Path | None:
    """The local mirror's copy of ``filename`` of ``group``, if ``ZOO_DATA_MIRROR`` is a
    local folder that has it (either layout); None otherwise. Tests use it to tell
    whether a dataset is available offline."""
    source = source_for("", group)
    if not source or is_url(source):
        return None
    path = Path(source).expanduser() / filename
    return path if path.is_file() else None


def is_url(source: str) -> bool:
    """Tell whether ``source`` is an http(s) address rather than a local folder."""
    return source.lower().startswith(("http://", "https://"))


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    filename: str,
    sha256: str | None,
    *,
    group: str,
    base_url: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_bytes: int | None = None,
) -> Path:
    """Return the path of a verified cached copy of ``filename``, fetching it if needed.

    Args:
        filename: The file's plain name, both at the source and in the cache.
        sha256: Its expected hex SHA-256; ``None`` looks it up in the source's
            ``SHA256SUMS`` (with a warning, since such a hash is not pinned).
        group: The dataset family (e.g. ``planetoid``): the sub-folder of the cache,
            and of a mirror laid out with one sub-folder per family.
        base_url: Canonical base address, used when ``ZOO_DATA_MIRROR`` is unset.
        timeout: Seconds to wait on the network before giving up on a download.
        max_bytes: The most bytes the file may have (default :data:`MAX_BYTES`).

    Raises:
        DataError: The file cannot be fetched, fails its checksum, or cannot be cached.
    """
    _check_plain_name(filename, "file name")
    _check_plain_name(group, "group")
    source = source_for(base_url, group)
    if sha256 is None:
        sha256 = _hash_from_sums(filename, source, timeout)
    expected = sha256.lower()

    folder = cache_root() / group
    target = folder / filename
    if target.is_dir():
        raise DataError(f"the data cache entry {target} is a folder, not a file; remove it "
                        f"so that {filename} can be fetched")
    if target.is_file():
        try:
            actual = sha256_of(target)
        except OSError as err:
            raise DataError(
                f"cannot read the cached file {target}: {err.strerror or err}; "
                f"fix its permissions or set {DATA_DIR_ENV} to another folder"
            ) from None
        if actual == expected:
            return target
        # A cached file is only ever written verified, so a mismatch means it was
        # damaged (or the pin changed); drop it so a failed re-fetch leaves no bad copy.
        log.warning("cached %s fails its checksum; fetching it again", target.name)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create the data cache folder {folder}: {err.strerror or err}; "
            f"set {DATA_DIR_ENV} to a writable folder"
        ) from None
    _sweep_stale_temps(folder, filename)
    _download_verified(filename, expected, source, target, timeout, max_bytes or MAX_BYTES)
    return target


def _check_plain_name(name: str, what: str) -> None:
    # Names become path components: anything that could climb out of the cache is a
    # programming error in the calling plugin, not a user-fixable condition.
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"invalid {what} {name!r}: must be a plain name")


def _describe(source: str) -> str:
    """Say where a file came from, for messages (the mirror or the canonical address)."""
    if os.environ.get(MIRROR_ENV):
        return f"the mirror {source}"
    return source


def _advice(source: str) -> str:
    """The fix to suggest when the source gives a bad or missing file."""
    if os.environ.get(MIRROR_ENV):
        return (
            f"replace the file in the mirror or unset {MIRROR_ENV} "
            "to download from the canonical address"
        )
    return (
        "retry later, or download the file yourself into a folder "
        f"and point {MIRROR_ENV} at it"
    )


def _open_source(filename: str, source: str, timeout: float,
                 max_bytes: int = MAX_BYTES) -> BinaryIO:
    """Open ``filename`` at ``source`` for reading; DataError if that is impossible, if
    a local file is not a regular file, or if the source announces over ``max_bytes``."""
    if is_url(source):
        url = source.rstrip("/") + "/" + urllib.parse.quote(filename)
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        # is_url() admitted only http(s), so urlopen cannot be steered to file:// here.
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            err.close()
            reason = f"HTTP {err.code} {err.reason}"
        except urllib.error.URLError as err:
            reason = str(err.reason)
        except (TimeoutError, OSError) as err:
            reason = str(err) or type(err).__name__
        else:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                response.close()
                _too_large(filename, source, max_bytes)
            return response
        raise DataError(
            f"could not download {url}: {reason}; check your connection, or point "
            f"{MIRROR_ENV} at a folder holding the files"
        )
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{MIRROR_ENV} is {source!r}, which is neither an http(s) address nor an "
            f"existing folder; fix it or unset it to download from the canonical address"
        )
    path = folder / filename
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise DataError(
            f"cannot read {filename} from {_describe(source)}: {err.strerror or err}; "
            f"put the file there or unset {MIRROR_ENV} to download from the canonical address"
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise DataError(
            f"{filename} in {_describe(source)} is not a regular file (a folder, device, "
            f"FIFO or socket); {_advice(source)}"
        )
    if info.st_size > max_bytes:
        os.close(fd)
        _too_large(filename, source, max_bytes)
    return os.fdopen(fd, "rb")


def _too_large(filename: str, source: str, max_bytes: int) -> NoReturn:
    raise DataError(
        f"{filename} from {_describe(source)} is larger than {max_bytes:,} bytes, more than "
        f"any dataset file it could be; {_advice(source)}"
    )


def _download_verified(
    filename: str, expected: str, source: str, target: Path, timeout: float,
    max_bytes: int = MAX_BYTES,
) -> None:
    """Copy ``filename`` from ``source`` to ``target`` through a verified temp file."""
    try:
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{filename}.", suffix=_TEMP_SUFFIX, dir=target.parent
        )
    except OSError as err:
        raise DataError(
            f"cannot write to the data cache folder {target.parent}: {err.strerror or err}; "
            f"set {DATA_DIR_ENV} to a writable folder"
        ) from None
    temp = Path(temp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, _open_source(filename, source, timeout,
                                                      max_bytes) as src:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise DataError(
                        f"could not download {filename} from {_describe(source)}: "
                        f"{err or type(err).__name__}; check your connection, or point "
                        f"{MIRROR_ENV} at a folder holding the files"
                    ) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:  # a source that grows, or never ends
                    _too_large(filename, source, max_bytes)
                digest.update(chunk)
                try:
                    out.write(chunk)
                except OSError as err:
                    raise DataError(
                        f"cannot write {filename} into the data cache {target.parent}: "
                        f"{err.strerror or err}; free some space or set {DATA_DIR_ENV} "
                        "to another folder"
                    ) from None
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected:
            raise DataError(
                f"checksum mismatch for {filename} from {_describe(source)} "
                f"(expected {expected[:12]}…, got {actual[:12]}…): the file there is "
                f"corrupt or truncated; {_advice(source)}"
            )
        # mkstemp creates the file private (0600); a data cache may be shared.
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        # Whatever went wrong (including Ctrl-C), no partial file may stay behind.
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def _sweep_stale_temps(folder: Path, filename: str) -> None:
    """Delete temp files of ``filename`` left behind by a process that was killed."""
    now = time.time()
    for leftover in folder.glob(f".{filename}.*{_TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > _STALE_TEMP_S:
                leftover.unlink()


_sums_memo: dict[str, dict[str, str]] = {}


def _hash_from_sums(filename: str, source: str, timeout: float) -> str:
    """Look up ``filename`` in the source's SHA256SUMS (memoized per source)."""
    if source not in _sums_memo:
        try:
            with _open_source(SUMS_FILENAME, source, timeout, _SUMS_MAX_BYTES) as handle:
                text = handle.read(_SUMS_MAX_BYTES).decode("utf-8", errors="replace")
        except DataError:
            raise DataError(
                f"{filename} has no pinned checksum and {_describe(source)} offers no "
                f"readable {SUMS_FILENAME} to verify it against; add a {SUMS_FILENAME} "
                "there or pin the file's SHA-256 in the dataset plugin"
            ) from None
        _sums_memo[source] = parse_sums(text)
    sums = _sums_memo[source]
    if filename not in sums:
        raise DataError(
            f"{filename} has no pinned checksum and is not listed in the "
            f"{SUMS_FILENAME} of {_describe(source)}; add it there or pin its SHA-256 "
            "in the dataset plugin"
        )
    log.warning(
        "%s has no pinned checksum; verifying it against %s from %s only",
        filename,
        SUMS_FILENAME,
        source,
    )
    return sums[filename]


def parse_sums(text: str) -> dict[str, str]:
    """Parse ``sha256sum`` output (``<hex>  <name>`` lines) into ``{name: hex}``."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            continue
        # sha256sum marks binary mode with a leading '*' on the name.
        sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums

