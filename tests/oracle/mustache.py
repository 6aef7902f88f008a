"""Test oracle for `import-bin`: renders a TwiML Bin with pystache and with chevron, two Mustache
implementations that follow the Mustache spec, the way Twilio documents Bins: request parameters by
name, a parameter sent as `Name[]` as the list `Name`, and the `e164` function as a section lambda.

A name sent plain shows its first value, and wins over the same name sent as `Name[]` (as the
server's templates see them: `src/templates/context.rs`).

Reads one JSON object a line on stdin, {"bin": TEXT, "params": [[NAME, VALUE], ...]}, and writes one
JSON object a line, {"pystache": DOCUMENT, "chevron": DOCUMENT}, on stdout (null for an
implementation that raised, with the error on stderr).
"""

import json
import sys

import chevron
import pystache


def e164_of(rendered):
    # Bins' e164: the +digits number inside a phone string or SIP URI, else nothing.
    start = rendered.find("+")
    if start < 0:
        return ""
    digits = ""
    for c in rendered[start + 1:]:
        if not c.isdigit() or not c.isascii():
            break
        digits += c
    return "+" + digits if 1 <= len(digits) <= 15 else ""


def values(params):
    plain, lists = {}, {}
    for name, value in params:
        if name.endswith("[]"):
            lists.setdefault(name[:-2], []).append(value)
        else:
            plain.setdefault(name, value)
    return {**lists, **plain}


def pystache_render(bin_text, params):
    ctx = values(params)
    ctx["e164"] = lambda text: e164_of(pystache.render(text, ctx))
    return pystache.render(bin_text, ctx)


def chevron_render(bin_text, params):
    ctx = values(params)
    ctx["e164"] = lambda text, render: e164_of(render(text))
    return chevron.render(bin_text, ctx)


def attempt(render, case):
    # An implementation that fails on a case (chevron does on some standalone lines) is no oracle
    # for it: null, and the test compares with the other.
    try:
        return render(case["bin"], case["params"])
    except Exception as e:  # noqa: BLE001 - any failure of the library means the same here
        print(f"{render.__name__}: {type(e).__name__}: {e}", file=sys.stderr)
        return None


for line in sys.stdin:
    case = json.loads(line)
    out = {
        "pystache": attempt(pystache_render, case),
        "chevron": attempt(chevron_render, case),
    }
    print(json.dumps(out), flush=True)
