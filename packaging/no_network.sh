#!/usr/bin/env bash
# Run a command with no network at all: a fresh network namespace holds only a loopback that is down,
# so any connect() fails with "Network is unreachable" whatever the program tries (sockets, DNS, proxies).
#   packaging/no_network.sh COMMAND [ARGS...]
# Tried in order: unshare (util-linux, unprivileged user namespace), bwrap, firejail. Exits 3 with a
# sentence when none of them can create a namespace here, rather than silently running online.
set -euo pipefail
if [ $# -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

if command -v unshare >/dev/null 2>&1; then
    # --map-current-user keeps the caller's uid inside (util-linux >= 2.38); older ones only have -r.
    for flags in "--user --map-current-user --net" "--user --map-root-user --net" "--net"; do
        # shellcheck disable=SC2086 - the flags are meant to split
        if unshare $flags true 2>/dev/null; then
            exec unshare $flags -- "$@"
        fi
    done
fi
if command -v bwrap >/dev/null 2>&1 && bwrap --dev-bind / / --unshare-net true 2>/dev/null; then
    exec bwrap --dev-bind / / --unshare-net -- "$@"
fi
if command -v firejail >/dev/null 2>&1 && firejail --quiet --net=none true 2>/dev/null; then
    exec firejail --quiet --net=none -- "$@"
fi
echo "no_network.sh: cannot create a network namespace here (no usable unshare, bwrap or firejail);" \
    "enable unprivileged user namespaces or run as root." >&2
exit 3
