#!/usr/bin/env bash
# Installs the Debian packages the build needs. A no-op when they are all present.
#   tools/install-deps.sh         the build, the tests, the demo
#   tools/install-deps.sh fuzz    also clang with libFuzzer and its OpenMP (make fuzz)
set -euo pipefail
packages=(g++ make cmake ninja-build libgtest-dev nlohmann-json3-dev libcli11-dev libopenblas-dev
          wamerican-small gnuplot-nox  # wamerican-small: the cwe word list; gnuplot-nox: eval plots
          # the Python package's build and tests (the CTest `python`): Debian's torch (CPU),
          # its C++ headers, and what a torch extension build needs
          python3-torch libtorch-dev pybind11-dev python3-dev python3-pip python3-setuptools
          python3-pytest)
[ "${1:-}" = fuzz ] && packages+=(clang libclang-rt-dev libomp-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
