#!/usr/bin/env bash
# The CTest `python`: builds the Python package (pip, against the installed torch and this
# build's libtopk_capi.so) into BUILD/python-site and runs its tests with pytest.
#   python/tests/ctest.sh BUILD_DIR SOURCE_DIR
# Skipped (exit 77) only when no python3 can import torch: Debian's python3-torch is installed
# by tools/install-deps.sh. TOPK_PYTHON names the interpreter to use.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
py=""
for c in "${TOPK_PYTHON:-}" python3 /usr/bin/python3; do
  [ -n "$c" ] || continue
  if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" >/dev/null 2>&1; then py=$c; break; fi
done
if [ -z "$py" ]; then
  echo "SKIPPED: no python3 here imports torch (Debian: apt-get install python3-torch, or run tools/install-deps.sh)"
  exit 77
fi
"$py" -c "import pytest, pip" || { echo "python: $py has torch but not pytest and pip (python3-pytest, python3-pip)"; exit 1; }
echo "python: $py, torch $("$py" -c 'import torch; print(torch.__version__)')"
site=$build/python-site
rm -rf "$site"
t0=$(date +%s)
TOPK_CAPI_LIB=$build/python/libtopk_capi.so "$py" -m pip install -q --no-build-isolation --no-deps \
  --no-index --disable-pip-version-check --target "$site" "$src/python"
t1=$(date +%s)
echo "python: built the package in $((t1 - t0)) s"
cd "$build"
PYTHONPATH=$site "$py" -m pytest -q -p no:cacheprovider "$src/python/tests"
