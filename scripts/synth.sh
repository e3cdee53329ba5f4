#!/usr/bin/env bash
# Synthesize every environment offline (no Docker, no AWS credentials) and lint the templates.
#   scripts/synth.sh [ENV ...]      default: dev staging prod
# Prints each environment's synth time; fails on any cdk-nag finding or cfn-lint error.
set -euo pipefail
cd "$(dirname "$0")/.."
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
export AWS_EC2_METADATA_DISABLED=true CDK_DISABLE_CLI_TELEMETRY=true
envs=("$@")
((${#envs[@]})) || envs=(dev staging prod)
for env in "${envs[@]}"; do
  start=$(date +%s%N)
  node_modules/.bin/cdk synth --quiet --no-notices -c env="$env" -o "cdk.out/$env"
  ms=$((($(date +%s%N) - start) / 1000000))
  printf 'synth %-8s %d.%03d s  -> cdk.out/%s\n' "$env" $((ms / 1000)) $((ms % 1000)) "$env"
done
templates=()
for env in "${envs[@]}"; do templates+=("cdk.out/$env/btcpred-$env.template.json"); done
.venv/bin/cfn-lint --config-file .cfnlintrc.yaml -- "${templates[@]}"
echo "cfn-lint: no errors or untriaged warnings in ${#templates[@]} templates"
