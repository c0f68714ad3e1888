#!/usr/bin/env bash
# System packages the slow tests need, installed with apt-get when missing (idempotent):
#   chromium                 the console's browser tests (tests/ui/, Playwright drives it)
#   podman runc debootstrap  the container image test (tests/test_container.py)
#   uidmap fuse-overlayfs    what podman needs to run as configured there
# Installs only when a command is missing and we are root (or have passwordless sudo) on an
# apt system; otherwise says what is missing and returns 0: the tests needing a missing
# tool skip on a developer's machine and fail under CI=true.
set -uo pipefail

# command that must exist -> Debian package providing it
declare -A NEEDED=(
  [/usr/bin/chromium]=chromium
  [podman]=podman
  [runc]=runc
  [debootstrap]=debootstrap
  [newuidmap]=uidmap
  [fuse-overlayfs]=fuse-overlayfs
)

missing=()
for command in "${!NEEDED[@]}"; do
  if [[ $command == /* ]]; then
    [ -x "$command" ] && continue
  else
    PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null 2>&1 && continue
  fi
  missing+=("${NEEDED[$command]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${missing[*]} (no apt-get here: install them yourself)" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "system-deps: missing ${missing[*]} (not root: sudo apt-get install them)" >&2
  exit 0
fi

echo "system-deps: installing ${missing[*]}..." >&2
export DEBIAN_FRONTEND=noninteractive
apt=("${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600)  # wait for another apt-get
if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null; then
  # a fresh machine has no package lists yet
  "${apt[@]}" update -qq >/dev/null \
    && "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "system-deps: could not install ${missing[*]}" >&2
fi
exit 0
