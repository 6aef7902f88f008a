"""Reads twilio-python's TwiML builders by running them; prints what they can build as JSON.

Run by generate.py only. Nothing here is typed by hand: every element, child, attribute name and
text argument comes from calling each builder method with a marker value for every keyword and
looking at the element it made (so attribute names are exactly as twilio-python writes them).
"""

import inspect
import json
import sys

from twilio.twiml import TwiML
from twilio.twiml import messaging_response, voice_response

ROOTS = {
    "voice": (voice_response, voice_response.VoiceResponse),
    "messaging": (messaging_response, messaging_response.MessagingResponse),
}


def marker(name):
    return "@" + name + "@"


def own_methods(cls):
    """Builder methods the class itself defines (nest/append/add_child come from TwiML)."""
    base = set(dir(TwiML))
    for name, fn in sorted(vars(cls).items()):
        if callable(fn) and not name.startswith("_") and name not in base:
            yield name, fn


def instance(cls):
    """An instance of a builder class, whatever its constructor's required arguments."""
    args = [
        marker(p.name)
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    return cls(*args)


def describe(channel):
    module, root = ROOTS[channel]
    elements = {}
    todo = [root]
    while todo:
        cls = todo.pop()
        eid = channel + ":" + cls.__name__
        if eid in elements:
            continue
        entry = {"children": [], "text": None, "attributes": {}}
        elements[eid] = entry
        for method_name, fn in own_methods(cls):
            params = list(inspect.signature(fn).parameters.values())[1:]
            named = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
            doc = {}
            for line in (fn.__doc__ or "").splitlines():
                line = line.strip()
                if line.startswith(":param ") and ":" in line[7:]:
                    key, _, text = line[7:].partition(":")
                    doc[key.strip()] = text.strip()
            parent = instance(cls)
            child = getattr(parent, method_name)(**{p.name: marker(p.name) for p in named})
            ccls = type(child)
            cid = channel + ":" + ccls.__name__
            if ccls.__module__ != module.__name__:
                raise SystemExit(f"{eid}.{method_name} builds {ccls!r} from another module")
            entry["children"].append(cid)
            todo.append(ccls)
            # What the method's keywords became: attribute names as written in the XML.
            attrs = {}
            for xml_name, value in child.attrs.items():
                pname = value[1:-1]
                attrs[xml_name] = {"param": pname, "doc": doc.get(pname.rstrip("_"), doc.get(pname, ""))}
            text = None
            if child.value is not None:
                pname = child.value[1:-1]
                p = next(p for p in named if p.name == pname)
                text = {"param": pname, "required": p.default is p.empty, "doc": doc.get(pname, "")}
            kid = {"tag": child.name, "text": text, "attributes": attrs, "method": method_name}
            previous = elements.get("@made:" + cid)
            if previous is not None and previous != kid:
                raise SystemExit(f"{cid} is built differently by two methods: {previous} {kid}")
            elements["@made:" + cid] = kid
    # The root: no attributes, no text.
    elements["@made:" + channel + ":" + root.__name__] = {
        "tag": instance(root).name, "text": None, "attributes": {}, "method": None,
    }
    out = {}
    for eid, entry in elements.items():
        if eid.startswith("@made:"):
            continue
        made = elements["@made:" + eid]
        out[eid] = {
            "tag": made["tag"],
            "channel": channel,
            "children": sorted(set(entry["children"])),
            "text": made["text"],
            "attributes": made["attributes"],
            "method": made["method"],
        }
    return {"root": channel + ":" + root.__name__, "elements": out}


def main():
    import twilio

    result = {"version": twilio.__version__, "channels": {c: describe(c) for c in ROOTS}}
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
