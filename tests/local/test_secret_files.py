"""Key files, token files, kubeconfigs and state files with secrets are 0600 from the moment they
exist, and their directories 0700: checked in a process with umask 0 (so a mode left to the umask
shows), watching with an audit hook (nothing patched) whether any of them is ever seen with a
wider mode while it holds data: a file written first and narrowed afterwards is caught when the
`os.chmod` audit event fires, before the chmod happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crossfed.secret_files import write_private

pytestmark = [pytest.mark.local]

WRITERS = textwrap.dedent('''
    import json, os, signal, sys, threading, time
    from pathlib import Path

    root = Path(sys.argv[1]).resolve()
    os.umask(0)
    seen, wider = set(), []

    def private(path):
        name = os.path.basename(path)
        return (name.endswith((".key", ".values.yaml")) or "kubeconfig" in name
                or name in ("token", "azure-identity-token", "state.json", "owner.json"))

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(args[0]))
            if path.startswith(str(root)) and private(path):
                seen.add(path)
        for path in list(seen):
            try:
                info = os.stat(path)
            except OSError:
                continue
            if info.st_mode & 0o077 and info.st_size:
                wider.append([event, path, oct(info.st_mode & 0o777)])

    sys.addaudithook(hook)

    from crossfed.cluster import microcluster
    from crossfed.environments.standins import LocalStandIns
    from crossfed.issuer.keys import SigningKey
    from crossfed.pki import RunCA
    from crossfed.secret_files import run_state_dir, write_private
    from crossfed.webhooks.charts import HelmRelease
    from crossfed.workload import process

    SigningKey.generate().write(root / "issuer")
    RunCA(root / "pki").server_context("listener", "127.0.0.1")
    LocalStandIns.start(root / "standins").stop()
    run_dir = run_state_dir("umask0", root=root / "runs")
    process._place_token(root / "pod", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
                         "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
    HelmRelease("eks", "eks", "1", "ns", None, {"tlsKey": "k"}).write_values(root / "helm")
    files = microcluster._make_pki(microcluster._Layout(root / "mc"), "node", "10.0.0.1")
    microcluster._kubeconfig(root / "mc" / "admin.kubeconfig", "https://127.0.0.1:6443",
                             files["ca"], files["admin"], files["admin-key"], "admin")
    existing = root / "existing" / "old.key"  # a file that exists with a wide mode, empty
    existing.parent.mkdir()
    existing.touch(mode=0o644)
    os.chmod(existing, 0o644)
    write_private(existing, b"new key material")

    # crossfed serve's state.json (admin secrets): a real serve, stopped once it is written
    serve_state = {}

    def stop_when_written():
        state = root / "serve" / "state.json"
        while not state.exists() or not state.stat().st_size:
            time.sleep(0.05)
        serve_state["serve/state.json"] = oct(state.stat().st_mode & 0o777)  # gone at stop
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=stop_when_written, daemon=True).start()
    from crossfed.cli import main
    sys.stdout = open(os.devnull, "w")
    main(["serve", "--state-dir", str(root / "serve")])
    sys.stdout = sys.__stdout__

    modes = {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777)
             for p in root.rglob("*") if p.is_file() and private(str(p))}
    modes.update(serve_state)
    dirs = {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777)
            for p in (root / "issuer", root / "pki", root / "standins" / "pki", run_dir,
                      root / "runs", root / "helm", root / "mc" / "pki", root / "serve")}
    print(json.dumps({"wider": wider, "modes": modes, "dirs": dirs, "seen": sorted(seen)}))
''')


def test_secret_files_are_owner_only_from_creation_even_with_umask_0(tmp_path: Path) -> None:
    script = tmp_path / "writers.py"
    script.write_text(WRITERS)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["wider"] == [], found["wider"][:5]  # never seen wider while holding data
    expected = {"issuer/sa-signer.key", "pki/listener.key", "standins/pki/issuer.key",
                "existing/old.key", "helm/eks.values.yaml", "mc/pki/ca.key",
                "mc/pki/admin.key", "mc/admin.kubeconfig", "serve/state.json",
                "serve/issuer/sa-signer.key",
                "pod/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}
    assert expected <= set(found["modes"]), sorted(found["modes"])
    assert {p: m for p, m in found["modes"].items() if m != "0o600"} == {}
    assert any(p.endswith("owner.json") for p in found["modes"])
    assert {d: m for d, m in found["dirs"].items() if m != "0o700"} == {}


def test_write_private_narrows_an_existing_file_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old")
    os.chmod(path, 0o666)
    write_private(path, "new")
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text() == "new"
