"""Every `sam local invoke`, `sam local start-lambda`, `aws lambda invoke` and
`aws stepfunctions` command the docs show was run: each must be, word for word, one of the commands that
scripts/sam-local-invoke.sh and scripts/local-aws.sh ran (they write them to
target/sam-local/commands.txt and target/local-aws/commands.txt), unless
its code block says `not run here` (deploy-only commands, which need an AWS
account). Run by scripts/test.sh after tests/local/run.sh.

Usage: python3 scripts/check-doc-commands.py [FILE.md ...]
(default: every Markdown file git knows)."""

import re
import subprocess
import sys

RUN_LOGS = ["target/sam-local/commands.txt", "target/local-aws/commands.txt"]
COMMAND = re.compile(
    r"^(sam local (invoke|start-lambda)|python scripts/sam_host_network\.py local|aws stepfunctions|aws lambda invoke)\b"
)
EXEMPT = re.compile(r"#.*not run here")


def normal(command):
    """One line, single spaces, no line continuations, no trailing comment or `&`."""
    command = re.sub(r"\\\n", " ", command)
    command = re.sub(r"\s+#\s.*$", "", command)
    command = re.sub(r"\s*&$", "", command)  # started in the background: the same command
    return " ".join(command.split())


def code_blocks(path):
    """(first line number, lines) of each fenced code block."""
    block, start = None, 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                if block is None:
                    block, start = [], number + 1
                else:
                    yield start, block
                    block = None
            elif block is not None:
                block.append(line.rstrip("\n"))


def commands(lines):
    """(offset, command) of each command in a block, continuation lines joined."""
    i = 0
    while i < len(lines):
        first = i
        text = lines[i]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text += "\n" + lines[i]
        yield first, text.strip()
        i += 1


def main():
    files = sys.argv[1:] or subprocess.run(
        ["git", "ls-files", "*.md"], capture_output=True, text=True, check=True
    ).stdout.split()
    ran = set()
    for log in RUN_LOGS:
        try:
            with open(log, encoding="utf-8") as f:
                ran.update(normal(line) for line in f.read().replace("\\\n", " ").splitlines() if line.strip())
        except FileNotFoundError:
            sys.exit(f"{log} is missing: run scripts/sam-local-invoke.sh and scripts/local-aws.sh first")
    checked, missing = 0, []
    for path in files:
        for start, lines in code_blocks(path):
            if any(EXEMPT.search(line) for line in lines):
                continue
            for offset, command in commands(lines):
                if not COMMAND.match(command):
                    continue
                checked += 1
                if normal(command) not in ran:
                    missing.append(f"{path}:{start + offset}: {normal(command)}")
    if missing:
        print("commands the docs show that no script ran (run them in scripts/sam-local-invoke.sh or")
        print("scripts/local-aws.sh, or mark the block `# not run here: <why>`):")
        print("\n".join(f"  {m}" for m in missing))
        sys.exit(1)
    print(f"check-doc-commands: all {checked} sam local / aws stepfunctions commands in the docs were run")


if __name__ == "__main__":
    main()
