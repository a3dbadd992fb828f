# Sourced (not run) by the scripts that need a Debian package they can install themselves:
#   source scripts/lib/apt-install.sh
#   apt_install_missing COMMAND PACKAGE      installs PACKAGE when COMMAND is not on the PATH
# Installs exactly that package and what it depends on (apt-get --no-install-recommends: no
# recommended extras), as root or through passwordless sudo. Returns non-zero, having said why,
# when it cannot; the caller decides whether that is fatal.
apt_install_missing() {
  local command=$1 package=$2 sudo=""
  command -v "$command" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$command: not found, and this is not a Debian-like system (no apt-get); install $package" >&2
    return 1
  fi
  if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
  echo "$command: not found, installing the Debian package $package (apt-get --no-install-recommends)"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package" || true
  command -v "$command" >/dev/null 2>&1 || { echo "$command: could not install $package" >&2; return 1; }
}
