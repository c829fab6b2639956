#!/usr/bin/env bash
# Build the local test image `local/busybox:latest` without any container registry:
# a rootfs holding Debian's statically linked busybox (package busybox-static) plus applet
# symlinks, imported into the local Docker engine with `docker import`.
#
#   scripts/build-image.sh            # (re)build local/busybox:latest
#   IMAGE=local/other:tag scripts/build-image.sh
set -euo pipefail

IMAGE="${IMAGE:-local/busybox:latest}"

say() { printf 'build-image: %s\n' "$*"; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker CLI not found (run scripts/setup.sh)"
docker info >/dev/null 2>&1 || die "Docker engine not reachable (run scripts/setup.sh)"

# Find a *static* busybox: Debian's busybox-static installs /bin/busybox (= /usr/bin/busybox).
is_static() {
    # A static binary has no program interpreter; `file` is not always installed, ldd is (libc-bin).
    if command -v ldd >/dev/null 2>&1; then
        if ldd "$1" >/dev/null 2>&1; then return 1; fi
    elif grep -q 'ld-linux' "$1"; then
        return 1
    fi
    return 0
}
BUSYBOX=""
for cand in "${BUSYBOX_BIN:-}" /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null || true)"; do
    if [[ -n "$cand" && -x "$cand" ]] && is_static "$cand"; then
        BUSYBOX="$cand"
        break
    fi
done
[[ -n "$BUSYBOX" ]] || die "no statically linked busybox found: apt-get install -y busybox-static"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

say "assembling rootfs from $BUSYBOX"
mkdir -p "$root"/{bin,usr/bin,etc,tmp,www,root,proc,sys,dev,var/log}
install -m 0755 "$BUSYBOX" "$root/usr/bin/busybox"
chmod 1777 "$root/tmp"

count=0
while IFS= read -r applet; do
    [[ -z "$applet" || "$applet" == "busybox" || "$applet" == */* ]] && continue
    ln -sf /usr/bin/busybox "$root/usr/bin/$applet"
    ln -sf /usr/bin/busybox "$root/bin/$applet"
    count=$((count + 1))
done < <("$BUSYBOX" --list)
ln -sf /usr/bin/busybox "$root/bin/busybox"
for must in sh httpd wget nc sleep echo cat; do
    [[ -L "$root/bin/$must" ]] || die "busybox at $BUSYBOX lacks the '$must' applet"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
printf 'hello from drover\n' >"$root/www/index.html"

say "importing $count applets as $IMAGE"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .
docker import \
    --change 'CMD ["sh"]' \
    --change 'ENV PATH=/usr/bin:/bin' \
    --message "drover test image (busybox-static)" \
    "$work/rootfs.tar" "$IMAGE" >/dev/null

out="$(docker run --rm --init --network none "$IMAGE" sh -c 'echo ok')"
[[ "$out" == "ok" ]] || die "verification run printed '$out', expected 'ok'"
say "built $IMAGE (verified: docker run --rm --init $IMAGE sh -c 'echo ok' -> ok)"
