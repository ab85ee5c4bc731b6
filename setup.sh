#!/bin/sh
# mobikectl set-up for a fresh Debian 12 machine, as root.
#   ./setup.sh demo    install everything, then run the main job on the lab
#   ./setup.sh test    install everything (with the test tools), then run the whole test suite
#   ./setup.sh install install only
# Extra arguments after `test` go to pytest.
set -eu
cd "$(dirname "$0")"
here=$(pwd)
what=${1:-install}
[ $# -gt 0 ] && shift

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: must run as root (it installs Debian packages and builds network namespaces)" >&2
    exit 77
fi

APT_PACKAGES="strongswan-charon strongswan-swanctl libcharon-extra-plugins nftables iproute2 conntrack python3-venv procps iputils-ping"

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup.sh: installing Debian packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the host-wide strongSwan service from starting: the lab runs its own charons.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
    fi
    apt-get install -y -qq --no-install-recommends $missing >&2
    [ "${made_policy:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup.sh: creating the Python environment in $here/.venv" >&2
    /usr/bin/python3 -m venv .venv
fi
extra=""
[ "$what" = test ] && extra="[test]"
.venv/bin/pip install -q --disable-pip-version-check -e ".$extra" >&2
ln -sf "$here/.venv/bin/mobikectl" /usr/local/bin/mobikectl

case "$what" in
    install) echo "setup.sh: installed; try: mobikectl --help" >&2 ;;
    demo) exec mobikectl demo "$@" ;;
    test) exec .venv/bin/python -m pytest "$@" ;;
    *) echo "setup.sh: unknown step '$what' (use demo, test or install)" >&2; exit 2 ;;
esac
