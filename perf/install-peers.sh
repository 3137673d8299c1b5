#!/usr/bin/env bash
# Installs the peers the perf harness compares Muster against, from Debian's packages:
#   dnsperf (DNS load generator), knot and nsd (W1 DNS peers), etcd-server (W2 KV peer),
#   nginx (W5 HTTP peer), wrk (optional HTTP cross-check).
# Idempotent: packages already installed are skipped. The packaged services are stopped and
# disabled afterwards, because the harness starts each peer itself on high loopback ports,
# pinned to the server core, with the configuration in perf/peers/.
set -euo pipefail

PKGS=(dnsperf knot nsd etcd-server nginx wrk)

if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    # Packaged daemons must not start on install (no systemd in containers, and they would
    # hold ports 53/80/2379 that nobody asked for).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "all peers already installed: ${PKGS[*]}"
fi

# Stop packaged services if an init system started them anyway.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    for s in knot nsd etcd nginx; do
        $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
    done
fi

for b in dnsperf knotd nsd etcd nginx wrk; do
    if path=$(command -v "$b" 2>/dev/null) || path=$(ls /usr/sbin/"$b" 2>/dev/null); then
        echo "  $b: $path"
    else
        echo "  $b: MISSING"
    fi
done
