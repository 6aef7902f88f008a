"""Builds the TwiML verdict corpus (tests/corpus/twiml/cases.jsonl) from the SDKs' builders (run by generate.py).

Valid cases are documents written by twilio-python's and twilio-node's own builders: every nesting
each SDK can produce, each element with what its builder requires and with all of its attributes,
every enum value, in both roles; plus TwiML Bins-style templates (variables, {% if %} branches,
links between templates). Invalid cases are hand-made mutations of valid documents, each with a
`why` (and a Twilio doc where the rule is not plain XML 1.0 or the SDKs' schema).

Deterministic: no clock, no unseeded randomness, cases in a fixed order.
"""

import json
import random
import re

XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>'
ROLES = ("primary", "fallback")
HOME = {"voice": "voice.xml", "messaging": "sms.xml"}

# A template that a relative link can lead to, per channel, and the link that reaches it from the
# channel's home template (voice.xml answers /voice, sms.xml answers /sms).
LINK_TARGET = {
    "voice": ("next", "next.xml", XML_DECL + "<Response><Say>Next step.</Say></Response>"),
    "messaging": ("sms/next", "sms/next.xml", XML_DECL + "<Response><Message>Next step.</Message></Response>"),
}

TEXT_SAMPLES = {
    "voice:Say": "Thanks for calling.",
    "voice:Sms": "Thanks for calling.",
    "voice:Play": "https://example.com/audio/hello.mp3",
    "voice:Dial": "+15550100001",
    "voice:Number": "+15550100001",
    "voice:WhatsApp": "+15550100001",
    "voice:Client": "alice",
    "voice:Identity": "alice",
    "voice:Conference": "room-1234",
    "voice:Room": "room-1234",
    "voice:Queue": "support",
    "voice:Enqueue": "support",
    "voice:Sip": "sip:alice@example.com",
    "voice:SipUri": "sip:alice@example.com",
    "voice:ReferSip": "sip:alice@example.com",
    "voice:Sim": "DE00000000000000000000000000000000",
    "voice:Application": "AP00000000000000000000000000000000",
    "voice:ApplicationSid": "AP00000000000000000000000000000000",
    "voice:Autopilot": "UA00000000000000000000000000000000",
    "voice:Task": '{"selected_language": "en"}',
    "messaging:Message": "Thanks for your message.",
    "messaging:Body": "Thanks for your message.",
    "messaging:Media": "https://example.com/media/logo.png",
}

STRING_SAMPLES = {
    "callerId": "+15550100000",
    "to": "+15550100001",
    "from": "+15550100000",
    "finishOnKey": "#",
    "hints": "sales, support",
    "speechTimeout": "auto",
    "sendDigits": "ww1234",
    "digits": "1w2",
    "time": "500ms",
    "pitch": "+10%",
    "rate": "90%",
    "volume": "loud",
    "ph": "təˈmeɪtoʊ",
    "alias": "World Wide Web Consortium",
    "role": "amazon:VB",
    "chargeAmount": "10.00",
    "currency": "usd",
    "postalCode": "true",
    "machineDetection": "Enable",
    "participantLabel": "agent",
    "language": "en-US",
    "speechModel": "phone_call",
    "attempt": "1",
    "code": "en-US",
    "ttsProvider": "ElevenLabs",
    "transcriptionProvider": "Deepgram",
    "welcomeGreeting": "Hi! How can I help?",
}

WS_URL_ELEMENTS = {"voice:Stream", "voice:ConversationRelay", "voice:Siprec"}


def sample_text(schema, eid):
    e = schema["elements"][eid]
    if e["text"] is None:
        return None
    if e["text"]["type"] == "link":
        return LINK_TARGET[e["channel"]][0]
    return TEXT_SAMPLES.get(eid, "hello")


def sample_value(eid, name, a, channel):
    t = a["type"]
    if t == "boolean":
        return "true"
    if t == "integer":
        v = max(a.get("min", 1), 1)
        return str(min(v, a["max"]) if "max" in a else v)
    if t == "number":
        return "5"
    if t in ("enum", "enum_list"):
        return "POST" if "POST" in a["values"] else a["values"][0]
    if t == "link":
        return LINK_TARGET[channel][0] + "?step=2&from=start"
    if t == "url":
        if eid in WS_URL_ELEMENTS and name == "url":
            return "wss://example.com/stream"
        return "https://example.com/callback?id=1&kind=status"
    return STRING_SAMPLES.get(name, "example")



def python_build(py_desc, channel, chain):
    """Builds a document with twilio-python: chain = [(element id, {xml attribute: value}, text)]."""
    from twilio.twiml import messaging_response, voice_response

    root = voice_response.VoiceResponse() if channel == "voice" else messaging_response.MessagingResponse()
    node = root
    for eid, attrs, text in chain:
        pe = py_desc["channels"][channel]["elements"][eid]
        by_xml = {xml: v["param"] for xml, v in pe["attributes"].items()}
        kwargs = {by_xml[x]: v for x, v in attrs.items()}
        if text is not None:
            kwargs[pe["text"]["param"]] = text
        node = getattr(node, pe["method"])(**kwargs)
    return str(root)


def node_steps(node_desc, channel, chain):
    steps = []
    for eid, attrs, text in chain:
        ne = node_desc["channels"][channel]["elements"][eid]
        by_xml = {xml: v["key"] for xml, v in ne["attributes"].items()}
        steps.append({"method": ne["method"], "attrs": {by_xml[x]: v for x, v in attrs.items()}, "text": text})
    return {"channel": channel, "steps": steps}


class Corpus:
    def __init__(self, schema, py_desc, node_desc, node_build):
        self.schema = schema
        self.elements = schema["elements"]
        self.py = py_desc
        self.nd = node_desc
        self.node_build = node_build
        self.cases = []
        self.pending_node = []  # (case, steps): node documents are built in one batch at the end
        self.ids = set()

    # -- bookkeeping -------------------------------------------------------------------------

    def add(self, cid, origin, role, files, expect, why=None, error_file=None, vars=None):
        assert cid not in self.ids, cid
        self.ids.add(cid)
        case = {
            "id": cid,
            "origin": origin,
            "role": role,
            "files": files,
            "vars": vars or {},
            "expect": expect,
            "error_file": error_file,
            "why": why,
        }
        self.cases.append(case)
        return case

    def finish(self):
        if self.pending_node:
            built = self.node_build([steps for _, _, steps in self.pending_node])
            for (case, path, _), xml in zip(self.pending_node, built):
                case["files"][path] = xml
        return self.cases

    # -- the element tree ----------------------------------------------------------------------

    def root(self, channel):
        return self.schema["channels"][channel]["root"]

    def parents(self, eid):
        channel = self.elements[eid]["channel"]
        return [p for p, e in sorted(self.elements.items()) if e["channel"] == channel and eid in e["children"]]

    def path_to(self, eid):
        """Shortest chain of element ids from the root (excluded) down to eid (included)."""
        channel = self.elements[eid]["channel"]
        start = self.root(channel)
        seen = {start: []}
        todo = [start]
        while todo:
            cur = todo.pop(0)
            if cur == eid:
                return seen[cur]
            for c in self.elements[cur]["children"]:
                if c not in seen:
                    seen[c] = seen[cur] + [c]
                    todo.append(c)
        raise SystemExit(f"{eid} cannot be reached from {start}")

    def required_text(self, sdk, eid):
        """The sample text when this SDK's builder requires text for eid, else None."""
        channel = self.elements[eid]["channel"]
        desc = self.py if sdk == "python" else self.nd
        t = desc["channels"][channel]["elements"][eid]["text"]
        return sample_text(self.schema, eid) if t and t["required"] else None

    def sdk_has(self, sdk, eid, attr):
        channel = self.elements[eid]["channel"]
        desc = self.py if sdk == "python" else self.nd
        return attr in desc["channels"][channel]["elements"][eid]["attributes"]

    def chain(self, sdk, parent, eid, attrs, text):
        """Builder calls for eid inside parent, the parent reached by its shortest path."""
        channel = self.elements[eid]["channel"]
        up = [] if parent == self.root(channel) else self.path_to(parent)
        calls = [(p, {}, self.required_text(sdk, p)) for p in up]
        return calls + [(eid, attrs, text)]

    def build(self, sdk, case, path, channel, calls):
        if sdk == "python":
            case["files"][path] = python_build(self.py, channel, calls)
        else:
            case["files"][path] = None
            self.pending_node.append((case, path, node_steps(self.nd, channel, calls)))

    def sdk_case(self, sdk, cid, role, parent, eid, attrs, text, origin):
        channel = self.elements[eid]["channel"]
        calls = self.chain(sdk, parent, eid, attrs, text)
        files = {}
        linked = any(
            (a == "text" and self.elements[e]["text"]["type"] == "link")
            for e, at, t in calls
            for a in (["text"] if t is not None and self.elements[e]["text"] else [])
        ) or any(self.elements[e]["attributes"][n]["type"] == "link" for e, at, _ in calls for n in at)
        if linked:
            _, target, content = LINK_TARGET[channel]
            files[target] = content
        case = self.add(cid, origin, role, files, "ok")
        self.build(sdk, case, HOME[channel], channel, calls)
        return case


def short(eid):
    return eid.split(":", 1)[1]


def insert_attribute(xml, tag, text):
    """Adds raw attribute text to the last start tag named `tag` (the leaf a case is about)."""
    i = max(m for m in range(len(xml)) if xml.startswith("<" + tag, m) and xml[m + 1 + len(tag)] in " />")
    j = i + 1 + len(tag)
    return xml[:j] + " " + text + xml[j:]


def valid_sdk_cases(c):
    """Every nesting each SDK can produce; minimal and with all attributes; both roles."""
    for eid in sorted(c.elements):
        e = c.elements[eid]
        channel = e["channel"]
        if eid == c.root(channel):
            continue
        for parent in c.parents(eid):
            for sdk in ("python", "node"):
                attrs = {n: sample_value(eid, n, a, channel) for n, a in e["attributes"].items() if c.sdk_has(sdk, eid, n)}
                text = sample_text(c.schema, eid)
                for role in ROLES:
                    base = f"{sdk}/{channel}/{short(eid)}/in-{short(parent)}"
                    origin = f"twilio-{sdk} builder: {short(parent)} > {short(eid)}"
                    c.sdk_case(sdk, f"{base}/required/{role}", role, parent, eid, {}, c.required_text(sdk, eid),
                               origin + ", only what the builder requires")
                    c.sdk_case(sdk, f"{base}/all-attributes/{role}", role, parent, eid, attrs, text,
                               origin + ", every attribute the builder knows")


def enum_value_cases(c):
    """Every value of every enum (and enum list) attribute, each in one document."""
    n = 0
    for eid in sorted(c.elements):
        e = c.elements[eid]
        channel = e["channel"]
        if eid == c.root(channel):
            continue
        parent = c.parents(eid)[0]
        for name, a in sorted(e["attributes"].items()):
            if a["type"] not in ("enum", "enum_list"):
                continue
            sdks = [k for k in ("python", "node") if c.sdk_has(k, eid, name)]
            values = list(a["values"])
            if a["type"] == "enum_list" and len(values) > 1:
                values.append(" ".join(a["values"]))
            for v in values:
                # Roles alternate, and so do the builders where both know the attribute.
                role = ROLES[n % 2]
                sdk = sdks[(n // 2) % len(sdks)]
                n += 1
                label = "all" if " " in v else v
                c.sdk_case(sdk, f"{sdk}/{channel}/{short(eid)}/{name}={label}", role, parent, eid, {name: v},
                           c.required_text(sdk, eid),
                           f"twilio-{sdk} builder: {short(eid)} {name}=\"{v}\"")


def leaf_doc(c, eid, parent=None):
    """twilio-python's smallest document holding eid (in parent), with its required text."""
    channel = c.elements[eid]["channel"]
    parent = parent or c.parents(eid)[0]
    text = c.required_text("python", eid) or c.required_text("node", eid)
    return python_build(c.py, channel, c.chain("python", parent, eid, {}, text))


def leaf_files(c, eid, xml):
    """The files of a mutation of eid's smallest document: a <Redirect>'s link target is there, so
    the case is wrong for the one reason its `why` gives."""
    e = c.elements[eid]
    files = {HOME[e["channel"]]: xml}
    if e["text"] and e["text"]["type"] == "link":
        files[LINK_TARGET[e["channel"]][1]] = LINK_TARGET[e["channel"]][2]
    return files


def snake(name):
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


def attribute_name_mutations(c):
    """Misspelled attribute names: Twilio ignores an unknown attribute (warning 12200), so the verb
    silently does something other than what the author wrote."""
    n = 0
    for eid in sorted(c.elements):
        e = c.elements[eid]
        if eid == c.root(e["channel"]):
            continue
        known = set(e["attributes"])
        wrong = {}
        for name, a in sorted(e["attributes"].items()):
            value = sample_value(eid, name, a, e["channel"]).split("?")[0]
            for bad in (name.lower(), snake(name), name[0].upper() + name[1:]):
                if bad not in known and bad not in wrong:
                    wrong[bad] = (name, value)
        if "colour" not in known:
            wrong["colour"] = (None, "blue")
        for bad, (meant, value) in sorted(wrong.items()):
            role = ROLES[n % 2]
            n += 1
            channel = e["channel"]
            xml = insert_attribute(leaf_doc(c, eid), e["tag"], f'{bad}="{value}"')
            files = leaf_files(c, eid, xml)
            if e["attributes"].get(meant, {}).get("type") == "link":
                files[LINK_TARGET[channel][1]] = LINK_TARGET[channel][2]
            why = f"<{e['tag']}> has no attribute `{bad}`" + (f" (the attribute is `{meant}`; names are case-sensitive)" if meant else "") + \
                "; Twilio ignores unknown attributes with warning 12200, neither SDK writes it"
            c.add(f"mutation/{channel}/{short(eid)}/attribute-name/{bad}", f"twilio-python {short(eid)} with a misspelled attribute",
                  role, files, "error", why, HOME[channel])


def tag_mutations(c):
    """Misspelled verbs and nouns: TwiML names are case-sensitive, and an unknown element is not
    TwiML (neither SDK writes it; Twilio reports a schema error)."""
    tags = {e["tag"] for e in c.elements.values()}
    n = 0
    for eid in sorted(c.elements):
        e = c.elements[eid]
        channel = e["channel"]
        tag = e["tag"]
        if eid == c.root(channel):
            continue
        middle = len(tag) // 2
        variants = [tag.lower(), tag.upper(), tag[0].swapcase() + tag[1:], tag[:middle] + tag[middle + 1:]]
        doc = leaf_doc(c, eid)
        for bad in sorted(set(variants) - tags):
            if not bad or not (bad[0].isalpha() or bad[0] == "_"):
                continue
            xml = re.sub("<" + re.escape(tag) + r"(?=[\s/>])", "<" + bad, doc).replace("</" + tag + ">", "</" + bad + ">")
            c.add(f"mutation/{channel}/{short(eid)}/tag/{bad}", "twilio-python document with a misspelled element", ROLES[n % 2],
                  leaf_files(c, eid, xml), "error",
                  f"<{bad}> is not a TwiML element (the element is <{tag}>; names are case-sensitive), neither SDK writes it", HOME[channel])
            n += 1


def bad_values(a):
    t = a["type"]
    out = []
    if t == "boolean":
        out += [("yes", "a boolean is `true` or `false`")]
    elif t in ("integer", "number"):
        out += [("abc", "not a number")]
        lo, hi = a.get("min"), a.get("max")
        if lo is not None:
            out.append((str(lo - 1) if lo > 0 else "-5", f"below the documented minimum {lo}"))
        if hi is not None:
            out.append((str(hi + 1), f"above the documented maximum {hi}"))
    elif t == "enum":
        out += [("nope", "not one of " + ", ".join(a["values"][:8]) + (", ..." if len(a["values"]) > 8 else ""))]
        if a["values"] == ["GET", "POST"]:
            out.append(("PUSH", "an HTTP method here is GET or POST"))
    elif t == "enum_list":
        out += [("nope", "not one of " + ", ".join(a["values"][:8])),
                (a["values"][0] + " nope", "`nope` is not one of " + ", ".join(a["values"][:8]))]
    return out


# The bad values issue 12 names, each on the element it is about.
ISSUE_VALUES = [
    ("voice:Redirect", "method", "PUSH"),
    ("voice:Gather", "method", "PUSH"),
    ("voice:Gather", "numDigits", "abc"),
    ("voice:Gather", "timeout", "-5"),
    ("voice:Dial", "timeout", "-5"),
    ("voice:Record", "timeout", "-5"),
    ("voice:Gather", "input", "keypad"),
    ("voice:Gather", "input", "dtmf keypad"),
    ("voice:Play", "loop", "forever"),
    ("voice:Say", "loop", "forever"),
    ("voice:Dial", "record", "yes"),
    ("voice:Reject", "reason", "nope"),
    ("messaging:Redirect", "method", "PUSH"),
    ("messaging:Message", "method", "PUSH"),
]


def attribute_value_mutations(c):
    n = 0
    for eid, name, bad in ISSUE_VALUES:
        e = c.elements[eid]
        a = e["attributes"][name]
        channel = e["channel"]
        xml = insert_attribute(leaf_doc(c, eid), e["tag"], f'{name}="{bad}"')
        kind = a["type"].replace("_", " ")
        allowed = f" (one of {', '.join(a['values'][:8])})" if "values" in a else ""
        bounds = f" (at least {a['min']})" if "min" in a else ""
        why = f'<{e["tag"]} {name}="{bad}">: not a valid {kind}{allowed}{bounds}; ' + (a.get("type_source") or "twilio-node's declared type")
        c.add(f"mutation/{channel}/issue-12-values/{short(eid)}/{name}={bad.replace(' ', '+')}", "issue 12: a bad attribute value",
              ROLES[n % 2], leaf_files(c, eid, xml), "error", why, HOME[channel])
        n += 1
    for eid in sorted(c.elements):
        e = c.elements[eid]
        channel = e["channel"]
        if eid == c.root(channel):
            continue
        for name, a in sorted(e["attributes"].items()):
            for bad, reason in bad_values(a):
                role = ROLES[n % 2]
                n += 1
                xml = insert_attribute(leaf_doc(c, eid), e["tag"], f'{name}="{bad}"')
                source = a.get("type_source") or "the SDKs' types (twilio-node declarations)"
                why = f'<{e["tag"]} {name}="{bad}">: {reason} ({source})'
                label = bad.replace(" ", "+")
                c.add(f"mutation/{channel}/{short(eid)}/value/{name}={label}", f"twilio-python {short(eid)} with a bad {name}",
                      role, leaf_files(c, eid, xml), "error", why, HOME[channel])


def probe_doc(c, probe):
    """The markup of probe as twilio-python writes it on its own (no declaration, no root)."""
    xml = leaf_doc(c, probe)
    e = c.elements[probe]
    start = xml.rindex("<" + e["tag"])
    # The leaf is the last element opened; it ends where its parent's end tag starts.
    rest = xml[start:]
    if rest.startswith("<" + e["tag"]) and "/>" in rest.split(">")[0] + ">":
        return rest[: rest.index("/>") + 2]
    end = "</" + e["tag"] + ">"
    return rest[: rest.index(end) + len(end)]


def nesting_mutations(c):
    """Elements where neither SDK can put them: Twilio's schema rejects them (error 12100/12200)."""
    rng = random.Random(12)
    n = 0
    for channel in ("voice", "messaging"):
        ids = [i for i in sorted(c.elements) if c.elements[i]["channel"] == channel and i != c.root(channel)]
        for parent in [c.root(channel)] + ids:
            pe = c.elements[parent]
            allowed_tags = {c.elements[x]["tag"] for x in pe["children"]}
            candidates = [i for i in ids if c.elements[i]["tag"] not in allowed_tags]
            picks = rng.sample(candidates, min(5, len(candidates)))
            for probe in picks:
                role = ROLES[n % 2]
                n += 1
                base = leaf_doc(c, parent) if parent != c.root(channel) else python_build(c.py, channel, [])
                inner = probe_doc(c, probe)
                if parent == c.root(channel):
                    xml = base.replace("<Response />", "<Response>" + inner + "</Response>")
                else:
                    xml = insert_child(base, pe["tag"], inner)
                why = (f"<{c.elements[probe]['tag']}> cannot be inside <{pe['tag']}>: neither SDK's "
                       f"{short(parent)} builder has a method for it")
                # The link target exists, so a <Redirect> probe is wrong for its place only.
                files = {HOME[channel]: xml, LINK_TARGET[channel][1]: LINK_TARGET[channel][2]}
                c.add(f"mutation/{channel}/nesting/{short(probe)}-in-{short(parent)}", "hand-made: wrong nesting",
                      role, files, "error", why, HOME[channel])


def insert_child(xml, tag, inner):
    """Puts inner markup inside the last element named tag (turning <Tag .../> into a pair)."""
    start = max(m for m in range(len(xml)) if xml.startswith("<" + tag, m) and xml[m + 1 + len(tag)] in " />")
    close = xml.index(">", start)
    if xml[close - 1] == "/":
        head = xml[start:close - 1].rstrip()
        return xml[:start] + head + ">" + inner + "</" + tag + ">" + xml[close + 1:]
    end = xml.index("</" + tag + ">", close)
    return xml[:end] + inner + xml[end:]


def named_nesting_cases(c):
    """The issue's own wrong-nesting and SSML examples."""
    d = XML_DECL
    cases = [
        ("say-in-dial", d + "<Response><Dial><Say>Connecting</Say>+15550100001</Dial></Response>",
         "<Say> cannot be inside <Dial>: Dial's nouns are Number, Client, Conference, Queue, Sip, Sim, Application, WhatsApp"),
        ("gather-in-gather", d + "<Response><Gather><Gather><Say>Hi</Say></Gather></Gather></Response>",
         "<Gather> cannot be nested in <Gather> (only Say, Play, Pause)"),
        ("dial-in-gather", d + "<Response><Gather><Dial>+15550100001</Dial></Gather></Response>",
         "<Dial> cannot be inside <Gather> (only Say, Play, Pause)"),
        ("break-with-text", d + "<Response><Say>Wait<break time=\"1s\">now</break></Say></Response>",
         "SSML <break> is empty: it takes no text (neither SDK's break builder takes words)"),
        ("p-in-p", d + "<Response><Say><p><p>Nested paragraph</p></p></Say></Response>",
         "SSML <p> cannot contain <p> (the SDKs' SsmlP has no p method; SSML 1.1 forbids it)"),
        ("s-holding-p", d + "<Response><Say><s><p>Paragraph in a sentence</p></s></Say></Response>",
         "SSML <s> cannot contain <p> (the SDKs' SsmlS has no p method)"),
        ("emphasis-in-say-as", d + "<Response><Say><say-as interpret-as=\"digits\"><emphasis>123</emphasis></say-as></Say></Response>",
         "SSML <say-as> holds text only (the SDKs' SsmlSayAs has no child methods)"),
        ("break-in-say-as", d + "<Response><Say><say-as interpret-as=\"digits\">12<break/>3</say-as></Say></Response>",
         "SSML <say-as> holds text only (the SDKs' SsmlSayAs has no child methods)"),
        ("break-at-root", d + "<Response><break time=\"1s\"/></Response>",
         "SSML <break> belongs inside <Say>, not directly in <Response>"),
        ("number-at-root", d + "<Response><Number>+15550100001</Number></Response>",
         "<Number> is a noun of <Dial>, not a verb"),
        ("message-in-say", d + "<Response><Say>Hi<Message>x</Message></Say></Response>",
         "<Message> is a messaging verb; it cannot be inside <Say>"),
        ("body-at-root-voice", d + "<Response><Body>Hello</Body></Response>",
         "<Body> is a noun of messaging <Message>, not a voice verb"),
        ("redirect-in-gather", d + "<Response><Gather><Redirect>next</Redirect></Gather></Response>",
         "<Redirect> cannot be inside <Gather> (only Say, Play, Pause)"),
    ]
    for i, (name, xml, why) in enumerate(cases):
        role = ROLES[i % 2]
        files = {"voice.xml": xml}
        if "next" in xml:
            files["next.xml"] = LINK_TARGET["voice"][2]
        c.add(f"mutation/voice/nesting/{name}", "hand-made: the issue's nesting examples", role, files, "error", why, "voice.xml")
    m = [
        ("media-at-root", d + "<Response><Media>https://example.com/a.png</Media></Response>",
         "<Media> is a noun of <Message>, not a verb"),
        ("message-in-message", d + "<Response><Message>Hi<Message>again</Message></Message></Response>",
         "<Message> cannot be nested in <Message> (only Body and Media)"),
        ("redirect-in-message", d + "<Response><Message><Redirect>sms/next</Redirect></Message></Response>",
         "<Redirect> cannot be inside <Message> (only Body and Media)"),
    ]
    for i, (name, xml, why) in enumerate(m):
        files = {"sms.xml": xml}
        if "sms/next" in xml:
            files["sms/next.xml"] = LINK_TARGET["messaging"][2]
        c.add(f"mutation/messaging/nesting/{name}", "hand-made: wrong nesting", ROLES[i % 2], files, "error", why, "sms.xml")


def channel_mutations(c):
    """Voice verbs in messaging templates and the other way round."""
    d = XML_DECL
    voice_root = c.elements[c.root("voice")]
    msg_tags = {c.elements[x]["tag"] for x in c.elements[c.root("messaging")]["children"]}
    n = 0
    for vid in voice_root["children"]:
        tag = c.elements[vid]["tag"]
        if tag in msg_tags:
            continue
        inner = probe_doc(c, vid)
        for path in ("sms.xml", "sms/help.xml"):
            role = ROLES[n % 2]
            n += 1
            c.add(f"mutation/channel/{tag}-in-{path}", "hand-made: voice verb in a messaging template", role,
                  {path: d + "<Response>" + inner + "</Response>"}, "error",
                  f"<{tag}> is a voice verb; {path} is a messaging template (sms.xml and sms/... answer messages), "
                  "where only <Message> and <Redirect> are allowed", path)
    for i, body in enumerate(["<Message>Hello</Message>", "<Message><Body>Hi</Body><Media>https://example.com/a.png</Media></Message>"]):
        for role in ROLES:
            c.add(f"mutation/channel/message-in-voice.xml/{i}/{role}", "hand-made: messaging verb in a voice template", role,
                  {"voice.xml": d + "<Response>" + body + "</Response>"}, "error",
                  "<Message> is a messaging verb; voice.xml answers calls (TwiML for Programmable Voice has no <Message>)", "voice.xml")
    for role in ROLES:
        c.add(f"mutation/channel/mixed-verbs/{role}", "hand-made: messaging and voice verbs in one template", role,
              {"reply.xml": d + "<Response><Message>Hi</Message><Say>Hello</Say></Response>"}, "error",
              "a template holds either voice or messaging TwiML; <Message> with <Say> fits neither channel", "reply.xml")
        c.add(f"mutation/channel/say-in-gather-in-sms/{role}", "hand-made: voice verb in a messaging template", role,
              {"sms.xml": d + "<Response><Message>Hi</Message><Gather><Say>Press 1</Say></Gather></Response>"}, "error",
              "<Gather> is a voice verb; sms.xml answers messages", "sms.xml")


def wellformedness_cases(c):
    """XML 1.0 well-formedness (https://www.w3.org/TR/xml/): each error case breaks one rule."""
    d = XML_DECL
    bad = [
        ("raw-amp-in-attribute", d + '<Response><Gather action="https://example.com/g?a=1&b=2" numDigits="1"><Say>Press 1</Say></Gather></Response>',
         "a raw & in an attribute value is not well-formed XML (must be &amp;); XML 1.0 section 3.1, AttValue"),
        ("raw-lt-in-attribute", d + '<Response><Say voice="a<b">Hi</Say></Response>',
         "a raw < in an attribute value is not well-formed XML; XML 1.0 section 3.1 [10] AttValue"),
        ("charref-1-in-attribute", d + '<Response><Play digits="&#1;">https://example.com/a.mp3</Play></Response>',
         "&#1; refers to a character XML 1.0 forbids (section 4.1, WFC: Legal Character)"),
        ("charref-0-in-text", d + "<Response><Say>a&#0;b</Say></Response>",
         "&#0; refers to a character XML 1.0 forbids (section 4.1, WFC: Legal Character)"),
        ("charref-surrogate", d + "<Response><Say>a&#xD800;b</Say></Response>",
         "&#xD800; is a surrogate code point, not an XML Char (section 2.2)"),
        ("charref-fffe", d + "<Response><Say>a&#xFFFE;b</Say></Response>",
         "&#xFFFE; is not an XML Char (section 2.2)"),
        ("raw-control-in-attribute", d + '<Response><Say voice="alice\u0001">Hi</Say></Response>',
         "U+0001 is not an XML Char (XML 1.0 section 2.2)"),
        ("raw-control-in-text", d + "<Response><Say>Hi\u000bthere</Say></Response>",
         "U+000B is not an XML Char (XML 1.0 section 2.2)"),
        ("digit-first-attribute-name", d + '<Response><Say 1voice="x">Hi</Say></Response>',
         "an attribute name cannot start with a digit (XML 1.0 section 2.3, Name)"),
        ("duplicate-attribute", d + '<Response><Say voice="alice" voice="man">Hi</Say></Response>',
         "an attribute appears twice in one start tag (XML 1.0 section 3.1, WFC: Unique Att Spec)"),
        ("unquoted-attribute", d + "<Response><Say voice=alice>Hi</Say></Response>",
         "attribute values must be quoted (XML 1.0 section 3.1)"),
        ("raw-amp-in-text", d + "<Response><Say>Tom & Jerry</Say></Response>",
         "a raw & in text is not well-formed XML (XML 1.0 section 2.4)"),
        ("undefined-entity", d + "<Response><Say>Caf&eacute;</Say></Response>",
         "&eacute; is not one of XML's five predefined entities and no DTD declares it (section 4.1, WFC: Entity Declared)"),
        ("cdata-end-in-text", d + "<Response><Say>a ]]> b</Say></Response>",
         "the literal ]]> may not appear in character data (XML 1.0 section 2.4)"),
        ("mismatched-end-tag", d + "<Response><Say>Hi</Play></Response>",
         "end tag </Play> does not match start tag <Say> (XML 1.0 section 3, WFC: Element Type Match)"),
        ("unclosed-element", d + "<Response><Say>Hi</Response>",
         "<Say> is never closed (XML 1.0 section 3, WFC: Element Type Match)"),
        ("unclosed-root", d + "<Response><Say>Hi</Say>",
         "<Response> is never closed"),
        ("two-roots", d + "<Response><Say>Hi</Say></Response><Response/>",
         "a document has exactly one root element (XML 1.0 section 2.1)"),
        ("text-after-root", d + "<Response><Say>Hi</Say></Response>trailing",
         "character data after the root element is not allowed (XML 1.0 section 2.1, Misc)"),
        ("declaration-twice", d + d + "<Response><Say>Hi</Say></Response>",
         "a second XML declaration is a processing instruction with the reserved target xml (section 2.6)"),
        ("declaration-after-comment", "<!-- hi -->" + d + "<Response><Say>Hi</Say></Response>",
         "the XML declaration must come first (XML 1.0 section 2.8)"),
        ("double-hyphen-in-comment", d + "<Response><!-- a -- b --><Say>Hi</Say></Response>",
         "-- may not occur inside a comment (XML 1.0 section 2.5)"),
        ("lt-in-text", d + "<Response><Say>1 < 2</Say></Response>",
         "a raw < in text starts a tag; '< ' is not well-formed (XML 1.0 section 2.4)"),
        ("bad-charref-syntax", d + "<Response><Say>&#xZZ;</Say></Response>",
         "&#xZZ; is not a character reference (XML 1.0 section 4.1)"),
        ("attribute-without-value", d + "<Response><Gather input><Say>Hi</Say></Gather></Response>",
         "an attribute needs = and a quoted value (XML 1.0 section 3.1)"),
        ("no-root", d, "a document needs a root element (XML 1.0 section 2.1)"),
        ("wrong-root", d + "<Reply><Say>Hi</Say></Reply>", "TwiML's root element is <Response>"),
        ("lowercase-root", d + "<response><Say>Hi</Say></response>", "TwiML's root element is <Response>; names are case-sensitive"),
        ("misspelled-verb", d + "<Response><Gater numDigits=\"1\"><Say>Hi</Say></Gater></Response>",
         "Twilio has no <Gater> verb (the SDKs have no such element)"),
        ("lowercase-verb", d + "<Response><say>Hi</say></Response>",
         "TwiML element names are case-sensitive: <say> is not <Say>"),
        ("misspelled-noun", d + "<Response><Dial><Numbr>+15550100001</Numbr></Dial></Response>",
         "<Dial> has no <Numbr> noun (the SDKs have no such element)"),
    ]
    good = [
        ("no-declaration", "<Response><Say>Hi</Say></Response>", "the XML declaration is optional (XML 1.0 section 2.8)"),
        ("entities", d + "<Response><Say>Tom &amp; Jerry &lt;3 &quot;&apos;&gt; &#x1F600; &#233;</Say></Response>", None),
        ("cdata", d + "<Response><Say><![CDATA[Tom & Jerry <3]]></Say></Response>", None),
        ("comment", d + "<!-- greeting --><Response><!-- say hi --><Say>Hi</Say></Response><!-- end -->", None),
        ("whitespace-and-newlines", d + "\n<Response>\n  <Say>\n    Hi\n  </Say>\n  <Pause length=\"2\" />\n</Response>\n", None),
        ("single-quotes", d + "<Response><Say voice='alice' loop='2'>Hi</Say></Response>", None),
        ("gt-in-text-and-attribute", d + '<Response><Say voice="alice">a > b</Say><Play digits="1w2">https://example.com/a.mp3</Play><Gather hints="a > b"/></Response>', None),
        ("entity-in-attribute", d + '<Response><Dial action="https://example.com/d?a=1&amp;b=2&#38;c=3" callerId="+15550100000">+15550100001</Dial></Response>', None),
        ("newline-char-ref-in-attribute", d + '<Response><Gather hints="a,&#10;b" input="dtmf&#32;speech"><Say>Hi</Say></Gather></Response>', None),
        ("declaration-single-quotes", "<?xml version='1.0' encoding='utf-8' standalone='yes'?><Response><Say>Hi</Say></Response>", None),
        ("empty-response", d + "<Response/>", "an empty <Response> is valid TwiML: Twilio ends the call"),
        ("empty-response-pair", d + "<Response></Response>", None),
    ]
    n = 0
    for name, xml, why in bad:
        for role in ROLES:
            c.add(f"xml/voice/{name}/{role}", "hand-made: XML 1.0 well-formedness", role, {"voice.xml": xml}, "error", why, "voice.xml")
            n += 1
    for name, xml, why in good:
        for role in ROLES:
            c.add(f"xml/voice/ok-{name}/{role}", "hand-made: well-formed XML 1.0 edge", role, {"voice.xml": xml}, "ok", None)
    sms_bad = [
        ("raw-amp-in-message", d + "<Response><Message>Fish & chips</Message></Response>", "a raw & in text is not well-formed XML (XML 1.0 section 2.4)"),
        ("raw-amp-in-action", d + '<Response><Message action="https://example.com/s?a=1&b=2">Hi</Message></Response>', "a raw & in an attribute value is not well-formed XML"),
        ("unclosed-message", d + "<Response><Message>Hi</Response>", "<Message> is never closed"),
        ("control-char-in-body", d + "<Response><Message><Body>Hi\u0002</Body></Message></Response>", "U+0002 is not an XML Char (XML 1.0 section 2.2)"),
    ]
    for name, xml, why in sms_bad:
        for role in ROLES:
            c.add(f"xml/messaging/{name}/{role}", "hand-made: XML 1.0 well-formedness", role, {"sms.xml": xml}, "error", why, "sms.xml")
    for role in ROLES:
        c.add(f"xml/messaging/ok-entities/{role}", "hand-made: well-formed XML 1.0 edge", role,
              {"sms.xml": d + "<Response><Message>Fish &amp; chips &lt;3 &#x1F41F;</Message></Response>"}, "ok")
    # The issue's "Why": check called this fine and the fallback answered every call with it.
    c.add("issue-12/why-example", "issue 12 \"Why\": raw & in a Gather action of the fallback's voice.xml", "fallback",
          {"voice.xml": d + '\n<Response><Gather action="https://example.com/g?a=1&b=2" numDigits="1"><Say>Press 1</Say></Gather></Response>\n'},
          "error", "raw & in an attribute value: not well-formed (expat: not well-formed (invalid token)); Twilio fails with 12100", "voice.xml")


def link_places(c, channel):
    """(element id, attribute name or None for the text) of every link in the channel."""
    out = []
    for eid in sorted(c.elements):
        e = c.elements[eid]
        if e["channel"] != channel:
            continue
        if e["text"] and e["text"]["type"] == "link":
            out.append((eid, None))
        for name, a in sorted(e["attributes"].items()):
            if a["type"] == "link":
                out.append((eid, name))
    return out


def link_doc(c, eid, attr, link):
    channel = c.elements[eid]["channel"]
    text = c.required_text("python", eid) or c.required_text("node", eid)
    if attr is None:
        text = link
        attrs = {}
    else:
        attrs = {attr: link}
    return python_build(c.py, channel, c.chain("python", c.parents(eid)[0], eid, attrs, text))


def link_cases(c):
    """Relative links must lead to an existing template of the same set and a fitting channel."""
    d = XML_DECL
    for channel in ("voice", "messaging"):
        home = HOME[channel]
        for eid, attr in link_places(c, channel):
            where = f"<{c.elements[eid]['tag']}>" + (f" {attr}" if attr else " text")
            label = f"{short(eid)}-{attr or 'text'}"
            for role in ROLES:
                # Dangling: no such template in this set (in the fallback there is nothing behind it).
                c.add(f"link/{channel}/{label}/dangling/{role}", "twilio-python builder with a relative link to nowhere", role,
                      {home: link_doc(c, eid, attr, "missing-step")}, "error",
                      f"{where} is a link Twilio fetches TwiML from; `missing-step` resolves to /missing-step, "
                      f"and the {role} set has no missing-step.xml", home)
                # The same link with its target present, and with an entity in its query.
                target_link, target_file, target = LINK_TARGET[channel]
                c.add(f"link/{channel}/{label}/present/{role}", "twilio-python builder with a relative link to a template", role,
                      {home: link_doc(c, eid, attr, target_link + "?a=1&b=2"), target_file: target}, "ok")
                # A dangling link whose query holds an expression: its path is still fixed.
                xml = link_doc(c, eid, attr, "nowhere?from=FROM").replace("FROM", "{{ From }}")
                c.add(f"link/{channel}/{label}/dangling-with-expression/{role}", "template: link with an expression in its query", role,
                      {home: xml}, "error",
                      f"{where} leads to /nowhere whatever From is: the path part of the link is fixed and no nowhere.xml exists", home)
                xml = link_doc(c, eid, attr, target_link + "?from=FROM").replace("FROM", "{{ From }}")
                c.add(f"link/{channel}/{label}/present-with-expression/{role}", "template: link with an expression in its query", role,
                      {home: xml, target_file: target}, "ok")
            # Into the other channel.
            if channel == "voice":
                for role in ROLES:
                    c.add(f"link/voice/{label}/into-messaging/{role}", "voice template linking to a messaging template", role,
                          {home: link_doc(c, eid, attr, "sms")}, "error",
                          f"{where} makes Twilio fetch voice TwiML from /sms, which is the messaging template sms.xml", None)
                    c.add(f"link/voice/{label}/into-sms-folder/{role}", "voice template linking to a messaging template", role,
                          {home: link_doc(c, eid, attr, "sms/help"),
                           "sms/help.xml": d + "<Response><Message>Reply STOP to stop.</Message></Response>"}, "error",
                          f"{where} leads into sms/help.xml, messaging TwiML, from a voice call", None)
            else:
                for role in ROLES:
                    c.add(f"link/messaging/{label}/into-voice/{role}", "messaging template linking to a voice template", role,
                          {home: link_doc(c, eid, attr, "voice")}, "error",
                          f"{where} in a messaging template leads to /voice, the voice template voice.xml", None)
    # Relative forms and decoding.
    ok = [
        ("dot-slash", {"voice.xml": d + "<Response><Redirect>./next</Redirect></Response>", "next.xml": LINK_TARGET["voice"][2]}),
        ("parent-dir", {"voice.xml": d + "<Response><Redirect>menu/main</Redirect></Response>",
                        "menu/main.xml": d + "<Response><Gather action=\"../voice\" numDigits=\"1\"><Say>Press 1</Say></Gather><Redirect>main</Redirect></Response>"}),
        ("entity-in-redirect", {"voice.xml": d + "<Response><Redirect>next?id=1&amp;a=b</Redirect></Response>", "next.xml": LINK_TARGET["voice"][2]}),
        ("absolute-url", {"voice.xml": d + "<Response><Redirect method=\"GET\">https://example.com/elsewhere?a=1&amp;b=2</Redirect></Response>"}),
        ("absolute-action", {"voice.xml": d + '<Response><Gather action="https://example.com/gather" numDigits="1"><Say>Press 1</Say></Gather></Response>'}),
        ("self-link", {"voice.xml": d + '<Response><Gather action="voice" numDigits="1"><Say>Press 1</Say></Gather><Redirect>voice</Redirect></Response>'}),
        ("wait-url-and-number-url", {"voice.xml": d + '<Response><Enqueue waitUrl="hold" action="next">support</Enqueue></Response>',
                                     "hold.xml": d + "<Response><Say>Please hold.</Say><Play>https://example.com/music.mp3</Play></Response>",
                                     "next.xml": LINK_TARGET["voice"][2]}),
        ("dial-number-url", {"voice.xml": d + '<Response><Dial action="next"><Number url="whisper">+15550100001</Number></Dial></Response>',
                             "whisper.xml": d + "<Response><Say>Call from the main line.</Say></Response>",
                             "next.xml": LINK_TARGET["voice"][2]}),
        ("conference-wait-url", {"voice.xml": d + '<Response><Dial><Conference waitUrl="hold">room-1</Conference></Dial></Response>',
                                 "hold.xml": d + "<Response><Play loop=\"0\">https://example.com/music.mp3</Play></Response>"}),
        ("sms-redirect-in-folder", {"sms.xml": d + "<Response><Redirect>sms/help</Redirect></Response>",
                                    "sms/help.xml": d + "<Response><Message>Reply STOP to stop.</Message></Response>"}),
        ("sms-folder-relative", {"sms/a.xml": d + "<Response><Redirect>b</Redirect></Response>",
                                 "sms/b.xml": d + "<Response><Message>B</Message></Response>"}),
        ("fragment", {"voice.xml": d + "<Response><Redirect>next#step</Redirect></Response>", "next.xml": LINK_TARGET["voice"][2]}),
        ("absolute-path", {"voice.xml": d + "<Response><Redirect>/next</Redirect></Response>", "next.xml": LINK_TARGET["voice"][2]}),
        ("query-only", {"voice.xml": d + '<Response><Gather action="?step=2" numDigits="1"><Say>Press 1</Say></Gather></Response>'}),
        ("char-ref-in-method", {"voice.xml": d + '<Response><Redirect method="P&#79;ST">next</Redirect></Response>', "next.xml": LINK_TARGET["voice"][2]}),
        ("folder-relative", {"voice.xml": d + "<Response><Redirect>menu/a</Redirect></Response>",
                             "menu/a.xml": d + "<Response><Redirect>b</Redirect></Response>", "menu/b.xml": LINK_TARGET["voice"][2]}),
        ("messaging-at-any-path", {"reply.xml": d + "<Response><Message>Thanks, we got it.</Message></Response>"}),
        ("messaging-linked-from-sms", {"sms.xml": d + "<Response><Redirect>reply</Redirect></Response>",
                                       "reply.xml": d + "<Response><Message>Thanks.</Message></Response>"}),
    ]
    for name, files in ok:
        for role in ROLES:
            c.add(f"link/ok/{name}/{role}", "hand-made: links between templates", role, dict(files), "ok")
    bad = [
        ("dangling-in-sms-folder", {"sms/a.xml": d + "<Response><Redirect>c</Redirect></Response>",
                                    "sms/b.xml": d + "<Response><Message>B</Message></Response>"}, "sms/a.xml",
         "<Redirect>c</Redirect> in sms/a.xml resolves to /sms/c, and there is no sms/c.xml"),
        ("entity-dangling", {"voice.xml": d + "<Response><Redirect>nowhere?id=1&amp;a=b</Redirect></Response>"}, "voice.xml",
         "the decoded link nowhere?id=1&a=b leads to /nowhere, and there is no nowhere.xml"),
        ("parent-dir-dangling", {"menu/main.xml": d + '<Response><Gather action="../menu2" numDigits="1"><Say>Press 1</Say></Gather></Response>',
                                 "voice.xml": d + "<Response><Redirect>menu/main</Redirect></Response>"}, "menu/main.xml",
         "../menu2 from /menu/main resolves to /menu2, and there is no menu2.xml"),
        ("absolute-path-dangling", {"voice.xml": d + "<Response><Redirect>/missing</Redirect></Response>"}, "voice.xml",
         "/missing names the template missing.xml, which the set does not have"),
        ("linked-from-both-channels", {"shared.xml": d + "<Response><Redirect>voice</Redirect></Response>",
                                       "voice.xml": d + "<Response><Redirect>shared</Redirect></Response>",
                                       "sms.xml": d + "<Response><Redirect>shared</Redirect></Response>"}, None,
         "shared.xml is reached from a call (voice.xml) and from a message (sms.xml): a message would end in voice.xml's voice TwiML"),
        ("xml-suffix", {"voice.xml": d + "<Response><Redirect>next.xml</Redirect></Response>", "next.xml": LINK_TARGET["voice"][2]}, "voice.xml",
         "next.xml answers /next; the link /next.xml names a template next.xml.xml that does not exist"),
    ]
    for name, files, ef, why in bad:
        for role in ROLES:
            c.add(f"link/bad/{name}/{role}", "hand-made: links between templates", role, dict(files), "error", why, ef)


def template_cases(c):
    """TwiML Bins-style templates: variables, {% if %} branches, markup split across branches."""
    d = XML_DECL
    nxt = LINK_TARGET["voice"][2]

    def voice(body):
        return {"voice.xml": d + "<Response>" + body + "</Response>"}

    def sms(body):
        return {"sms.xml": d + "<Response>" + body + "</Response>"}

    ok = [
        ("variables-in-say", voice("<Say>Hello {{ From }}, you called {{ To }}.</Say>"), {}),
        ("if-else-dial", {"voice.xml": d + '<Response>\n{% if Digits == "1" %}\n  <Dial action="next" callerId="{{ To }}">{{ agent_number }}</Dial>\n'
                          '{% else %}\n  <Say>Sorry, {{ Digits }} is not an option.</Say>\n  <Redirect method="POST">voice</Redirect>\n{% endif %}\n</Response>',
                          "next.xml": nxt}, {"agent_number": "+15550100002"}),
        ("split-start-tag", {"voice.xml": d + '<Response>{% if Digits %}<Gather numDigits="1" action="next">{% else %}<Gather numDigits="4" action="next">'
                             "{% endif %}<Say>Enter your code.</Say></Gather></Response>", "next.xml": nxt}, {}),
        ("split-end-tag", {"voice.xml": d + '<Response><Gather action="next" input="dtmf speech">{% if Digits %}<Say>Try again.</Say></Gather>'
                           "{% else %}<Say>Welcome.</Say></Gather><Say>Goodbye.</Say>{% endif %}</Response>", "next.xml": nxt}, {}),
        ("elif-chain", {"voice.xml": d + '<Response>{% if Digits == "1" %}<Redirect>next</Redirect>{% elif Digits == "2" %}<Play>https://example.com/a.mp3</Play>'
                        "{% elif SpeechResult %}<Say>You said {{ SpeechResult }}</Say>{% else %}<Hangup/>{% endif %}</Response>", "next.xml": nxt}, {}),
        ("jinja-comment-and-whitespace-control", {"voice.xml": d + "{# greeting for {{ From }} #}\n<Response>\n{%- if CallerName %}\n  <Say>Hi {{ CallerName }}</Say>\n{%- endif %}\n</Response>"}, {}),
        ("e164-missing-value", voice('<Dial callerId="{{ From | e164 }}">{{ To | e164 }}</Dial>'), {}),
        ("vars-company", voice("<Say>Welcome to {{ company }}.</Say>"), {"company": "Example & Sons"}),
        ("expression-in-ssml", {"voice.xml": d + '<Response><Say>Your number is <prosody rate="slow">{{ From }}</prosody>, '
                                '<say-as interpret-as="digits">42</say-as>.</Say></Response>'}, {}),
        ("expression-in-link-query", {"voice.xml": d + '<Response><Gather action="next?caller={{ From }}&amp;n=1" numDigits="1"><Say>Press 1</Say></Gather></Response>', "next.xml": nxt}, {}),
        ("queue-parameters", {"voice.xml": d + '<Response><Enqueue waitUrl="hold">support</Enqueue></Response>',
                              "hold.xml": d + "<Response><Say>You are number {{ QueuePosition }} in line; average wait {{ AvgQueueTime }} seconds, "
                              "{{ CurrentQueueSize }} callers, {{ QueueTime }} seconds so far.</Say><Play>https://example.com/music.mp3</Play></Response>"}, {}),
        ("dial-parameters", {"voice.xml": d + '<Response><Dial action="dial-status"><Sip>sip:alice@example.com</Sip></Dial></Response>',
                             "dial-status.xml": d + '<Response>{% if DialCallStatus == "completed" %}<Hangup/>{% else %}<Say>Call ended: '
                             "{{ DialCallStatus }} {{ DialSipResponseCode }} {{ DialCallDuration }}</Say>{% endif %}</Response>"}, {}),
        ("refer-parameters", {"voice.xml": d + '<Response><Refer action="refer-done"><Sip>sip:bob@example.com</Sip></Refer></Response>',
                              "refer-done.xml": d + "<Response><Say>Transfer {{ ReferCallStatus }} {{ ReferSipResponseCode }}</Say></Response>"}, {}),
        ("pay-parameters", {"voice.xml": d + '<Response><Pay action="paid" chargeAmount="10.00"/></Response>',
                            "paid.xml": d + '<Response>{% if Result == "success" %}<Say>Paid, confirmation {{ PaymentConfirmationCode }}.</Say>'
                            "{% else %}<Say>Payment failed: {{ Result }} {{ PaymentError }}</Say>{% endif %}</Response>"}, {}),
        ("record-parameters", {"voice.xml": d + '<Response><Record action="recorded" maxLength="30"/></Response>',
                               "recorded.xml": d + "<Response><Say>Recorded {{ RecordingDuration }} seconds.</Say><Play>{{ RecordingUrl }}</Play></Response>"}, {}),
        ("sms-body", sms('{% if Body == "STOP" %}{% else %}<Message>Thanks {{ ProfileName }}! You said: {{ Body }}</Message>{% endif %}'), {}),
        ("sms-media", {"sms.xml": d + '<Response>{% if NumMedia != "0" %}<Message>Got {{ NumMedia }} file(s): {{ MediaUrl0 }} ({{ MediaContentType0 }})</Message>'
                       "{% else %}<Message><Body>No media from {{ WaId }}</Body></Message>{% endif %}</Response>"}, {}),
        ("sms-split-message", sms('{% if Body %}<Message to="{{ From }}">{% else %}<Message>{% endif %}Hello {{ From }}</Message>'), {}),
        ("sms-whatsapp", sms("<Message>Hi {{ ProfileName }} ({{ WaId }}), button {{ ButtonText }}</Message>"), {}),
        ("attribute-in-a-branch", voice('<Gather {% if Digits %}numDigits="1" {% endif %}input="dtmf"><Say>Hi</Say></Gather>'), {}),
        ("for-loop", voice("{% for n in [1, 2, 3] %}<Say>{{ n }}</Say>{% endfor %}"), {}),
        ("jinja-comment-holding-markup", voice("{# <Gater> & < #}<Say>Hi</Say>"), {}),
        ("set-variable", voice('{% set greeting = "Hello" %}<Say>{{ greeting }} {{ From }}</Say>'), {}),
        ("no-declaration-template", {"voice.xml": "<Response>{% if Digits %}<Say>{{ Digits }}</Say>{% endif %}</Response>"}, {}),
    ]
    for name, files, vars in ok:
        for role in ROLES:
            c.add(f"template/ok/{name}/{role}", "hand-made: TwiML Bins-style template", role, dict(files), "ok", vars=dict(vars))
    bad = [
        ("unknown-variable", voice("<Say>Hello {{ Form }}</Say>"),
         "{{ Form }} is neither a Twilio request parameter nor a configured var (typo for From): it would always render empty"),
        ("unknown-variable-sms", sms("<Message>You said {{ Bdy }}</Message>"),
         "{{ Bdy }} is neither a Twilio request parameter nor a configured var (typo for Body)"),
        ("one-path-unbalanced", voice('{% if Digits %}<Gather numDigits="1">{% endif %}<Say>Enter</Say></Gather>'),
         "when Digits is empty the rendered document has </Gather> without <Gather>: not well-formed"),
        ("one-path-bad-attribute", voice('{% if Digits %}<Gather numdigits="1">{% else %}<Gather numDigits="4">{% endif %}'
                                         "<Say>Enter</Say></Gather>"),
         "the Digits path writes <Gather numdigits>: not an attribute of <Gather> (numDigits)"),
        ("one-path-raw-amp", voice("{% if Digits %}<Say>Tom & Jerry</Say>{% else %}<Say>Hi</Say>{% endif %}"),
         "the Digits path has a raw & in text: not well-formed"),
        ("one-path-voice-verb-in-sms", sms("{% if Body %}<Message>Hi</Message>{% else %}<Say>Hi</Say>{% endif %}"),
         "the path without Body puts <Say>, a voice verb, in the messaging template sms.xml"),
        ("one-path-dangling-link", voice('{% if Digits == "9" %}<Redirect>operator</Redirect>{% else %}<Hangup/>{% endif %}'),
         "the Digits == 9 path redirects to /operator and there is no operator.xml"),
        ("unclosed-if", voice("{% if Digits %}<Say>{{ Digits }}</Say>"),
         "{% if %} without {% endif %}: the template does not compile"),
        ("unclosed-expression", voice("<Say>{{ From </Say>"),
         "{{ without }}: the template does not compile"),
        ("one-path-bad-value", voice('{% if Digits %}<Pause length="forever"/>{% else %}<Pause length="2"/>{% endif %}'),
         "the Digits path writes <Pause length=\"forever\">: length is an integer > 0 (docs: https://www.twilio.com/docs/voice/twiml/pause)"),
        ("one-path-wrong-nesting", voice("<Dial>{% if Digits %}<Say>Connecting</Say>{% endif %}<Number>+15550100001</Number></Dial>"),
         "the Digits path puts <Say> inside <Dial>"),
    ]
    bad += [
        ("attribute-on-response", {"voice.xml": d + '<Response colour="blue"><Say>Hi</Say></Response>'},
         "<Response> takes no attributes; colour is unknown"),
        ("prefixed-element", voice('<x:Say xmlns:x="urn:example">Hi</x:Say>'), "<x:Say> is not the TwiML <Say>"),
        ("response-in-response", voice("<Response><Say>Hi</Say></Response>"), "<Response> is the root only"),
    ]
    for name, files, why in bad:
        (error_file,) = files  # each holds the one template that is wrong
        for role in ROLES:
            c.add(f"template/bad/{name}/{role}", "hand-made: TwiML Bins-style template", role, dict(files), "error", why, error_file)


def generate(schema, py_desc, node_desc, node_build):
    c = Corpus(schema, py_desc, node_desc, node_build)
    valid_sdk_cases(c)
    enum_value_cases(c)
    attribute_name_mutations(c)
    tag_mutations(c)
    attribute_value_mutations(c)
    nesting_mutations(c)
    named_nesting_cases(c)
    channel_mutations(c)
    wellformedness_cases(c)
    link_cases(c)
    template_cases(c)
    cases = c.finish()
    self_check(cases)
    return cases


def self_check(cases):
    """Judges the corpus with expat, an independent strict XML 1.0 parser, before it is written:
    every `ok` document without template syntax must be well-formed, and every `xml/` error case
    that claims a well-formedness error must be rejected by expat too."""
    import xml.parsers.expat

    def parses(text):
        p = xml.parsers.expat.ParserCreate()
        try:
            p.Parse(text.encode("utf-8"), True)
            return True
        except xml.parsers.expat.ExpatError:
            return False

    schema_level = ("wrong-root", "lowercase-root", "misspelled-verb", "lowercase-verb", "misspelled-noun")
    for c in cases:
        for path, text in c["files"].items():
            if "{{" in text or "{%" in text or "{#" in text:
                continue
            if c["expect"] == "ok" and not parses(text):
                raise SystemExit(f"corpus: ok case {c['id']} has a malformed {path}")
            if c["id"].startswith("xml/") and c["expect"] == "error" and path == c["error_file"]:
                if parses(text) != any(k in c["id"] for k in schema_level):
                    raise SystemExit(f"corpus: expat disagrees with {c['id']}")
