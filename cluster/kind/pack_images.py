"""Writes several images that share layers into one docker-archive tar (`docker load` and
`ctr images import` read it), without a registry or a Docker build.

Usage: python3 pack_images.py SPEC.json OUT.tar

SPEC: {"layers": {"NAME": "/root/fs/dir", ...},
       "images": [{"ref": "repo:tag", "layers": ["NAME", ...], "entrypoint": [...],
                   "cmd": [...], "env": ["K=V"], "workdir": "/", "stop_signal": "SIGTERM",
                   "labels": {"key": "value"}}]}
Each layer directory is packed once with GNU tar (numeric owners), so images naming the same
layer share it (one copy in a content store). Prints one "ref sha256:<config digest>" per image.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(spec: dict, out: Path) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        digests: dict[str, str] = {}
        files: dict[str, Path] = {}
        for name, directory in spec["layers"].items():
            layer = Path(tmp) / f"{name}.tar"
            subprocess.run(
                ["tar", "-C", directory, "--numeric-owner", "--xattrs", "-cf", str(layer), "."],
                check=True,
            )
            digests[name] = _sha256(layer)
            files[name] = layer
        manifest = []
        configs: dict[str, bytes] = {}
        result = []
        for image in spec["images"]:
            config: dict = {
                "Env": image.get("env", [PATH]),
                "WorkingDir": image.get("workdir", "/"),
            }
            for key, field in (
                ("entrypoint", "Entrypoint"),
                ("cmd", "Cmd"),
                ("stop_signal", "StopSignal"),
                ("labels", "Labels"),
            ):
                if key in image:
                    config[field] = image[key]
            doc = {
                "architecture": "amd64",
                "os": "linux",
                "config": config,
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [f"sha256:{digests[n]}" for n in image["layers"]],
                },
            }
            data = json.dumps(doc, sort_keys=True).encode()
            config_digest = hashlib.sha256(data).hexdigest()
            configs[f"{config_digest}.json"] = data
            manifest.append(
                {
                    "Config": f"{config_digest}.json",
                    "RepoTags": [image["ref"]],
                    "Layers": [f"{digests[n]}/layer.tar" for n in image["layers"]],
                }
            )
            result.append((image["ref"], f"sha256:{config_digest}"))
        partial = out.with_suffix(out.suffix + ".partial")
        with tarfile.open(partial, "w") as tar:
            for name, layer in files.items():
                tar.add(layer, arcname=f"{digests[name]}/layer.tar")
            for name, data in configs.items():
                _add_bytes(tar, name, data)
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        partial.replace(out)
        return result


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    spec = json.loads(Path(sys.argv[1]).read_text())
    for ref, digest in pack(spec, Path(sys.argv[2]).resolve()):
        print(ref, digest)


if __name__ == "__main__":
    main()
