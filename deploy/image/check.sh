#!/usr/bin/env bash
# Checks an image built by build.sh without a container runtime (this machine cannot run
# containers): mounts its root file system and runs the binary in it with chroot, against a real
# PostgreSQL: `prewarm migrate`, then `prewarm serve --check` on the Kubernetes ConfigMap's
# configuration (deploy/kubernetes/configmap.yaml).
#   deploy/image/check.sh prewarm:0.1.0 postgres://postgres@127.0.0.1:5432/prewarm_image
set -euo pipefail
tag=${1:?usage: check.sh TAG DATABASE_URL}
database=${2:?usage: check.sh TAG DATABASE_URL}
here=$(cd "$(dirname "$0")" && pwd)
storage=${BUILDAH_STORAGE:---storage-driver vfs}
# shellcheck disable=SC2086
container=$(buildah $storage from "$tag")
# shellcheck disable=SC2086
trap 'buildah $storage umount "$container" >/dev/null; buildah $storage rm "$container" >/dev/null' EXIT
# shellcheck disable=SC2086
root=$(buildah $storage mount "$container")
test -x "$root/usr/local/bin/prewarm"
# Nothing but what the binary needs: no shell, no package manager.
test ! -e "$root/bin/sh"
# The configuration Kubernetes mounts, from the ConfigMap.
python3 - "$here/../kubernetes/configmap.yaml" "$root/etc/prewarm/prewarm.toml" <<'PY'
import sys
text = open(sys.argv[1]).read()
body = text.split("prewarm.toml: |\n", 1)[1]
lines = [l[4:] if l.startswith("    ") else l.strip() for l in body.splitlines()]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
chroot --userspec=65532:65532 "$root" /usr/local/bin/prewarm --version
chroot --userspec=65532:65532 "$root" /usr/local/bin/prewarm migrate --database-url "$database"
PREWARM_DATABASE__URL="$database" chroot --userspec=65532:65532 "$root" \
  /usr/local/bin/prewarm serve --check --config /etc/prewarm/prewarm.toml >/dev/null
echo "image $tag: migrate and serve --check ran in its root file system"
