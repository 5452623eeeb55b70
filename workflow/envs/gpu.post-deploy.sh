#!/usr/bin/env bash
# Run by Snakemake (--use-conda) once, right after it creates this environment, with the environment active
# and the workflow's working directory (the repository root) as the current directory: the env files hold
# lt2's dependencies, this puts lt2 itself (the `lt2` command every rule calls) into the environment.
set -euo pipefail
pip install --no-deps -e .
