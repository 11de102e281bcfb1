"""Packs a root filesystem into a single-layer docker-archive tar that `ctr images import` and
`kind load image-archive` accept (no registry, no Docker needed).

Usage: python -m crossfed.cluster.pack_image ROOTFS IMAGE_REF OUT.tar
           [--entrypoint JSON] [--workdir DIR]
Written by hand because the format is three small JSON documents and a tar of the tree.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path


def pack(rootfs: Path, ref: str, out: Path, entrypoint: list[str], workdir: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w") as tar:
            for child in sorted(rootfs.iterdir()):
                tar.add(child, arcname=child.name)
        digest = hashlib.sha256(layer.read_bytes()).hexdigest()
        config = {
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": entrypoint, "WorkingDir": workdir,
                       "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                               "LANG=C.UTF-8"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest}"]},
        }
        config_bytes = json.dumps(config).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{digest}/layer.tar"]}]
        with tarfile.open(out, "w") as tar:
            tar.add(layer, arcname=f"{digest}/layer.tar")
            for name, data in ((config_name, config_bytes),
                               ("manifest.json", json.dumps(manifest).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rootfs", type=Path)
    parser.add_argument("ref")
    parser.add_argument("out", type=Path)
    parser.add_argument("--entrypoint", default="[]", help="JSON list, e.g. '[\"/bin/sh\"]'")
    parser.add_argument("--workdir", default="/")
    args = parser.parse_args()
    print(pack(args.rootfs, args.ref, args.out, json.loads(args.entrypoint), args.workdir))


if __name__ == "__main__":
    main()
