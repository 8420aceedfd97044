#!/usr/bin/env bash
# Installs the Debian 12 packages slm needs to build and test. Skips apt when
# everything is already there, so repeated runs cost nothing.
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config git
  libgtest-dev googletest
  nlohmann-json3-dev libpcre2-dev libutf8proc-dev
  libcpp-httplib-dev libssl-dev libedit-dev libbz2-dev libcli11-dev
  clang-14 libclang-rt-14-dev bzip2
  g++-aarch64-linux-gnu qemu-user
  chromium  # headless browser for the web chat page test (tests/server/node)
  tmux      # a real terminal for the interactive chat tests (tests/cli)
)
if [ "${1:-}" = "--runtime" ]; then
  # Building and running slm alone needs no test, fuzz or cross tools.
  packages=(cmake ninja-build g++ pkg-config nlohmann-json3-dev libpcre2-dev libutf8proc-dev
            libcpp-httplib-dev libssl-dev libedit-dev libbz2-dev libcli11-dev libgtest-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
