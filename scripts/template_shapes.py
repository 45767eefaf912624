"""Writes template.yaml once per shape of the stack into a directory:
DIR/{direct,sqs}-{true,false}.yaml, the DeliveryMode and CreateBuckets
parameters' defaults set to that shape, nothing else changed.

Static scanners (checkov) apply a template's conditions with the
parameters' defaults, so a resource only another shape creates (the SQS
queue of DeliveryMode=sqs, the EventBridge rule of CreateBuckets=false) is
scanned only in a copy whose defaults select it.

Usage: python scripts/template_shapes.py template.yaml DIR
"""

import re
import sys

SHAPES = [(mode, create) for mode in ("direct", "sqs") for create in ("true", "false")]


def main() -> None:
    source, out_dir = sys.argv[1], sys.argv[2]
    text = open(source, encoding="utf-8").read()
    for mode, create in SHAPES:
        out = text
        for name, value in (("DeliveryMode", mode), ("CreateBuckets", f"'{create}'")):
            out, n = re.subn(rf"(\n  {name}:\n    Type: String\n    Default: )\S+", rf"\g<1>{value}", out)
            if n != 1:
                sys.exit(f"template_shapes: the {name} parameter's Default line was not found in {source}")
        with open(f"{out_dir}/{mode}-{create}.yaml", "w", encoding="utf-8") as f:
            f.write(out)


if __name__ == "__main__":
    main()
