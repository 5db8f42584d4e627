#!/usr/bin/env bash
# Installs ferry's Debian package with apt-get (which installs the libraries it
# depends on), as root:
#   bash deploy/install-package.sh build-deb/ferry_0.1.0_amd64.deb
# FERRY_UID=N first creates the system user and group "ferry" with id N (the
# image uses 10001, the uid the Kubernetes manifests run as); otherwise the
# package's postinst creates "ferry" with a free system uid.
# deploy/Containerfile and deploy/package-test.sh run exactly this.
set -euo pipefail

deb="$(realpath "$1")"
export DEBIAN_FRONTEND=noninteractive
if [[ -n "${FERRY_UID:-}" ]] && ! getent passwd ferry >/dev/null; then
  groupadd --system --gid "$FERRY_UID" ferry
  useradd --system --uid "$FERRY_UID" --gid ferry --home-dir /var/lib/ferry --no-create-home \
    --shell /usr/sbin/nologin ferry
fi
# apt needs package lists to resolve the dependencies (a fresh image has none)
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  apt-get update
fi
apt-get install -y --no-install-recommends "$deb"
