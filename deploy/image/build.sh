#!/usr/bin/env bash
# Builds prewarm's image from a built binary, FROM scratch, with buildah:
#   cargo build --release -p prewarm-cli
#   deploy/image/build.sh target/release/prewarm prewarm:0.1.0
# The build context gets rootfs/: the binary, each shared library `ldd` names (and the loader),
# CA certificates, /etc/passwd and /etc/group with a nonroot user (65532), and an empty /tmp.
# BUILDAH_FLAGS defaults to what works without a container runtime's privileges
# (--isolation chroot --storage-driver vfs).
set -euo pipefail
binary=${1:?usage: build.sh BINARY [TAG]}
tag=${2:-prewarm:0.1.0}
here=$(cd "$(dirname "$0")" && pwd)
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/etc/prewarm" "$root/tmp"
chmod 1777 "$root/tmp"
install -m 0755 "$binary" "$root/usr/local/bin/prewarm"
# The libraries the binary loads, at the paths the loader looks for them.
ldd "$binary" | awk '/=> \//{print $3} /^\s*\/[^ ]+ \(/{print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
cp "$here/Containerfile" "$context/Containerfile"
# shellcheck disable=SC2086
buildah ${BUILDAH_STORAGE:---storage-driver vfs} build ${BUILDAH_FLAGS:---isolation chroot} \
  --layers=false -f "$context/Containerfile" -t "$tag" "$context"
