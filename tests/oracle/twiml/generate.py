"""Regenerates src/twilio/schema.json and tests/corpus/twiml/cases.jsonl from the pinned SDKs.

Run by tests/oracle/generate.sh with tests/oracle/.venv's python (twilio-python installed) and with
node_modules holding twilio-node and typescript. Deterministic: sorted keys, no clock, no randomness
that is not seeded.

    python generate.py --schema OUT.json --corpus OUT.jsonl
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus  # noqa: E402
import schema  # noqa: E402
import sdk_python  # noqa: E402


def run_node(*args, stdin=None):
    out = subprocess.run(
        ["node", os.path.join(HERE, "sdk_node.mjs"), *args],
        cwd=os.path.dirname(HERE),
        check=True,
        capture_output=True,
        text=True,
        input=stdin,
    ).stdout
    return json.loads(out)


def node_description():
    return run_node()


def node_build(docs):
    return run_node("--build", stdin=json.dumps(docs))


def python_description():
    import twilio

    return {"version": twilio.__version__, "channels": {c: sdk_python.describe(c) for c in sdk_python.ROOTS}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--schema", required=True)
    ap.add_argument("--corpus", required=True)
    args = ap.parse_args()
    with open(os.path.join(HERE, "overlay.json")) as f:
        overlay = json.load(f)
    py, nd = python_description(), node_description()
    built = schema.build(py, nd, overlay)
    with open(args.schema, "w") as f:
        json.dump(built, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    cases = corpus.generate(built, py, nd, node_build)
    with open(args.corpus, "w") as f:
        for case in cases:
            f.write(json.dumps(case, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"generate.py: {len(built['elements'])} elements, {len(cases)} corpus cases", file=sys.stderr)


if __name__ == "__main__":
    main()
