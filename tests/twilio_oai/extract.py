#!/usr/bin/env python3
"""Extracts from Twilio's OpenAPI description the response schemas `tests/numbers.rs` checks the fake
Twilio REST API against, as one JSON Schema (draft 2020-12) document: `schemas.json`.

Run:  python3 tests/twilio_oai/extract.py [SPEC_DIR]      (default: ../shared/specs/twilio-oai beside the repository)
      python3 tests/twilio_oai/extract.py --check [SPEC_DIR]   fails when schemas.json is stale

The source files (twilio_api_v2010.json, twilio_messaging_v1.json) come from twilio/twilio-oai under
the MIT licence; LICENSE-twilio-oai beside this script is its notice, and schemas.json carries it too.

OpenAPI 3.0 is turned into JSON Schema: `nullable: true` becomes a `null` type (and a `null` enum
member), `$ref`s point into `$defs`, descriptions and `x-*` keys are dropped. Two things are made
stricter than the spec writes them, so that the fake cannot drift: every object schema lists all its
properties as required (Twilio sends every field, `null` when unset) and refuses other properties.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "schemas.json")

# name in schemas.json -> (spec file, path, method, status)
RESPONSES = {
    "incoming_phone_number_list": ("twilio_api_v2010.json", "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json", "get", "200"),
    "incoming_phone_number": ("twilio_api_v2010.json", "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json", "post", "200"),
    "application_list": ("twilio_api_v2010.json", "/2010-04-01/Accounts/{AccountSid}/Applications.json", "get", "200"),
    "application": ("twilio_api_v2010.json", "/2010-04-01/Accounts/{AccountSid}/Applications/{Sid}.json", "post", "200"),
    "service_list": ("twilio_messaging_v1.json", "/v1/Services", "get", "200"),
    "service": ("twilio_messaging_v1.json", "/v1/Services/{Sid}", "post", "200"),
    "service_phone_number_list": ("twilio_messaging_v1.json", "/v1/Services/{ServiceSid}/PhoneNumbers", "get", "200"),
}

# Form fields the updates may send, per resource: checked against the spec's request bodies.
REQUESTS = {
    "incoming_phone_number_update": ("twilio_api_v2010.json", "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json", "post"),
    "application_update": ("twilio_api_v2010.json", "/2010-04-01/Accounts/{AccountSid}/Applications/{Sid}.json", "post"),
    "service_update": ("twilio_messaging_v1.json", "/v1/Services/{Sid}", "post"),
}

# Twilio's error body is not in the OpenAPI description; this is the shape its SDKs read
# (twilio-python's TwilioRestException: code, message, more_info, status).
ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "more_info": {"type": "string"},
        "status": {"type": "integer"},
    },
    "required": ["code", "message", "more_info", "status"],
    "additionalProperties": False,
}


def convert(node, spec_name, defs, specs):
    if isinstance(node, list):
        return [convert(n, spec_name, defs, specs) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-") or key in ("description", "title", "examples", "example", "nullable"):
            continue
        if key == "$ref":
            name = value.rsplit("/", 1)[1]
            if name not in defs:
                defs[name] = None
                defs[name] = convert(specs[spec_name]["components"]["schemas"][name], spec_name, defs, specs)
            out["$ref"] = "#/$defs/" + name
            continue
        out[key] = convert(value, spec_name, defs, specs)
    if node.get("nullable"):
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out["$ref"]}, {"type": "null"}]}
        else:
            if "type" in out:
                out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = out["enum"] + [None]
    if out.get("type") in ("object", ["object", "null"]) and "properties" in out:
        out["required"] = sorted(out["properties"])
        out["additionalProperties"] = False
    return out


def build(spec_dir):
    specs = {}
    for name in ("twilio_api_v2010.json", "twilio_messaging_v1.json"):
        with open(os.path.join(spec_dir, name), encoding="utf-8") as f:
            specs[name] = json.load(f)
    with open(os.path.join(spec_dir, "LICENSE"), encoding="utf-8") as f:
        licence = f.read()
    defs = {}
    for name, (spec, path, method, status) in sorted(RESPONSES.items()):
        schema = specs[spec]["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        defs[name] = convert(schema, spec, defs, specs)
    for name, (spec, path, method) in sorted(REQUESTS.items()):
        body = specs[spec]["paths"][path][method]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
        defs[name] = {
            "type": "object",
            "properties": {k: {"type": "string"} for k in sorted(body["properties"])},
            "additionalProperties": False,
        }
    defs["error"] = ERROR
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated by tests/twilio_oai/extract.py from twilio/twilio-oai "
        "(twilio_api_v2010.json, twilio_messaging_v1.json). Do not edit. Source licence: "
        + licence.strip().replace("\n", " "),
        "$defs": dict(sorted(defs.items())),
    }


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    if args:
        spec_dir = args[0]
    else:
        # shared/ sits beside the clone (CI), or beside the worktrees' parent (/work/wt/NAME).
        candidates = [os.path.join(HERE, *[".."] * up, "shared", "specs", "twilio-oai") for up in (3, 4)]
        spec_dir = next((c for c in candidates if os.path.isdir(c)), None)
        if spec_dir is None:
            print("extract.py: no shared/specs/twilio-oai beside the repository; pass SPEC_DIR", file=sys.stderr)
            return 2
    text = json.dumps(build(spec_dir), indent=1, sort_keys=False) + "\n"
    if check:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                print("tests/twilio_oai/schemas.json is stale: run python3 tests/twilio_oai/extract.py", file=sys.stderr)
                return 1
        print("tests/twilio_oai/schemas.json is current")
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(json.loads(text)['$defs'])} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
