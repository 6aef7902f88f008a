"""Test oracle for `import-bin`: renders a TwiML Bin with pystache, a Mustache implementation that
follows the Mustache spec, the way Twilio documents Bins: request parameters by name, a parameter
sent as `Name[]` several times as the list `Name`, and the `e164` function as a section lambda.

Reads one JSON object a line on stdin, {"bin": TEXT, "params": [[NAME, VALUE], ...]}, and writes one
JSON string a line (the rendered document) on stdout.
"""

import json
import sys

import pystache


def context(params):
    ctx = {}
    for name, value in params:
        if name.endswith("[]"):
            ctx.setdefault(name[:-2], []).append(value)
        else:
            # A repeated plain name shows its first value.
            ctx.setdefault(name, value)

    def e164(text):
        # Bins' e164: the +digits number inside a phone string or SIP URI, else nothing.
        rendered = pystache.render(text, ctx)
        start = rendered.find("+")
        if start < 0:
            return ""
        digits = ""
        for c in rendered[start + 1:]:
            if not c.isdigit() or not c.isascii():
                break
            digits += c
        return "+" + digits if 1 <= len(digits) <= 15 else ""

    ctx["e164"] = e164
    return ctx


for line in sys.stdin:
    case = json.loads(line)
    print(json.dumps(pystache.render(case["bin"], context(case["params"]))), flush=True)
