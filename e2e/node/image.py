#!/usr/bin/env python3
"""Writes a one-layer container image as a `docker save` archive, without Docker or a registry.

The real node's own images (the kubelet's pause image, the smoke test's busybox image) are a few
files each; this packs them so that `ctr -n k8s.io images import` takes them. The archive is
reproducible: fixed mtimes, owners and order, so the same files give the same image id.

    image.py OUT.tar NAME:TAG [--entrypoint JSON] [--cmd JSON] [--user UID[:GID]]
             [--env K=V]... [--file SRC:DEST[:MODE]]... [--symlink DEST:TARGET]... [--dir DEST]...
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("name", help="repository:tag, e.g. weir-smoke:e2e")
    p.add_argument("--entrypoint", type=json.loads, default=None)
    p.add_argument("--cmd", type=json.loads, default=None)
    p.add_argument("--user", default="")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:octal mode]")
    p.add_argument("--symlink", action="append", default=[], help="DEST:TARGET")
    p.add_argument("--dir", action="append", default=[], help="DEST (mode 1777 for /tmp)")
    return p.parse_args()


def layer_tar(args):
    """The layer: every parent directory, then the files, symlinks and directories asked for."""
    entries = {}  # path inside the image (no leading slash) -> TarInfo (+ data)

    def add_dirs(path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in entries:
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                entries[d] = (info, None)

    for spec in args.file:
        src, dest, *mode = spec.split(":")
        dest = dest.lstrip("/")
        with open(src, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo(dest)
        info.size = len(data)
        info.mode = int(mode[0], 8) if mode else (os.stat(src).st_mode & 0o777)
        add_dirs(dest)
        entries[dest] = (info, data)
    for spec in args.symlink:
        dest, target = spec.split(":", 1)
        dest = dest.lstrip("/")
        info = tarfile.TarInfo(dest)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        add_dirs(dest)
        entries[dest] = (info, None)
    for dest in args.dir:
        dest = dest.strip("/")
        info = tarfile.TarInfo(dest)
        info.type = tarfile.DIRTYPE
        info.mode = 0o1777 if dest == "tmp" else 0o755
        add_dirs(dest + "/x")
        entries[dest] = (info, None)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            info, data = entries[path]
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def main():
    args = parse_args()
    if ":" not in args.name.rsplit("/", 1)[-1]:
        sys.exit(f"image.py: image name {args.name!r} needs a tag (repository:tag)")
    layer = layer_tar(args)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "User": args.user,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + args.env,
            "Entrypoint": args.entrypoint,
            "Cmd": args.cmd,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "e2e/node/image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [args.name], "Layers": [layer_name]}]

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w") as out:
        for name, data in (
            (layer_name, layer),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, args.out)
    print(f"{args.name} {config_name[:-5]}")


if __name__ == "__main__":
    main()
