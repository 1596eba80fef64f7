"""Service pods as their own user (sockdrill/cluster/podrun.py, pycopy.py), without a shop: the copies the
pods' user runs import every service, and a deployment's durable folder is that user's, in place or
relocated out of a private data dir, with an older version's files moved in. Root only (the user switch)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sockdrill.cluster import podrun, pycopy, stores

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="running pods as another user needs root")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder under /tmp everyone may traverse (pytest's own tmp_path sits in a 0700 parent)."""
    path = Path(tempfile.mkdtemp(prefix="sockdrill-podrun-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        podrun.purge_relocated(path / "home" / "data")
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def user() -> str:
    name = podrun.pod_user()
    assert name == podrun.POD_USER
    return name


def test_the_copies_import_every_service_as_the_pods_user(user: str, open_tmp: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = open_tmp
    real = pycopy.reachable_by
    # As from a checkout in a private folder: neither the site-packages nor the package are reachable.
    monkeypatch.setattr(pycopy, "reachable_by", lambda p, u: False if (
        "site-packages" in str(p) or Path(p) == Path(pycopy.__file__).resolve().parent.parent) else real(p, u))
    argv, env = podrun.command("catalogue", user, tmp_path / "cache")
    assert argv[1:] == ["-m", "sockdrill.shop", "catalogue"]
    code, site = env["PYTHONPATH"].split(os.pathsep)
    assert code.startswith(str(tmp_path)) and site.startswith(str(tmp_path))
    for folder in (code, site):  # root's, and readable by everyone
        assert Path(folder).stat().st_uid == 0 and stat.S_IMODE(Path(folder).stat().st_mode) == 0o755
    probe = ("import importlib, json, sockdrill\nfrom sockdrill.shop.manifest import SERVICE_MODULES\n"
             "[importlib.import_module(m) for m in SERVICE_MODULES.values()]\nimport aio_pika, re2, uvloop\n"
             "import os, sys, importlib.util\n"
             "uncompiled = [m.__file__ for m in list(sys.modules.values()) if (getattr(m, '__file__', None) or '')"
             ".endswith('.py') and not os.path.exists(importlib.util.cache_from_source(m.__file__))]\n"
             "print(json.dumps({'uid': os.getuid(), 'from': sockdrill.__file__, 'uncompiled': uncompiled}))")
    res = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", argv[0], "-c", probe],
                         env={"PATH": "/usr/bin:/bin", "SOCKDRILL_URL_SESSION_DB": "redis://unused", **env},
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout)
    assert seen["uid"] != 0 and seen["from"].startswith(code)
    # Every module came from bytecode root compiled: a pod cannot write its own, and compiling the standard
    # library at every start cost ~0.5 s of CPU per pod.
    assert seen["uncompiled"] == [], seen["uncompiled"][:10]
    # The same files again: no second copy of the distributions or of unchanged code.
    assert podrun.command("catalogue", user, tmp_path / "cache")[1]["PYTHONPATH"] == env["PYTHONPATH"]


@pytest.mark.parametrize("mode", [0o755, 0o700])
def test_a_deployments_state_is_the_pods_users(user: str, open_tmp: Path, mode: int) -> None:
    base = open_tmp / "home"
    base.mkdir(mode=mode)
    os.chmod(base, mode)
    folder = base / "data" / "stores" / "payment-gateway"
    folder.mkdir(parents=True)
    (folder / "ledger.sqlite").write_text("kept")  # where an older version kept it, root's
    real = podrun.state_dir(folder, user)
    relocated = mode == 0o700
    assert (folder / "state").is_symlink() is relocated
    assert (podrun.RELOCATED_PODS in real.parents) is relocated
    st = real.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == stores._ids(user)[0]  # type: ignore[index]
    assert (real / "ledger.sqlite").read_text() == "kept" and not (folder / "ledger.sqlite").exists()
    assert (real / "ledger.sqlite").stat().st_uid == st.st_uid
    assert podrun.state_dir(folder, user) == real  # stable across starts
    removed = podrun.purge_relocated(base / "data")
    assert (removed == [real]) is relocated and real.exists() is not relocated
