#!/usr/bin/env python3
"""Black-box test of a running twiml-failover server, with signatures made by twilio-python.

    python3 tests/oracle/blackbox.py --target http://127.0.0.1:PORT \\
        --signed-base https://voice.example.com --token TOKEN --role primary|fallback \\
        [--secondary-token T2] [--subaccount ACxxxx=TOKEN]... [--shared-key KEYID=SECRET]... \\
        [--count 300] [--seed 1]

Needs only the python standard library and the pinned ``twilio`` package
(tests/oracle/requirements.txt; tests/oracle/generate.sh installs it into tests/oracle/.venv).
Every signature and body hash is computed by ``twilio.request_validator.RequestValidator``.

Requests go to ``--target`` + path + query (with the Host header set to the target's host)
but are signed over ``--signed-base`` + path + query, i.e. the public URL the server was
configured with (``--public-url``). Without ``--signed-base`` the target URL itself is signed.

What is checked (one line per failure, then ``blackbox: N passed, M failed``; exit 1 if M > 0):
  * ``--count`` genuine, randomly built requests (seeded): form POSTs, GETs with the params in
    the query, and JSON POSTs to /voice?bodySHA256=...; awkward values (unicode, emoji, empty,
    + % & = quotes, long values, control characters), repeated names; signed with the primary
    token, the secondary token, a subaccount token (AccountSid = that subaccount) or a shared
    key (X-Twilio-Webhooks-Signature-Settings). Each must answer 200, Content-Type
    text/xml; charset=utf-8, a well-formed document rooted at <Response> (SMS answers: only
    <Message>/<Redirect> children). Primary role: signed POST /status callbacks must answer 204.
  * For every genuine request, altered copies (signature byte changed, param value changed, param
    added, param removed, path changed, wrong token, no signature, unknown shared key id, and
    for JSON: body altered / bodySHA256 dropped; for shared keys: algorithm mismatch/unknown):
    each must answer 403 with a short text/plain body that does not say which part failed
    (and every 403 body must be the same).
  * Markup injection: for every parameter name used, a genuine request whose value for that name
    is a markup payload must still answer well-formed TwiML with no injected <Redirect> to
    evil.example and no <Injected> element.
"""

import argparse
import copy
import json
import random
import sys
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPSConnection
from typing import List, Optional, Tuple
from urllib.parse import quote, urlencode, urlsplit

from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator

SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
FORM_CT = "application/x-www-form-urlencoded"
MAX_BODY = 60 * 1024
MAX_GET_QUERY = 6000  # keep request lines a sane size

EVIL_REDIRECT = "</Message><Redirect>http://evil.example/</Redirect><Message>"
EVIL_ATTR = '"/><Injected a="'
EVIL_CTRL = "ctl\x01\x0b\x1fend"
INJECTIONS = [("redirect", EVIL_REDIRECT), ("attr", EVIL_ATTR), ("ctrl", EVIL_CTRL)]

# Words that would tell a caller which part of the request failed validation.
LEAK_WORDS = ["hash", "sha", "token", "param", "key", "algorithm", "port", "url", "path", "missing",
              "header", "expected", "computed", "body", "account", "query"]


# ---------------------------------------------------------------------------
class MultiParams(dict):
    """name -> [values] with the getall() accessor twilio-python uses for MultiDicts."""

    @classmethod
    def from_pairs(cls, pairs):
        m = cls()
        for k, v in pairs:
            m.setdefault(k, []).append(v)
        return m

    def getall(self, name):
        return list(self[name])


def encode(pairs, style):
    if style == "plus":
        return urlencode(pairs)
    if style == "pct20":
        return urlencode(pairs, quote_via=quote)
    if style == "rawsafe":  # characters some clients leave unescaped
        return urlencode(pairs, safe="'()*!~:@/,")
    raise ValueError(style)


@dataclass
class Req:
    label: str
    channel: str  # "voice" | "sms" | "status"
    method: str  # "GET" | "POST"
    path: str
    query: List[Tuple[str, str]] = field(default_factory=list)
    qstyle: str = "plus"
    form: Optional[List[Tuple[str, str]]] = None  # POST form params
    fstyle: str = "plus"
    json_text: Optional[str] = None
    ctype: Optional[str] = None
    key: str = ""  # HMAC key
    key_desc: str = "primary"
    alg: str = HMAC_SHA1
    settings: Optional[str] = None  # X-Twilio-Webhooks-Signature-Settings value
    headers: List[Tuple[str, str]] = field(default_factory=list)
    sig: Optional[str] = None
    send_sig: bool = True

    def raw_query(self):
        return encode(self.query, self.qstyle) if self.query else ""

    def path_q(self):
        rq = self.raw_query()
        return self.path + ("?" + rq if rq else "")

    def body(self):
        if self.method == "GET":
            return b""
        if self.json_text is not None:
            return self.json_text.encode("utf-8")
        return encode(self.form or [], self.fstyle).encode("ascii")

    def sign(self, signed_base, key=None, alg=None):
        url = signed_base + self.path_q()
        params = MultiParams.from_pairs(self.form) if (self.method == "POST" and self.form is not None) else {}
        self.sig = RequestValidator(key if key is not None else self.key).compute_signature(
            url, params, algorithm=alg or self.alg)
        return self


def body_hash(text):
    return RequestValidator("unused").compute_hash(text)


# ---------------------------------------------------------------------------
class Target:
    def __init__(self, url):
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SystemExit(f"blackbox: bad --target {url!r}")
        self.https = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.netloc = u.netloc
        self.prefix = u.path.rstrip("/")
        self.url = f"{u.scheme}://{u.netloc}{self.prefix}"

    def send(self, req: Req, timeout=15.0):
        cls = HTTPSConnection if self.https else HTTPConnection
        conn = cls(self.host, self.port, timeout=timeout)
        try:
            body = req.body()
            conn.putrequest(req.method, self.prefix + req.path_q(), skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.netloc)
            for k, v in req.headers:
                conn.putheader(k, v)
            if req.settings is not None:
                conn.putheader(SETTINGS_HEADER, req.settings)
            if req.send_sig and req.sig is not None:
                conn.putheader("X-Twilio-Signature", req.sig)
            if req.method == "POST":
                if req.ctype:
                    conn.putheader("Content-Type", req.ctype)
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if req.method == "POST" else None)
            resp = conn.getresponse()
            data = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            return resp.status, headers, data
        finally:
            conn.close()


# ---------------------------------------------------------------------------
def media_type(headers):
    ct = headers.get("content-type", "")
    parts = [p.strip() for p in ct.split(";")]
    params = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"').lower()
    return parts[0].lower(), params


def check_twiml(status, headers, data, channel, sent_len=0, forbid_evil=False):
    problems = []
    if status != 200:
        return [f"status {status}, want 200"]
    mt, params = media_type(headers)
    if mt != "text/xml" or params.get("charset") != "utf-8":
        problems.append(f"Content-Type {headers.get('content-type')!r}, want 'text/xml; charset=utf-8'")
    # Twilio rejects answers over 64 kB. Only enforced for realistically sized requests: our
    # deliberately huge random values (far beyond the 1600-char SMS limit) may legitimately
    # expand past it when a template echoes and escapes them.
    if len(data) > 64 * 1000 and sent_len <= 16 * 1024:
        problems.append(f"body {len(data)} bytes > 64 kB (Twilio 11750)")
    if not data.startswith(b"<"):
        problems.append("body does not start with '<' (leading bytes break TwiML parsing, Twilio 12100)")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        return problems + [f"not well-formed XML: {e}"]
    if root.tag != "Response":
        problems.append(f"root element <{root.tag}>, want <Response>")
    if channel == "sms":
        bad = sorted({c.tag for c in root if c.tag not in ("Message", "Redirect")})
        if bad:
            problems.append(f"SMS answer has non-messaging children {bad}")
    if forbid_evil:
        for el in root.iter():
            if el.tag == "Redirect" and "evil.example" in "".join(el.itertext()):
                problems.append("injected <Redirect> to evil.example")
            if el.tag == "Injected":
                problems.append("injected <Injected> element")
    return problems


def check_forbidden(status, headers, data):
    problems = []
    if status != 403:
        return [f"status {status}, want 403"]
    mt, _ = media_type(headers)
    if mt != "text/plain":
        problems.append(f"Content-Type {headers.get('content-type')!r}, want text/plain")
    if len(data) > 200:
        problems.append(f"403 body is {len(data)} bytes, want a short text")
    text = data.decode("utf-8", "replace").lower()
    leaks = [w for w in LEAK_WORDS if w in text]
    if leaks:
        problems.append(f"403 body names the failing part ({', '.join(leaks)})")
    return problems


def check_no_content(status, headers, data):
    if status != 204:
        return [f"status {status}, want 204"]
    if data:
        return [f"204 with a body of {len(data)} bytes"]
    return []


# ---------------------------------------------------------------------------
ASCII_WORDS = ["hello", "Hello world", "ok", "STOP", "yes", "1", "0", "test", "Order #123", "a.b-c_d~e"]
UNICODE = ["Olá", "Straße", "naïve café", "你好，世界", "日本語", "한국어", "مرحبا", "\u200fשלום\u200f", "😀",
           "👍🏽", "👨‍👩‍👧", "🇧🇷", "e\u0301", "\ufeffbom", "\u2028line\u2029", "\ufffd", "💩", "Ω≈ç√∫",
           "ｆｕｌｌｗｉｄｔｈ"]
SPECIAL = ["", " ", "+", "%", "%2B", "%20", "%zz", "&", "=", "a=b&c=d", "&amp;", "<", ">", "<b>x</b>", "'", '"',
           "]]>", "<![CDATA[x]]>", "{{Body}}", "{{#e164}}{{To}}{{/e164}}", "\\", "\t", "\r\n", "\n", "  pad  ",
           "1+1=2", "it's", "sip:alice@example.com:5060", "client:bob", "anonymous", "#", "*", "?", "/", ";", ","]
CONTROL = ["\x01", "\x0b", "\x1f", "\x1b[31m", "\x7f", "\ufffe"]
DIGITS = ["1", "2", "9", "0", "#", "*", "", "1234", "12#", "999999999999"]
EXTRA_NAMES = ["FromCity", "FromState", "FromZip", "FromCountry", "ToCity", "ToState", "ToZip", "ToCountry",
               "CallerName", "ForwardedFrom", "ParentCallSid", "SpeechResult", "Confidence", "MediaUrl0",
               "MediaContentType0", "ProfileName", "WaId", "AddOns", "ButtonText", "Latitude", "Longitude",
               "Custom.Field", "x-custom", "Dest[]", "callSid", "CALLSID", "Unicodé", "Name With Space",
               "a+b", "Empty"]
# Fallback role: any path answers by channel (CallSid -> voice, MessageSid -> SMS); keep /voice and /menu for
# voice and /sms for SMS so the expectation does not depend on path-vs-param precedence.
FALLBACK_PATHS = {
    "voice": ["/voice", "/menu", "/some/unknown", "/fallback", "/a/b/c", "/twilio/voice-fallback"],
    "sms": ["/sms", "/some/unknown", "/fallback", "/a/b/c", "/twilio/sms-fallback"],
}


def hexid(rng, prefix):
    return prefix + "".join(rng.choice("0123456789abcdef") for _ in range(32))


def phone(rng):
    return "+1" + "".join(rng.choice("0123456789") for _ in range(10))


def awkward(rng):
    r = rng.random()
    if r < 0.05:
        return ""
    if r < 0.08:  # long value
        unit = rng.choice(["x", "é", "😀", "a b+c&d=e%", "<&>'\"", "0123456789"])
        return unit * rng.randint(200, 6000)
    n = rng.randint(1, 4)
    frags = []
    for _ in range(n):
        k = rng.random()
        if k < 0.3:
            frags.append(rng.choice(ASCII_WORDS))
        elif k < 0.6:
            frags.append(rng.choice(UNICODE))
        elif k < 0.95:
            frags.append(rng.choice(SPECIAL))
        else:
            frags.append(rng.choice(CONTROL))
    return "".join(frags)


def mostly_plain(rng, plain):
    return awkward(rng) if rng.random() < 0.15 else plain


class Gen:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.subaccounts = [tuple(s.split("=", 1)) for s in args.subaccount]
        self.shared = [tuple(s.split("=", 1)) for s in args.shared_key]
        self.account = "AC" + "0123456789abcdef" * 2
        self.names = {"voice": set(), "sms": set()}

    def voice_params(self, digits=False, plain=False):
        rng = self.rng
        pick = (lambda v: v) if plain else (lambda v: mostly_plain(rng, v))
        p = [
            ("CallSid", hexid(rng, "CA")),
            ("AccountSid", self.account),
            ("From", pick(phone(rng))),
            ("To", phone(rng)),
            ("CallStatus", rng.choice(["ringing", "in-progress", "queued"])),
            ("Direction", rng.choice(["inbound", "outbound-api", "outbound-dial"])),
            ("ApiVersion", "2010-04-01"),
        ]
        if rng.random() < 0.5:
            p += [("Called", p[3][1]), ("Caller", p[2][1])]
        if digits or rng.random() < 0.3:
            p.append(("Digits", pick(rng.choice(DIGITS))))
        return p

    def sms_params(self, plain=False):
        rng = self.rng
        pick = (lambda v: v) if plain else (lambda v: mostly_plain(rng, v))
        sid = hexid(rng, "SM")
        return [
            ("ToCountry", "US"),
            ("SmsMessageSid", sid),
            ("NumMedia", "0"),
            ("SmsSid", sid),
            ("SmsStatus", "received"),
            ("Body", "hello" if plain else awkward(rng)),
            ("To", phone(rng)),
            ("NumSegments", str(rng.randint(1, 3))),
            ("MessageSid", sid),
            ("AccountSid", self.account),
            ("From", pick(phone(rng))),
            ("ApiVersion", "2010-04-01"),
        ]

    def add_extras(self, p):
        rng = self.rng
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            p.append((rng.choice(EXTRA_NAMES), awkward(rng)))
        if rng.random() < 0.2:  # repeated names, sometimes with identical values
            name = rng.choice(["MediaUrl0", "Dest[]", "Tag", "x-custom"])
            v = awkward(rng)
            p += [(name, v), (name, rng.choice([v, awkward(rng)]))]
            if rng.random() < 0.3:
                p.append((name, awkward(rng)))
        if rng.random() < 0.3:
            rng.shuffle(p)
        return p

    def fallback_extras(self, p, path):
        p.append(("ErrorCode", self.rng.choice(["11200", "11205", "12100", "12300", "11750"])))
        p.append(("ErrorUrl", "https://primary.example.com" + path + self.rng.choice(["", "?a=1&b=two"])))
        return p

    def choose_key(self, req, allow_sub=True):
        """Pick a signing key; may set AccountSid to a subaccount. Returns nothing."""
        rng, a = self.rng, self.args
        r = rng.random()
        if self.shared and r < 0.15:
            kid, secret = rng.choice(self.shared)
            alg = HMAC_SHA256 if rng.random() < 0.7 else HMAC_SHA1
            req.key, req.alg, req.key_desc = secret, alg, f"shared-key {kid} {alg}"
            req.settings = f"key={kid},algorithm={alg}"
        elif a.secondary_token and r < 0.30:
            req.key, req.key_desc = a.secondary_token, "secondary"
        elif self.subaccounts and allow_sub and r < 0.45:
            sid, tok = rng.choice(self.subaccounts)
            req.key, req.key_desc = tok, f"subaccount {sid}"
            pairs = req.form if req.method == "POST" else req.query
            for i, (k, v) in enumerate(pairs):
                if k == "AccountSid":
                    pairs[i] = (k, sid)
        else:
            req.key, req.key_desc = a.token, "primary"

    def twilio_headers(self):
        return [("User-Agent", "TwilioProxy/1.1"), ("Accept", "*/*"), ("X-Home-Region", "us1"),
                ("I-Twilio-Idempotency-Token", str(uuid.UUID(int=self.rng.getrandbits(128))))]

    def shrink(self, pairs, limit, style):
        while len(encode(pairs, style)) > limit:
            i = max(range(len(pairs)), key=lambda j: len(pairs[j][1]))
            k, v = pairs[i]
            pairs[i] = (k, v[: len(v) // 2])
        return pairs

    def genuine(self, i):
        rng, a = self.rng, self.args
        # channel and path
        if a.role == "primary":
            path = rng.choice(["/voice", "/voice", "/sms", "/sms", "/menu"])
            channel = "sms" if path == "/sms" else "voice"
        else:
            channel = rng.choice(["voice", "sms"])
            path = rng.choice(FALLBACK_PATHS[channel])
        kind = rng.choices(["form", "get", "json"], weights=[6, 3, 2])[0]
        if kind == "json":
            channel, path = "voice", "/voice"
        params = self.voice_params(digits=(path == "/menu")) if channel == "voice" else self.sms_params()
        if a.role == "fallback":
            self.fallback_extras(params, path)
        params = self.add_extras(params)
        self.names[channel].update(k for k, _ in params)
        style = rng.choice(["plus", "plus", "pct20", "rawsafe"])
        req = Req(label=f"genuine#{i} {kind} {channel}", channel=channel, method="POST", path=path,
                  headers=self.twilio_headers())
        if kind == "form":
            req.form = self.shrink(params, MAX_BODY - 512, style)
            req.fstyle = style
            req.ctype = rng.choice([FORM_CT, FORM_CT + "; charset=utf-8"])
            if rng.random() < 0.15:
                req.query = [("tenant", rng.choice(["acme", "a b", "x'y", "ü"]))]
                req.qstyle = style
        elif kind == "get":
            req.method = "GET"
            req.query = self.shrink(params, MAX_GET_QUERY, style)
            req.qstyle = style
        else:
            obj = {k: v for k, v in params}
            req.json_text = json.dumps(obj, ensure_ascii=rng.random() < 0.5,
                                       separators=rng.choice([(",", ":"), (", ", ": ")]))
            while len(req.json_text.encode("utf-8")) > MAX_BODY - 512:
                k = max(obj, key=lambda j: len(obj[j]))
                obj[k] = obj[k][: len(obj[k]) // 2]
                req.json_text = json.dumps(obj)
            pre = [("tenant", "acme")] if rng.random() < 0.2 else []
            req.query = pre + [("bodySHA256", body_hash(req.json_text))]
            req.ctype = rng.choice(["application/json", "application/json; charset=utf-8"])
        self.choose_key(req, allow_sub=(kind != "json"))
        return req.sign(self.signed_base)

    # -- altered copies ---------------------------------------------------
    def altered(self, g: Req):
        rng, a = self.rng, self.args
        out = []

        def mk(tag):
            r = copy.deepcopy(g)
            r.label = f"{g.label} / {tag}"
            return r

        r = mk("signature byte changed")
        pos = rng.randrange(0, len(g.sig) - 3)  # stay clear of the last char and padding
        c = g.sig[pos]
        r.sig = g.sig[:pos] + ("A" if c != "A" else "B") + g.sig[pos + 1:]
        out.append(r)

        def pairs_of(x):
            if x.method == "GET" or x.json_text is not None:
                return x.query
            return x.form

        if g.json_text is None:
            r = mk("param value changed")
            ps = pairs_of(r)
            j = rng.randrange(len(ps))
            k, v = ps[j]
            ps[j] = (k, v + "x" if rng.random() < 0.5 else ("y" + v[1:] if v[:1] != "y" else "z" + v[1:]))
            out.append(r)
            r = mk("param added")
            pairs_of(r).append((rng.choice(["Extra", "Digits", "Body", "CallSid"]), "1"))
            out.append(r)
            r = mk("param removed")
            ps = pairs_of(r)
            del ps[rng.randrange(len(ps))]
            out.append(r)
        else:
            r = mk("JSON body altered after hashing")
            r.json_text = g.json_text.replace("2010-04-01", "2010-04-02") if "2010-04-01" in g.json_text \
                else g.json_text[:-1] + ',"X":"1"}'
            out.append(r)
            r = mk("JSON key added after hashing")
            r.json_text = g.json_text[:-1] + ',"Extra":"1"}'
            out.append(r)
            r = mk("JSON without bodySHA256, URL re-signed")
            r.query = [(k, v) for k, v in r.query if k != "bodySHA256"]
            r.sign(self.signed_base)
            out.append(r)
            r = mk("query param added")
            r.query = r.query + [("Extra", "1")]
            out.append(r)

        r = mk("path changed")
        r.path = {"/voice": "/sms", "/sms": "/voice", "/menu": "/voice"}.get(g.path, g.path + "x")
        out.append(r)

        r = mk("wrong token")
        r.key_desc = "wrong token"
        r.sign(self.signed_base, key=a.token[:-1] + ("0" if a.token[-1:] != "0" else "1"), alg=HMAC_SHA1)
        r.settings = None
        out.append(r)

        r = mk("no signature header")
        r.send_sig = False
        out.append(r)

        r = mk("unknown shared key id")
        r.settings = f"key=unknown-{rng.randrange(10**6)},algorithm={g.alg}"
        out.append(r)

        if g.settings is not None:
            kid = g.settings.split(",")[0][4:]
            other = HMAC_SHA1 if g.alg == HMAC_SHA256 else HMAC_SHA256
            r = mk("settings header algorithm swapped")
            r.settings = f"key={kid},algorithm={other}"
            out.append(r)
            r = mk("unknown algorithm")
            r.settings = f"key={kid},algorithm=HMAC_MD5"
            out.append(r)
            r = mk("settings header dropped")
            r.settings = None
            out.append(r)
        return [r for r in out if not self.same_signed_content(g, r)]

    def same_signed_content(self, g: Req, r: Req):
        """True if an alteration left the signed content unchanged (e.g. removing one of two identical
        repeated pairs, which the SDKs de-duplicate): such a copy is still genuine, so skip it."""
        if r.json_text != g.json_text or r.settings != g.settings or not r.send_sig or r.sig != g.sig:
            return False
        probe = copy.deepcopy(r).sign(self.signed_base, key=g.key, alg=g.alg)
        return probe.sig == g.sig

    # -- status callbacks (primary role) ----------------------------------
    def status_callback(self, i):
        rng = self.rng
        p = self.voice_params()
        p = [(k, "completed" if k == "CallStatus" else v) for k, v in p]
        p += [("CallDuration", str(rng.randint(0, 600))), ("Timestamp", "Tue, 01 Sep 2026 10:00:00 +0000")]
        req = Req(label=f"status#{i}", channel="status", method="POST", path="/status", form=p,
                  fstyle=rng.choice(["plus", "pct20"]), ctype=FORM_CT, headers=self.twilio_headers())
        self.choose_key(req)
        return req.sign(self.signed_base)

    # -- markup injection --------------------------------------------------
    def injections(self):
        rng, a = self.rng, self.args
        out = []
        for channel in ("voice", "sms"):
            for name in sorted(self.names[channel]):
                for tag, payload in INJECTIONS:
                    for kind in (["form", "get", "json"] if channel == "voice" else ["form", "get"]):
                        if kind != "form" and tag == "attr":
                            continue
                        if a.role == "primary":
                            path = "/sms" if channel == "sms" else ("/menu" if name == "Digits" else "/voice")
                        else:
                            path = rng.choice(FALLBACK_PATHS[channel])
                        if kind == "json":
                            path = "/voice"
                        base = self.voice_params(digits=(path == "/menu"), plain=True) if channel == "voice" \
                            else self.sms_params(plain=True)
                        if a.role == "fallback":
                            self.fallback_extras(base, path)
                        base = [(k, v) for k, v in base if k != name] + [(name, payload)]
                        req = Req(label=f"injection {tag} in {name} ({kind} {channel})", channel=channel,
                                  method="POST", path=path, key=a.token, headers=self.twilio_headers())
                        if kind == "form":
                            req.form, req.ctype = base, FORM_CT
                        elif kind == "get":
                            req.method, req.query = "GET", base
                        else:
                            req.json_text = json.dumps(dict(base))
                            req.query = [("bodySHA256", body_hash(req.json_text))]
                            req.ctype = "application/json"
                        out.append(req.sign(self.signed_base))
        return out


# ---------------------------------------------------------------------------
def trunc(x, n):
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


class Runner:
    def __init__(self, target):
        self.target = target
        self.passed = 0
        self.failed = 0
        self.forbidden_bodies = {}

    def run(self, req: Req, check, **kw):
        try:
            status, headers, data = self.target.send(req)
        except Exception as e:  # connection refused, reset, timeout, ...
            status, headers, data = None, {}, b""
            problems = [f"request failed: {type(e).__name__}: {e}"]
        else:
            if check == "twiml":
                problems = check_twiml(status, headers, data, req.channel,
                                       sent_len=len(req.body()) + len(req.path_q()), **kw)
            elif check == "forbidden":
                problems = check_forbidden(status, headers, data)
                if status == 403:
                    self.forbidden_bodies.setdefault(data, req.label)
            else:
                problems = check_no_content(status, headers, data)
        if problems:
            self.failed += 1
            sent = req.body()
            print(f"FAIL {req.label}: {'; '.join(problems)}\n"
                  f"     sent {req.method} {trunc(req.path_q(), 160)} key={req.key_desc}"
                  f" settings={req.settings!r} sig={req.sig if req.send_sig else None!r}"
                  f" ctype={req.ctype!r} body={trunc(sent, 200)}\n"
                  f"     got {status} {headers.get('content-type')!r} {trunc(data, 300)}", flush=True)
        else:
            self.passed += 1


def main():
    ap = argparse.ArgumentParser(description="Black-box test of a twiml-failover server (signatures by twilio-python)")
    ap.add_argument("--target", required=True, help="where to connect, e.g. http://127.0.0.1:8080")
    ap.add_argument("--signed-base", help="public base URL the server was configured with (--public-url)")
    ap.add_argument("--token", required=True, help="primary auth token")
    ap.add_argument("--role", required=True, choices=["primary", "fallback"])
    ap.add_argument("--secondary-token")
    ap.add_argument("--subaccount", action="append", default=[], metavar="ACxxxx=TOKEN")
    ap.add_argument("--shared-key", action="append", default=[], metavar="KEYID=SECRET")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for opt in args.subaccount + args.shared_key:
        if "=" not in opt:
            ap.error(f"expected NAME=SECRET, got {opt!r}")

    target = Target(args.target)
    gen = Gen(args)
    gen.signed_base = (args.signed_base or target.url).rstrip("/")
    runner = Runner(target)

    for i in range(args.count):
        g = gen.genuine(i)
        runner.run(g, "twiml")
        for bad in gen.altered(g):
            runner.run(bad, "forbidden")
        if args.role == "primary" and i % 10 == 0:
            s = gen.status_callback(i)
            runner.run(s, "no_content")
            bad = copy.deepcopy(s)
            bad.label += " / signature byte changed"
            bad.sig = ("A" if s.sig[0] != "A" else "B") + s.sig[1:]
            runner.run(bad, "forbidden")

    for req in gen.injections():
        runner.run(req, "twiml", forbid_evil=True)

    if len(runner.forbidden_bodies) > 1:
        runner.failed += 1
        shown = "; ".join(f"{trunc(b, 80)} (first for {lbl})" for b, lbl in list(runner.forbidden_bodies.items())[:4])
        print(f"FAIL 403 answers differ between failure kinds ({len(runner.forbidden_bodies)} distinct bodies): {shown}")
    else:
        runner.passed += 1

    print(f"blackbox: {runner.passed} passed, {runner.failed} failed")
    sys.exit(1 if runner.failed else 0)


if __name__ == "__main__":
    main()
