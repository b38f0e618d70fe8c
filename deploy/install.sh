#!/bin/bash
# Install, upgrade or remove a mycelia node in one command (docs/install.md).
#
# Why this exists: a community runs its node on a Raspberry Pi or a small
# server, not a developer's laptop. This script does every step of the
# install (apt prerequisites, a system user, a virtualenv, the node key,
# the config, the hardened systemd unit) and is safe to run again: a second
# run upgrades the code in place and keeps the key, the config and the
# store (the node migrates its own store when it starts; this script never
# opens it). Removing keeps the data unless --purge is confirmed.
#
#   sudo deploy/install.sh                 install or upgrade
#   sudo deploy/install.sh --uninstall     remove code and unit, keep data
#   sudo deploy/install.sh --purge [--yes] also remove data, config and user
#
# Run with --help for every option.
set -eu

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(dirname "$SCRIPT_DIR")
PREFIX=/opt/mycelia
DATADIR=/var/lib/mycelia
CONFDIR=/etc/mycelia
UNITDIR=/etc/systemd/system
SVC_USER=mycelia
PROFILE=auto
PYTHON=python3
DO_APT=1
DO_SYSTEMD=1
DO_PIP=1
ACTION=install
ASSUME_YES=0

usage() {
    cat <<'EOF'
usage: install.sh [options]

  --profile pi|server|auto  config profile (default auto: pi on arm, server otherwise)
  --prefix DIR              virtualenv (default /opt/mycelia)
  --datadir DIR             node data: key and store (default /var/lib/mycelia)
  --confdir DIR             config dir (default /etc/mycelia)
  --unitdir DIR             systemd unit dir (default /etc/systemd/system)
  --user NAME               service user (default mycelia; created if missing)
  --source DIR              the mycelia source tree (default: this script's repository)
  --python PATH             interpreter for the virtualenv (default python3)
  --no-apt                  install no apt packages (they must be there already)
  --no-systemd              write the unit but do not enable or start it (containers, chroots)
  --no-pip                  keep PREFIX's packages as they are (PREFIX/bin/mycelia must exist)
  --uninstall               remove the unit and the virtualenv; keep data, config and user
  --purge                   --uninstall, then remove data, config and user after confirmation
  --yes                     confirm --purge without asking
  -h, --help                this help
EOF
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

say() {
    printf '%s\n' "$*"
}

while [ $# -gt 0 ]; do
    case "$1" in
    --profile) PROFILE=${2:?--profile needs a value}; shift ;;
    --prefix) PREFIX=${2:?--prefix needs a value}; shift ;;
    --datadir) DATADIR=${2:?--datadir needs a value}; shift ;;
    --confdir) CONFDIR=${2:?--confdir needs a value}; shift ;;
    --unitdir) UNITDIR=${2:?--unitdir needs a value}; shift ;;
    --user) SVC_USER=${2:?--user needs a value}; shift ;;
    --source) SOURCE=${2:?--source needs a value}; shift ;;
    --python) PYTHON=${2:?--python needs a value}; shift ;;
    --no-apt) DO_APT=0 ;;
    --no-systemd) DO_SYSTEMD=0 ;;
    --no-pip) DO_PIP=0 ;;
    --uninstall) ACTION=uninstall ;;
    --purge) ACTION=purge ;;
    --yes) ASSUME_YES=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

case "$PROFILE" in
auto | pi | server) ;;
*) die "--profile must be pi, server or auto (not $PROFILE)" ;;
esac
for dir in "$PREFIX" "$DATADIR" "$CONFDIR" "$UNITDIR"; do
    case "$dir" in
    /*) ;;
    *) die "paths must be absolute: $dir" ;;
    esac
    # A typo such as --datadir / would make --purge remove the system.
    [ "$dir" != / ] || die "refusing / as a path"
done

CONFIG=$CONFDIR/mycelia.toml
UNIT=$UNITDIR/mycelia.service
MYCELIA=$PREFIX/bin/mycelia

# Root is needed for what touches the system: apt, users, systemd, and
# files owned by another user. A test or a container may need none of it.
need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root: run with sudo (or see --help)"
}

# Run a command as the service user (the key must be created by its owner,
# with its mode from birth, never chowned after).
as_user() {
    if [ "$(id -un)" = "$SVC_USER" ]; then
        "$@"
    else
        need_root "running mycelia as $SVC_USER"
        runuser -u "$SVC_USER" -- "$@"
    fi
}

confirm_purge() {
    [ "$ASSUME_YES" -eq 1 ] && return 0
    say "--purge removes the node's data for good: $DATADIR (the node key and the store),"
    say "$CONFDIR and the user $SVC_USER. A validator's key and votes cannot be recovered."
    printf 'type "purge" to confirm: '
    answer=
    read -r answer || true
    [ "$answer" = purge ] || die "not confirmed; nothing was removed (use --yes in scripts)"
}

uninstall() {
    if [ "$DO_SYSTEMD" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
        need_root "stopping the service"
        systemctl disable --now mycelia.service 2>/dev/null || true
    fi
    rm -f "$UNIT"
    if [ "$DO_SYSTEMD" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload || true
    fi
    rm -rf "$PREFIX"
    say "mycelia removed from $PREFIX and $UNIT"
}

if [ "$ACTION" = purge ]; then
    confirm_purge
    uninstall
    rm -rf "$DATADIR" "$CONFDIR"
    # Only a system account (as this script creates) is removed, never a person's.
    if [ "$SVC_USER" != root ] && uid=$(id -u "$SVC_USER" 2>/dev/null) && [ "$uid" -lt 1000 ]; then
        need_root "removing the user $SVC_USER"
        userdel "$SVC_USER" || true
    fi
    say "purged: $DATADIR and $CONFDIR removed"
    exit 0
fi
if [ "$ACTION" = uninstall ]; then
    uninstall
    say "kept: $DATADIR (key and store), $CONFIG and the user $SVC_USER"
    say "remove them too with: $0 --purge"
    exit 0
fi

# -- install or upgrade -------------------------------------------------------

if [ ! -f "$SOURCE/pyproject.toml" ] || [ ! -f "$SOURCE/deploy/mycelia.service" ]; then
    die "$SOURCE is not a mycelia source tree (use --source)"
fi

arch=$(uname -m)
if [ "$PROFILE" = auto ]; then
    case "$arch" in
    aarch64 | arm*) PROFILE=pi ;;
    *) PROFILE=server ;;
    esac
fi
case "$PROFILE" in
pi) PROFILE_FILE=$SOURCE/configs/raspberry-pi.toml ;;
*) PROFILE_FILE=$SOURCE/configs/server.toml ;;
esac
say "mycelia: installing for $arch, profile $PROFILE"

apt_install() {
    need_root "installing apt packages ($*)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if [ "$DO_APT" -eq 1 ]; then
    need_root "installing apt packages"
    apt-get update -q
    apt_install python3 python3-venv ca-certificates
fi

# The service user: a system account with no shell and no home of its own.
if ! id -u "$SVC_USER" >/dev/null 2>&1; then
    need_root "creating the user $SVC_USER"
    useradd --system --home-dir "$DATADIR" --no-create-home --shell /usr/sbin/nologin "$SVC_USER"
    say "created system user $SVC_USER"
fi
SVC_GROUP=$(id -gn "$SVC_USER")

# The virtualenv. Wheels first: only a dependency without a wheel for this
# platform (fastecdsa on aarch64, most packages on armv7) needs a compiler,
# so the compiler is installed only when a binary-only resolve fails.
if [ "$DO_PIP" -eq 1 ]; then
    # A virtualenv whose python no longer runs (the system's python3 moved
    # to a new minor version, Debian 12 -> 13) is made again, empty.
    if [ ! -x "$PREFIX/bin/python" ]; then
        "$PYTHON" -m venv "$PREFIX"
    elif ! "$PREFIX/bin/python" -c '' 2>/dev/null; then
        say "the virtualenv's python does not run: recreating $PREFIX"
        "$PYTHON" -m venv --clear "$PREFIX"
    fi
    "$PREFIX/bin/pip" install -q --upgrade pip
    # Everything but mycelia itself must come as a wheel in this dry run.
    resolve_log=$(mktemp)
    if "$PREFIX/bin/pip" install -q --dry-run --only-binary=:all: --no-binary=mycelia \
        "${SOURCE}[node]" >"$resolve_log" 2>&1; then
        say "every dependency has a wheel for $arch (on the index or in pip's cache): nothing to compile"
    else
        missing=$(sed -n 's/.*satisfies the requirement \([^ ]*\).*/\1/p' "$resolve_log" | head -n 1)
        say "no wheel for $arch of ${missing:-a dependency}: it will be compiled"
        if [ "$DO_APT" -eq 1 ]; then
            # fastecdsa (a py-libp2p pin) needs gmp; the others a C compiler.
            apt_install build-essential python3-dev libgmp-dev libffi-dev libssl-dev
        fi
    fi
    rm -f "$resolve_log"
    "$PREFIX/bin/pip" install -q --upgrade "${SOURCE}[node]"
fi
[ -x "$MYCELIA" ] || die "$MYCELIA is missing (run without --no-pip)"

# The config: written once from the profile, then the operator's; an
# upgrade never rewrites it (a newer profile is left beside it to compare).
mkdir -p "$CONFDIR"
new_config=$(mktemp)
trap 'rm -f "$new_config"' EXIT
# The datadir of this install. The server profile's encrypted key needs a
# passphrase credential set up by hand (docs/install.md), so the installed
# key is plain (mode 0600) and that line starts commented out.
sed -e "s|^datadir = .*|datadir = \"$DATADIR\"|" \
    -e 's|^passphrase_file = |# passphrase_file = |' \
    "$PROFILE_FILE" >"$new_config"
if [ -f "$CONFIG" ]; then
    if ! cmp -s "$new_config" "$CONFIG"; then
        cp "$new_config" "$CONFIG.dist"
        say "kept $CONFIG (the $PROFILE profile of this version is in $CONFIG.dist)"
    fi
else
    install -m 0640 "$new_config" "$CONFIG"
    say "wrote $CONFIG ($PROFILE profile)"
fi
# Readable by the service, writable by root only.
if [ "$(id -u)" -eq 0 ]; then
    chown root:"$SVC_GROUP" "$CONFDIR" "$CONFIG"
    chmod 0750 "$CONFDIR"
    chmod 0640 "$CONFIG"
fi

# The node key: created once, by its owner, and never again.
mkdir -p "$DATADIR"
if [ "$(id -u)" -eq 0 ]; then
    chown "$SVC_USER:$SVC_GROUP" "$DATADIR"
fi
chmod 0700 "$DATADIR"
if [ -e "$DATADIR/node.key" ]; then
    say "kept the node key $DATADIR/node.key"
else
    as_user "$MYCELIA" --config "$CONFIG" init --datadir "$DATADIR" >/dev/null
    say "created the node key $DATADIR/node.key"
fi

# The unit, with this install's paths.
mkdir -p "$UNITDIR"
unit_tmp=$(mktemp)
trap 'rm -f "$new_config" "$unit_tmp"' EXIT
sed -e "s|/opt/mycelia|$PREFIX|g" \
    -e "s|/etc/mycelia|$CONFDIR|g" \
    -e "s|/var/lib/mycelia|$DATADIR|g" \
    -e "s|^User=.*|User=$SVC_USER|" \
    -e "s|^Group=.*|Group=$SVC_GROUP|" \
    "$SOURCE/deploy/mycelia.service" >"$unit_tmp"
if [ "$DATADIR" != /var/lib/mycelia ]; then
    # StateDirectory= names /var/lib/mycelia only: open this datadir instead.
    sed -i -e '/^StateDirectory/d' -e "s|^UMask=|ReadWritePaths=$DATADIR\nUMask=|" "$unit_tmp"
fi
install -m 0644 "$unit_tmp" "$UNIT"
say "wrote $UNIT"

if [ "$DO_SYSTEMD" -eq 1 ]; then
    need_root "enabling the service"
    systemctl daemon-reload
    systemctl enable mycelia.service >/dev/null
    # restart: an upgrade runs the new code; the node migrates its store.
    systemctl restart mycelia.service
    say "mycelia.service enabled and (re)started"
fi

did=$(as_user "$MYCELIA" --config "$CONFIG" key show --did)
say ""
say "node identity  $did"
"$PREFIX/bin/python" - "$CONFIG" <<'EOF'
import sys
from mycelia.node.config import load_config
cfg = load_config(sys.argv[1])
print("p2p listen     " + " ".join(cfg.p2p.listen))
print(f"rpc            http://{cfg.rpc.host}:{cfg.rpc.port}")
EOF
say ""
say "next:"
if [ "$DO_SYSTEMD" -eq 1 ]; then
    say "  journalctl -u mycelia -f                                 the node's log"
else
    say "  runuser -u $SVC_USER -- $MYCELIA --config $CONFIG node run   start the node"
fi
say "  runuser -u $SVC_USER -- $MYCELIA --config $CONFIG status       is it healthy?"
say "  runuser -u $SVC_USER -- $MYCELIA --config $CONFIG doctor       what to fix"
say "  runuser -u $SVC_USER -- $MYCELIA --config $CONFIG backup DIR   back it up"
