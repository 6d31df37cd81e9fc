#!/usr/bin/env bash
# Build .whl/: what an offline GPU node needs to run benchmarks/device_check.sh when it has CUDA,
# torch, torchvision, numpy, matplotlib, rich and pytest but no network (a typical CUDA image):
# trickbag and every plugin as wheels, plus the small pure-Python dependencies such images lack.
# The binary one (pydantic-core) is fetched for the node's Python (PYVER, default 3.12, x86-64).
# Versions are those installed here, so the set is one that works together.
#
#   benchmarks/offline_wheels.sh            # on a machine with the package index
#   # copy the checkout with .whl/ to the node, then there:  benchmarks/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
root=$(pwd)
rm -rf .whl && mkdir -p .whl
# build from a copy: pip writes build/ into the source tree
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$src"
(cd "$src" && python3 -m pip wheel -q --no-deps --no-build-isolation -w "$root/.whl" . ./plugins/*)
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
pins=()
for name in pydantic pydantic-core annotated-types typing-inspection typing-extensions tomli-w tomlkit typer annotated-doc; do
    pins+=("$name==$(version "$name")")
done
platforms=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64; do platforms+=(--platform "$p"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp "${platforms[@]}" -d .whl "${pins[@]}"
ls .whl
