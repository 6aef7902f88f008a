"""Builds src/twilio/schema.json from what the two SDKs build plus overlay.json (run by generate.py).

Pure: takes the two SDK descriptions (sdk_python.py, sdk_node.mjs) and the overlay, returns the schema
and the list of places where the SDKs disagree. How a disagreement is decided (see README.md):
- an element, child or attribute that either SDK writes is allowed (both are generated from Twilio's
  TwiML spec at slightly different times; rejecting what an official builder writes would reject TwiML
  Twilio's own tools produce);
- text is required only when both builders require it;
- value types come from twilio-node's declarations (twilio-python has no types); an attribute only
  twilio-python has is a string.
"""

SDK_TYPES = {"string", "boolean", "number", "enum", "enum_list"}


def is_method(name):
    return name == "method" or name.endswith("Method")


def is_url(name, overlay):
    rule = overlay["url_attributes"]
    return name in rule["names"] or any(name.endswith(s) for s in rule["suffixes"])


def merge_attribute(name, py, nd, overlay):
    """One attribute's schema entry from the python entry (or None) and the node entry (or None)."""
    source = "both" if py and nd else ("python" if py else "node")
    entry = {"source": source}
    if nd and nd["type"] in SDK_TYPES:
        entry["type"] = nd["type"]
        if "values" in nd:
            entry["values"] = list(nd["values"])
    elif nd:
        # number[] (Prompt attempt): a space-separated list of integers; kept as text.
        entry["type"] = "string"
        entry["sdk_type"] = nd["type"]
    else:
        entry["type"] = "string"
    # `paymentMethod` ends in Method too, but node says what it takes (ach-debit, credit-card).
    if is_method(name) and entry["type"] == "string" or entry.get("values") == overlay["methods"]["values"]:
        entry["type"] = "enum"
        entry["values"] = list(overlay["methods"]["values"])
        entry["type_source"] = overlay["methods"]["source"]
    elif entry["type"] == "string" and is_url(name, overlay):
        entry["type"] = "url"
    return entry


def build(py, nd, overlay):
    disagreements = []
    schema = {
        "generated_from": {"twilio-python": py["version"], "twilio-node": nd["version"]},
        "channels": {},
        "elements": {},
    }
    for channel in sorted(py["channels"]):
        pc, nc = py["channels"][channel], nd["channels"][channel]
        if pc["root"] != nc["root"]:
            raise SystemExit(f"{channel}: python's root is {pc['root']}, node's {nc['root']}")
        schema["channels"][channel] = {"root": pc["root"]}
        ids = sorted(set(pc["elements"]) | set(nc["elements"]))
        for eid in ids:
            pe, ne = pc["elements"].get(eid), nc["elements"].get(eid)

            def note(what, eid=eid):
                disagreements.append({"element": eid, "what": what})

            if pe is None or ne is None:
                note("only in " + ("node" if pe is None else "python"))
            pe = pe or {"tag": ne["tag"], "children": [], "text": None, "attributes": {}}
            ne = ne or {"tag": pe["tag"], "children": [], "text": None, "attributes": {}}
            if pe["tag"] != ne["tag"]:
                raise SystemExit(f"{eid}: python writes <{pe['tag']}>, node <{ne['tag']}>")
            children = sorted(set(pe["children"]) | set(ne["children"]))
            for c in sorted(set(pe["children"]) ^ set(ne["children"])):
                note(f"child {c} only in " + ("python" if c in pe["children"] else "node"))
            text = None
            if pe["text"] or ne["text"]:
                preq = bool(pe["text"] and pe["text"]["required"])
                nreq = bool(ne["text"] and ne["text"]["required"])
                if (pe["text"] is None) != (ne["text"] is None) or preq != nreq:
                    note(f"text required: python {preq}, node {nreq}; required only if both require it")
                text = {"type": "string", "required": preq and nreq}
            attributes = {}
            for name in sorted(set(pe["attributes"]) | set(ne["attributes"])):
                pa, na = pe["attributes"].get(name), ne["attributes"].get(name)
                if pa is None or na is None:
                    note(f"attribute {name} only in " + ("node" if pa is None else "python"))
                attributes[name] = merge_attribute(name, pa, na, overlay)
            schema["elements"][eid] = {
                "tag": pe["tag"],
                "channel": channel,
                "children": children,
                "text": text,
                "attributes": attributes,
            }
    apply_overlay(schema, overlay)
    schema["sdk_disagreements"] = disagreements
    return schema


def apply_overlay(schema, overlay):
    elements = schema["elements"]

    def attr(item):
        e = elements.get(item["element"])
        if e is None or item["attribute"] not in e["attributes"]:
            raise SystemExit(f"overlay names {item['element']} {item['attribute']}, which no SDK has")
        return e["attributes"][item["attribute"]]

    def text_of(item):
        e = elements.get(item["element"])
        if e is None or e["text"] is None:
            raise SystemExit(f"overlay names the text of {item['element']}, which no SDK has")
        return e["text"]

    for item in overlay["links"]:
        target = text_of(item) if item.get("text") else attr(item)
        target["type"] = "link"
        target["type_source"] = item["source"]
    for item in overlay["text_urls"]:
        target = text_of(item)
        target["type"] = "url"
        target["type_source"] = item["source"]
    for item in overlay["numbers"]:
        a = attr(item)
        if a["type"] not in ("number", "integer"):
            raise SystemExit(f"overlay makes {item['element']} {item['attribute']} a number; node says {a['type']}")
        a["type"] = item["type"]
        for bound in ("min", "max"):
            if bound in item:
                a[bound] = item[bound]
        a["type_source"] = item["source"]
    for item in overlay["enum_extra"]:
        a = attr(item)
        if a["type"] != "enum":
            raise SystemExit(f"overlay extends {item['element']} {item['attribute']}, not an enum")
        a["values"] = a["values"] + [v for v in item["values"] if v not in a["values"]]
        a["type_source"] = item["source"]
