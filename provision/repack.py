"""Pack the installed ``centrality`` distribution back into a wheel (see ``provision/wheel.py``).

A wheel is a zip of the package files and a ``.dist-info`` directory whose
``RECORD`` lists every file with its sha256 and size (PEP 427). An installed
distribution keeps that metadata, and its own ``RECORD`` says which files are
its own, so the wheel it was installed from can be made again without the
source or a build backend.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path, PurePosixPath

from centrality_core.errors import ConfigError

DIST = "centrality"
#: .dist-info files an installer writes about this installation: not part of a wheel.
INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
#: Earliest time a zip entry can carry: the same files give the same bytes.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def installed_files() -> tuple[str, list[tuple[str, bytes]]]:
    """The wheel's file name and its entries (archive path, bytes), ``RECORD`` excluded."""
    from importlib import metadata

    from .wheel import PACKAGES

    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise ConfigError("cannot make the agent wheel: the centrality distribution is not installed; "
                          "pass --wheel PATH") from None
    entries = []
    info_dir = None
    for f in dist.files or ():
        parts = PurePosixPath(str(f)).parts
        if not parts or parts[0] == ".." or "__pycache__" in parts or parts[-1].endswith((".pyc", ".pyo")):
            continue
        if parts[0].endswith(".dist-info"):
            info_dir = parts[0]
            if len(parts) == 2 and parts[1] in INSTALLER_FILES:
                continue
        elif parts[0] not in PACKAGES:
            continue
        path = Path(dist.locate_file(f))
        try:
            entries.append(("/".join(parts), path.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot make the agent wheel: installed file {path} is unreadable "
                              f"({exc.strerror}); reinstall centrality or pass --wheel PATH") from None
    if info_dir is None or not any(name.split("/")[0] in PACKAGES for name, _ in entries):
        raise ConfigError("cannot make the agent wheel: this centrality installation lists no package "
                          "files (an editable install without its source?); pass --wheel PATH")
    tag = _tag(dict(entries).get(f"{info_dir}/WHEEL", b""))
    name, version = info_dir[: -len(".dist-info")].rsplit("-", 1)
    return f"{name}-{version}-{tag}.whl", sorted(entries)


def _tag(wheel_file: bytes) -> str:
    for line in wheel_file.decode(errors="replace").splitlines():
        if line.startswith("Tag:"):
            return line.split(":", 1)[1].strip()
    return "py3-none-any"


def pack(entries: list[tuple[str, bytes]]) -> bytes:
    """The wheel's bytes: the entries in order, then a RECORD of them all."""
    info_dir = next(name.split("/")[0] for name, _ in entries if name.split("/")[0].endswith(".dist-info"))
    record = io.StringIO()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(_info(name), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.write(f"{name},sha256={digest},{len(data)}\n")
        record.write(f"{info_dir}/RECORD,,\n")
        z.writestr(_info(f"{info_dir}/RECORD"), record.getvalue())
    return buf.getvalue()


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def from_installed(*, cache: Path):
    """The agent wheel packed from the installed distribution, cached by content."""
    import os

    from .wheel import Wheel, sha256_file

    filename, entries = installed_files()
    h = hashlib.sha256()
    for name, data in entries:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    target = cache / f"installed-{h.hexdigest()[:24]}"
    final = target / filename
    if not final.is_file():
        target.mkdir(parents=True, exist_ok=True)
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(pack(entries))
        os.replace(tmp, final)
    return Wheel(final, sha256_file(final))
