#!/bin/bash
# `make check-install`: run deploy/install.sh in minimal Debian roots of each
# architecture and check that the node it installs starts and answers.
#
# Why this exists: the install must work on a fresh Debian 12 or Raspberry
# Pi OS (aarch64) with nothing but the base system, where a missing wheel
# means a compiler and libgmp-dev. A developer machine has them all, so
# only a clean root shows what an operator's Pi will do. By hand, as root,
# never in the test suite (it downloads a Debian root and every dependency).
#
#   sudo deploy/check-install.sh [amd64] [arm64]     (default: both)
#   sudo SUITE=trixie deploy/check-install.sh amd64  (Debian 13; default bookworm)
#
# Needs debootstrap, and for a foreign architecture qemu-user-static with
# binfmt_misc registered (apt-get install debootstrap qemu-user-static
# binfmt-support). Debian roots are cached in $CHECK_DIR/<suite>-<arch>-base
# (default /var/tmp/mycelia-check); each run starts from a fresh copy.
# Writes $CHECK_DIR/<suite>-<arch>.log and prints a summary line per
# architecture.
set -eu

CHECK_DIR=${CHECK_DIR:-/var/tmp/mycelia-check}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
REPO=$(cd "$(dirname "$0")/.." && pwd)

[ "$(id -u)" -eq 0 ] || {
    echo "error: check-install needs root (debootstrap, chroot)" >&2
    exit 1
}
command -v debootstrap >/dev/null || {
    echo "error: apt-get install debootstrap qemu-user-static binfmt-support" >&2
    exit 1
}

# The host's pip settings (find-links, local indexes) name host paths: keep
# them out, as a fresh machine has none. Proxies pass through.
in_root() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        ${http_proxy:+http_proxy="$http_proxy"} ${https_proxy:+https_proxy="$https_proxy"} \
        chroot "$@"
}

mounted=""
cleanup() {
    for m in $mounted; do
        umount -l "$m" 2>/dev/null || true
    done
}
trap cleanup EXIT

check_arch() {
    arch=$1
    base=$CHECK_DIR/$SUITE-$arch-base
    root=$CHECK_DIR/$SUITE-$arch-run
    log=$CHECK_DIR/$SUITE-$arch.log
    mkdir -p "$CHECK_DIR"
    : >"$log"
    if [ ! -x "$base/usr/bin/apt-get" ]; then
        echo "== debootstrap $SUITE $arch" | tee -a "$log"
        rm -rf "$base"
        debootstrap --variant=minbase --arch="$arch" "$SUITE" "$base" "$MIRROR" >>"$log" 2>&1
    fi
    # A run killed before its cleanup leaves /proc, /sys and /dev bound in
    # the old root: unbind them, and never rm -rf through a mount.
    for fs in proc sys dev; do
        umount -l "$root/$fs" 2>/dev/null || true
        if mountpoint -q "$root/$fs" 2>/dev/null; then
            echo "error: $root/$fs is still mounted; unmount it first" >&2
            return 1
        fi
    done
    rm -rf --one-file-system "$root"
    cp -a "$base" "$root"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # Trust what the host trusts (a site's own or a proxy's CA): the root's
    # ca-certificates adds these to its bundle, which pip is pointed at.
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" \
        2>/dev/null || true
    for fs in proc sys dev; do
        mount --bind "/$fs" "$root/$fs"
        mounted="$root/$fs $mounted"
    done
    # The working tree as it is (what an unpacked release holds), without
    # build and test state.
    mkdir -p "$root/src/mycelia"
    tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.typecheck \
        --exclude=./.devnet --exclude='*.egg-info' --exclude=__pycache__ \
        --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=./.hypothesis \
        -cf - . | tar -C "$root/src/mycelia" -xf -

    echo "== install.sh --no-systemd ($arch)" | tee -a "$log"
    start=$(date +%s)
    in_root "$root" /src/mycelia/deploy/install.sh --no-systemd >>"$log" 2>&1
    install_s=$(($(date +%s) - start))
    key_before=$(sha256sum "$root/var/lib/mycelia/node.key" | cut -d' ' -f1)

    echo "== install.sh --no-systemd again: an upgrade in place ($arch)" | tee -a "$log"
    start=$(date +%s)
    in_root "$root" /src/mycelia/deploy/install.sh --no-systemd >>"$log" 2>&1
    upgrade_s=$(($(date +%s) - start))
    key_after=$(sha256sum "$root/var/lib/mycelia/node.key" | cut -d' ' -f1)
    [ "$key_before" = "$key_after" ] || {
        echo "FAIL $SUITE $arch: the second run changed the node key" | tee -a "$log"
        return 1
    }

    echo "== mycelia node run and mycelia status ($arch)" | tee -a "$log"
    mycelia="/opt/mycelia/bin/mycelia --config /etc/mycelia/mycelia.toml"
    # Any free ports, loopback only: the chroot shares the host's network.
    sets="--set rpc.port=0 --set metrics.enabled=false --set sensors.enabled=false"
    sets="$sets --set p2p.listen=/ip4/127.0.0.1/tcp/0 --set p2p.bootstrap=[] --set p2p.mdns=false"
    start=$(date +%s)
    # shellcheck disable=SC2086 # word splitting of $mycelia and $sets is meant
    in_root --userspec=mycelia:mycelia "$root" $mycelia $sets node run >>"$log" 2>&1 &
    node_pid=$!
    answered=0
    for _ in $(seq 300); do
        # shellcheck disable=SC2086
        if in_root --userspec=mycelia:mycelia "$root" $mycelia status >>"$log" 2>&1; then
            answered=1
            break
        fi
        kill -0 "$node_pid" 2>/dev/null || break
        sleep 1
    done
    status_s=$(($(date +%s) - start))
    # shellcheck disable=SC2086
    in_root --userspec=mycelia:mycelia "$root" $mycelia doctor >>"$log" 2>&1 || true
    kill "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    compiled=$(sed -n 's/^no wheel for [^ ]* of \([^:]*\):.*/\1/p' "$log" | sort -u | tr '\n' ' ')
    cleanup
    mounted=""
    if [ "$answered" -ne 1 ]; then
        echo "FAIL $SUITE $arch: the node did not answer mycelia status (see $log)" | tee -a "$log"
        return 1
    fi
    echo "OK $SUITE $arch: install ${install_s}s, upgrade ${upgrade_s}s, node answered in" \
        "${status_s}s; compiled: ${compiled:-nothing}" | tee -a "$log"
}

archs=${*:-amd64 arm64}
failed=0
for arch in $archs; do
    check_arch "$arch" || failed=1
done
exit "$failed"
