#!/usr/bin/env python3
"""Generate tests/vectors/sdk_signatures.json with the official Twilio SDKs.

Every signature in the output is computed by an SDK: twilio-python's
``RequestValidator.compute_signature`` (and, for HMAC-SHA1, cross-checked against
twilio-node's ``getExpectedTwilioSignature``). Every vector is then run through both
SDK validators (python ``RequestValidator.validate``; node ``validateRequest`` /
``validateRequestWithBody``) and their verdicts are recorded. Body hashes for
``bodySHA256`` come from ``RequestValidator.compute_hash`` (cross-checked with node's
``getExpectedBodyHash``). This script never computes an HMAC or hash itself.

Each case below also states the verdicts we expect from the pinned SDKs and, for the
vectors copied from the SDK test suites, the signature those suites expect. Any
difference aborts the run, so an SDK upgrade that changes behaviour cannot slip
through silently.

Usage (normally via generate.sh, which installs the pinned SDKs first):
    python3 generate.py [--out PATH] [--node node]
"""

import argparse
import json
import os
import subprocess
import sys
from urllib.parse import parse_qsl, quote, urlencode

import twilio
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "vectors", "sdk_signatures.json")

FORM = "application/x-www-form-urlencoded"
JSON_CT = "application/json"

# ---------------------------------------------------------------------------
# Fake credentials (none of these is a real Twilio secret).
T = "12345"  # the token used by every SDK test suite and the Twilio docs example
TK = "9f3c2a1b8e7d6c5b4a39281706f5e4d3"  # "primary" auth token of our fake account
TK2 = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"  # "secondary" token (rotation)
TSUB = "5e4d3c2b1a0f9e8d7c6b5a4938271605"  # a fake subaccount's token
SK = "shared-key-secret-3b7e91c04d5a28f6e0c1"  # fake SharedKey secret (HMAC_SHA256)

ACC = "AC" + "0123456789abcdef" * 2
SUBACC = "AC" + "fedcba9876543210" * 2
CALL = "CA" + "1f2e3d4c5b6a79880796a5b4c3d2e1f0"
MSG = "SM" + "8a7b6c5d4e3f20112233445566778899"

# The common base used by the SDK test suites.
U = "https://mycompany.com/myapp.php?foo=1&bar=2"
P = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]
B = '{"property": "value", "boolean": true}'

BASE = "https://voice.example.com"


def voice(**extra):
    pairs = [
        ("AccountSid", ACC),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", CALL),
        ("CallStatus", "ringing"),
        ("Called", "+14155550199"),
        ("Caller", "+14155550100"),
        ("Direction", "inbound"),
        ("From", "+14155550100"),
        ("To", "+14155550199"),
    ]
    return _merge(pairs, extra)


def sms(body, **extra):
    pairs = [
        ("ToCountry", "US"),
        ("SmsMessageSid", MSG),
        ("NumMedia", "0"),
        ("SmsSid", MSG),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", "+14155550199"),
        ("NumSegments", "1"),
        ("MessageSid", MSG),
        ("AccountSid", ACC),
        ("From", "+14155550100"),
        ("ApiVersion", "2010-04-01"),
    ]
    return _merge(pairs, extra)


def _merge(pairs, extra):
    out = []
    for k, v in pairs:
        if k in extra:
            v = extra.pop(k)
            if v is None:
                continue
        out.append((k, v))
    out.extend(extra.items())
    return out


def q(pairs, style="plus"):
    """urlencode pairs the way a form body / query string is written on the wire."""
    if style == "plus":
        return urlencode(pairs)  # quote_plus: space -> "+"
    if style == "pct20":
        return urlencode(pairs, quote_via=quote)  # quote(safe=""): space -> "%20"
    raise ValueError(style)


def with_query(url, pairs, style="plus"):
    return url + ("&" if "?" in url else "?") + q(pairs, style)


def flip(sig, index=5):
    """Change one base64 character of a signature (deterministically)."""
    c = sig[index]
    r = "B" if c != "B" else "C"
    return sig[:index] + r + sig[index + 1:]


# ---------------------------------------------------------------------------
# The cases. Keys:
#   name, description, token, algorithm (default HMAC_SHA1)
#   kind: "form" (POST urlencoded), "json" (POST application/json), "get"
#   signed_url, request_url (default: signed_url)
#   params: list of (name, value) as sent (form only)
#   style: "plus" | "pct20" | a literal body string (form only)
#   body: JSON text (json only)
#   sign_params / sign_token / sign_algorithm: sign something other than what is sent
#   sign_raw: sign this exact string as a URL with no params (used to reproduce the
#             signatures of known-wrong signing schemes, e.g. V28)
#   sign_sdk: "python" (default) or "node": whose signature to record when they differ
#   sdk_sign_diverges: python and node compute different signatures for these inputs
#   mutate: function applied to the SDK signature (negative vectors)
#   signature: a literal signature (only for malformed-signature negatives)
#   expect_sig: signature the SDK test suites / docs expect
#   expect: (python_verdict, node_verdict); default (True, True), node None for SHA256
CASES = []


def case(**kw):
    CASES.append(kw)


def sdk_cases():
    c = case
    c(name="d0-docs-example", token=T, signed_url="https://example.com/myapp.php?foo=1&bar=2",
      params=[("Digits", "1234"), ("To", "+18005551212"), ("From", "+14158675310"),
              ("Caller", "+14158675310"), ("CallSid", "CA1234567890ABCDE")],
      expect_sig="L/OH5YylLD5NRKLltdqwSvS0BnU=",
      description="D0: the worked example on Twilio's Security docs page (params sent unsorted)")
    c(name="v01-base", token=T, signed_url=U, params=P, expect_sig="RSOYDt4T1cUTdK1PDd93/VVr8B8=",
      description="V1: the base vector shared by all SDK test suites")
    c(name="v02-request-port-1234-stripped", token=T, signed_url=U,
      request_url=U.replace(".com", ".com:1234"), params=P, expect_sig="RSOYDt4T1cUTdK1PDd93/VVr8B8=",
      description="V2: signed without a port; request URL has :1234; validators retry with the port removed")
    c(name="v03-http-port-1234", token=T, signed_url="http://mycompany.com:1234/myapp.php?foo=1&bar=2",
      params=P, expect_sig="Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
      description="V3: http with non-default port :1234, signed and requested with it")
    c(name="v04-signed-443-request-without", token=T, signed_url="https://mycompany.com:443/myapp.php?foo=1&bar=2",
      request_url=U, params=P, expect_sig="kvajT1Ptam85bY51eRf/AJRuM3w=",
      description="V4: signed with :443; request URL has no port; validators retry with :443 added")
    c(name="v05-http-signed-80-request-without", token=T, signed_url="http://mycompany.com:80/myapp.php?foo=1&bar=2",
      request_url="http://mycompany.com/myapp.php?foo=1&bar=2", params=P, expect_sig="0ZXoZLH/DfblKGATFgpif+LLRf4=",
      description="V5: http signed with :80; request URL has no port; validators retry with :80 added")
    c(name="v06-json-bodysha256", token=T, kind="json", signed_url=U + "&bodySHA256={H}", body=B,
      expect_sig="a9nBmqA0ju/hNViExpshrM61xv4=",
      description="V6: JSON body; bodySHA256 (hex SHA-256 of the raw body) appended to the query; only the URL is signed")
    c(name="v07-json-only-bodysha256", token=T, kind="json",
      signed_url="https://mycompany.com/myapp.php?bodySHA256={H}", body=B, expect_sig="y77kIzt2vzLz71DgmJGsen2scGs=",
      description="V7: JSON body; bodySHA256 is the only query parameter")
    c(name="v08-json-empty-object-signed-443", token=T, kind="json",
      signed_url="https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256={H}",
      request_url="https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={H}", body="{}",
      expect_sig="Ldidvp12m26NI7eqEvxnEpkd9Hc=",
      description="V8: JSON body '{}'; signed with :443, request URL without port")
    c(name="v09-repeated-digits", token=T, signed_url=U,
      params=[("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")],
      expect_sig="IK+Dwps556ElfBT0I3Rgjkr1wJU=",
      description="V9: repeated name Digits=[5678,1234,1234]; SDKs sign sorted UNIQUE values, name repeated per value: "
                  "...Digits1234Digits5678SidCA123SidAccountAC123")
    c(name="v10-userinfo", token=T, signed_url="https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", params=P,
      expect_sig="CukzLTc1tT5dXEDIHm/tKBanW10=",
      description="V10: URL with user:pass@ userinfo, signed including it (SDK URL-handling test; a real request line never carries userinfo)")
    c(name="v11-userinfo-signed-443", token=T, signed_url="https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
      request_url="https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", params=P,
      expect_sig="ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
      description="V11: userinfo URL signed with :443, request URL without port")
    c(name="v12a-username-only", token=T, signed_url="https://user@mycompany.com/myapp.php?foo=1&bar=2", params=P,
      expect_sig="2YRLlVAflCqxaNicjMpJcSTgzSs=", description="V12a: URL with only a username in userinfo")
    c(name="v12b-username-signed-443", token=T, signed_url="https://user@mycompany.com:443/myapp.php?foo=1&bar=2",
      request_url="https://user@mycompany.com/myapp.php?foo=1&bar=2", params=P,
      expect_sig="aZfj4hyX1MLZhSS6QIL18Vn2/RA=", description="V12b: username-only userinfo, signed with :443, request without port")
    c(name="v13-apostrophe-signed-escaped", token=T, signed_url=U + "&Body=It%27s+amazing",
      request_url=U + "&Body=It's+amazing", params=P, expect_sig="TfZzewPq8wqrGlMfyAud8+/IvJ0=", expect=(False, True),
      description="V13: signed over %27, request URL carries a raw apostrophe. python compares bytes and rejects; "
                  "node 6.2.0 accepts through its new URL() normalisation fallback")
    c(name="v14-array-param", token=T, signed_url=U,
      params=[("MessagingBinding.Address", "+1415xxxxxxx"), ("MessagingBinding.Address", "+1325xxxxxxx")],
      expect_sig="83O6e2vORAoJHUNzJjDWN1jz+BA=",
      description="V14: one name with two values sent in unsorted order; values are sorted before signing")
    c(name="v15-no-params", token=T, signed_url=U, params=[], expect_sig="zYQTYrRWXE7LtzbG4PfP7/bkkGo=",
      description="V15: form POST with an empty body: only the URL is signed")
    c(name="v16-no-query", token=T, signed_url="https://mycompany.com/myapp.php", params=P,
      expect_sig="1xaxFBvyzXYvWplzNOSs28HWO94=", description="V16: URL without a query string")
    c(name="v17-extra-query-param", token=T,
      signed_url=U + "&type=thiswontbeusedinthesignaturegeneratorandsoshouldbeignored", params=P,
      expect_sig="hYkNsTBttoNGkyCS0p+wWmQoRTg=",
      description="V17: every query parameter is part of the signed URL (nothing is ignored)")
    c(name="v18-encoded-query", token=T, signed_url="https://mycompany.com/myapp.php?foo=hello%20world&bar=test%2Bvalue",
      params=P, expect_sig="er2tvAP1Wx+iuTTE2BPgvEaN1cs=",
      description="V18: percent-encoded query (%20, %2B) is signed verbatim, not decoded")
    c(name="v19-special-chars", token=T, signed_url=U,
      params=[("Message", "Hello & goodbye! @#$%^*()"), ("From", "+1 (415) 867-5309"), ("Special", "unicode: ñáéíóú")],
      expect_sig="dCPiR4WtQ6QFN6pJh81CtlCcWLQ=",
      description="V19: &, %, spaces, + and accented letters in values (decoded values are signed)")
    c(name="v20-empty-values", token=T, signed_url=U,
      params=[("Digits", ""), ("CallSid", "CA1234567890ABCDE"), ("EmptyParam", "")],
      expect_sig="9HHp/OqQMEwdrVebHDdA/+tqjX8=", description="V20: empty values still contribute their names")
    c(name="v21-null-as-empty", token=T, signed_url=U,
      params=[("Digits", ""), ("CallSid", "CA1234567890ABCDE"), ("NullParam", "")],
      expect_sig="L9lTTwIlxM1xGAtLRwhOSZggRhM=", description="V21: java null values are signed as empty strings")
    c(name="v22-key-sorting", token=T, signed_url=U,
      params=[("Zebra", "last"), ("Alpha", "first"), ("Beta", "second"), ("Gamma", "third")],
      expect_sig="enveUe73ZTVLAekHxez3Qx6JuuQ=", description="V22: params sent in non-sorted order")
    c(name="v23-utf8-url", token=T, signed_url="https://mycompany.com/webhook/España?año=2023", params=P,
      expect_sig="G/Hx6mqqnjUNlPAoi2Sp9bGst0g=", description="V23: raw (unescaped) UTF-8 in path and query, hashed as UTF-8")
    c(name="v24-case-sensitive-names", token=T, signed_url=U,
      params=[("callSid", "lowercase"), ("CallSid", "uppercase"), ("CALLSID", "allcaps")],
      expect_sig="jDK7WKT8wiNrwggd4ceTv4e1MJ4=",
      description="V24: names differing only in case are distinct; byte order CALLSID < CallSid < callSid")
    c(name="v25-double-slash-443", token=T, signed_url="https://mycompany.com:443//myapp.php?foo=1&bar=2", params=P,
      expect_sig="A9lH3u16NjyiiM/+wylw5rirFUs=", description="V25: double slash in the path is kept as is (URL also has :443)")
    reason = P + [("ReasonConferenceEnded", "test"), ("Reason", "Participant")]
    c(name="v26-prefix-names-sort", token=T, signed_url=U, params=reason, expect_sig="vOEb5UThFn24KEfnOFLQY2AE5FY=",
      description="V26: Reason sorts before ReasonConferenceEnded (sort by name, then append name+value)")
    c(name="v27-prefix-names-sort-http", token=T, signed_url="http://mycompany.com/myapp.php?foo=1&bar=2",
      params=reason, expect_sig="n2xBNyzSW7rfYStDtOFiFMv7qNo=", description="V27: as V26 over http")
    wrong = (U + "CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309"
             "ReasonConferenceEndedtestReasonParticipantTo+18005551212")
    c(name="v28-negative-wrong-sort", token=T, signed_url=U, params=reason, sign_raw=wrong,
      expect_sig="95+Bu0JVPi0r/SsESZCVf0dWAjw=", expect=(False, False),
      description="V28 (NEGATIVE): signature of the old twilio-go bug that sorted name+value strings "
                  "(...ReasonConferenceEndedtestReasonParticipant...); must be rejected")
    c(name="v29-form-body-property", token=T, signed_url=U, params=[("property", "value"), ("boolean", "true")],
      expect_sig="NBdBDr/T/lgjI+tlgpXjKZQZs/k=", description="V29: form body property=value&boolean=true")
    c(name="v30-uppercase-host", token=T, signed_url="https://MyCompany.com/myapp.php?foo=1&bar=2", params=P,
      expect_sig="g9IN/x4Cft2g517EjYvEvM/W7LU=", description="V30: host case preserved as configured")
    c(name="v31-uppercase-host-port-1234", token=T, signed_url="https://MyCompany.com:1234/myapp.php?foo=1&bar=2",
      params=P, expect_sig="PCqOZm8cnu/L6+u5i5fuEd+Iac4=", description="V31: uppercase host with :1234, signed with the port")
    c(name="v32-http-uppercase-host", token=T, signed_url="http://MyCompany.com/myapp.php?foo=1&bar=2", params=P,
      expect_sig="XY7AlKOKL6im4yWyX84gldUrtis=", description="V32: http, uppercase host")
    c(name="v33-http-userinfo-uppercase-host", token=T,
      signed_url="http://username:password@MyCompany.com/myapp.php?foo=1&bar=2", params=P,
      expect_sig="PJ08CxXr7KLPjEQCTc8LkUSMwSM=", description="V33: http, userinfo, uppercase host")
    c(name="v34-uppercase-scheme", token=T,
      signed_url="HTTP://username:password@MyCompany.com/myapp.php?foo=1&bar=2", params=P,
      expect_sig="hy/l8pca+LFms4cvRdv8uiP6NGc=", expect=(False, True),
      description="V34: uppercase scheme HTTP:// signed verbatim. python rejects (urlparse().geturl() lowercases the "
                  "scheme); node accepts (regex split keeps it)")
    c(name="v35-userinfo-case", token=T, signed_url="http://Username:Password@MyCompany.com/myapp.php?foo=1&bar=2",
      params=P, expect_sig="SkTSKyDJH9kUlhItI0slbgZ1UsI=", description="V35: userinfo case preserved")
    c(name="v36-https-port-1234-signed-with-port", token=T,
      signed_url="https://mycompany.com:1234/myapp.php?foo=1&bar=2", params=P,
      expect_sig="CYn1h0gLBdNxDGkKJg6hYohgeD8=", description="V36: https with :1234, signed with the port")
    # Extra regression vectors from the protocol notes (self-computed there, recomputed here).
    c(name="notes-get-query", token=T, kind="get",
      signed_url="https://example.com/voice?CallSid=CA123&From=%2B14155550100&To=%2B14155550199",
      expect_sig="xPxbvzSq5IHScA+feWi6qRls5hg=", description="GET: params only in the query; the full URL is signed, nothing appended")
    c(name="notes-fragment-dropped", token=T, signed_url="https://example.com/voice",
      params=[("CallSid", "CA123"), ("From", "+14155550100"), ("To", "+14155550199")],
      expect_sig="UpZnryIyP9KW8bd9HE/Kx9Btu4w=",
      description="configured URL was https://example.com/voice#ct=1000&rp=ct,rt; the #fragment is not signed")
    c(name="notes-fallback-voice", token=T, signed_url="https://fallback.example.net/twilio/voice",
      params=[("CallSid", "CA123"), ("From", "+14155550100"), ("To", "+14155550199"), ("ErrorCode", "11205"),
              ("ErrorUrl", "https://primary.example.com/twilio/voice")],
      expect_sig="JdW2bfET0tiv5WpWyy1z7VQw6Pw=",
      description="fallback request: signed over the fallback URL; ErrorCode and ErrorUrl are ordinary signed params")
    c(name="notes-sha256-v1", token=T, algorithm=HMAC_SHA256, signed_url=U, params=P,
      expect_sig="033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=",
      description="V1 inputs signed with HMAC_SHA256 (SharedKey algorithm): same string to sign, SHA-256 HMAC")


def port_cases():
    c = case
    h = "voice.example.com"
    vp = voice()
    c(name="port-https-signed-plain-request-443", token=TK, signed_url=f"https://{h}/voice",
      request_url=f"https://{h}:443/voice", params=vp,
      description="signed without port; request URL has explicit :443; accepted via port removal")
    c(name="port-https-signed-443-request-plain", token=TK, signed_url=f"https://{h}:443/voice",
      request_url=f"https://{h}/voice", params=vp,
      description="signed with :443 (Twilio kept the port); request URL has none; accepted via adding :443")
    c(name="port-http-signed-plain-request-80", token=TK, signed_url=f"http://{h}/voice",
      request_url=f"http://{h}:80/voice", params=vp, description="http: signed without port, request URL with :80")
    c(name="port-http-signed-80-request-plain", token=TK, signed_url=f"http://{h}:80/voice",
      request_url=f"http://{h}/voice", params=vp, description="http: signed with :80, request URL without port")
    c(name="port-https-8443-both", token=TK, signed_url=f"https://{h}:8443/voice", params=vp,
      description="non-default port :8443 in both the signed and request URL")
    c(name="port-https-signed-plain-request-8443", token=TK, signed_url=f"https://{h}/voice",
      request_url=f"https://{h}:8443/voice", params=vp,
      description="HTTPS voice: Twilio drops the port when signing; request URL has :8443; accepted via port removal")
    c(name="port-https-signed-8443-request-plain", token=TK, signed_url=f"https://{h}:8443/voice",
      request_url=f"https://{h}/voice", params=vp, expect=(False, False),
      description="signed with :8443 but request URL has no port: SDKs only add the DEFAULT port (:443) -> rejected")
    c(name="port-https-signed-443-request-8443", token=TK, signed_url=f"https://{h}:443/voice",
      request_url=f"https://{h}:8443/voice", params=vp, expect=(False, False),
      description="signed with :443, request URL has :8443 -> rejected (a port is only removed or defaulted, never swapped)")
    c(name="port-https-signed-8443-request-443", token=TK, signed_url=f"https://{h}:8443/voice",
      request_url=f"https://{h}:443/voice", params=vp, expect=(False, False),
      description="signed with :8443, request URL has :443 -> rejected")
    c(name="port-http-signed-443-request-plain", token=TK, signed_url=f"http://{h}:443/voice",
      request_url=f"http://{h}/voice", params=vp, expect=(False, False),
      description="http signed with :443: the default port for http is 80, so adding a port cannot reach it -> rejected")
    c(name="port-https-signed-80-request-plain", token=TK, signed_url=f"https://{h}:80/voice",
      request_url=f"https://{h}/voice", params=vp, expect=(False, False),
      description="https signed with :80 -> rejected (https default is 443)")
    c(name="port-http-8080-sms-keeps-port", token=TK, signed_url=f"http://{h}:8080/sms",
      params=sms("port test"), description="SMS over http with :8080: Twilio keeps the port; signed and requested with it")
    c(name="port-ipv6-8443-both", token=TK, signed_url="https://[2001:db8::1]:8443/voice", params=vp,
      description="IPv6 literal host with :8443 in both URLs")
    c(name="port-ipv6-signed-plain-request-8443", token=TK, signed_url="https://[2001:db8::1]/voice",
      request_url="https://[2001:db8::1]:8443/voice", params=vp, expect=(False, True),
      description="IPv6 literal host, signed without port, request with :8443: python's remove_port splits the netloc "
                  "on the first ':' and breaks the host, so python rejects; node handles brackets and accepts")
    c(name="port-https-signed-443-request-plain-get", token=TK, kind="get",
      signed_url=with_query(f"https://{h}:443/voice", vp), request_url=with_query(f"https://{h}/voice", vp),
      description="GET webhook signed with :443, request URL without port")
    c(name="port-https-signed-plain-request-8443-query", token=TK,
      signed_url=f"https://{h}/voice?tenant=acme&x=1", request_url=f"https://{h}:8443/voice?tenant=acme&x=1",
      params=vp, description="port removal keeps path and query intact")


def query_cases():
    c = case
    vp = voice()
    c(name="get-voice-basic", token=TK, kind="get", signed_url=with_query(f"{BASE}/voice", vp),
      description="GET voice webhook: params only in the query (urlencoded with +/%2B), params [] and body empty")
    c(name="get-voice-digits", token=TK, kind="get", signed_url=with_query(f"{BASE}/menu", voice(Digits="1#")),
      description="GET with Digits containing # (encoded %23 in the query)")
    c(name="get-sms-plus-space", token=TK, kind="get", signed_url=with_query(f"{BASE}/sms", sms("Hello world, 1+1=2")),
      description="GET SMS; query written with + for space and %2B for a literal plus")
    c(name="get-sms-pct20-space", token=TK, kind="get",
      signed_url=with_query(f"{BASE}/sms", sms("Hello world, 1+1=2"), "pct20"),
      description="same params as get-sms-plus-space but the query uses %20 for space: different bytes, different signature")
    c(name="get-signed-plus-request-pct20", token=TK, kind="get",
      signed_url=with_query(f"{BASE}/sms", sms("Hello world")),
      request_url=with_query(f"{BASE}/sms", sms("Hello world"), "pct20"), expect=(False, False),
      description="signed with + but request query carries %20 -> rejected (query bytes must be used verbatim)")
    c(name="get-signed-pct20-request-plus", token=TK, kind="get",
      signed_url=with_query(f"{BASE}/sms", sms("Hello world"), "pct20"),
      request_url=with_query(f"{BASE}/sms", sms("Hello world")), expect=(False, True),
      description="signed with %20 but request query carries + -> python rejects; node accepts because its "
                  "legacy-querystring fallback re-encodes + as %20")
    c(name="get-existing-query", token=TK, kind="get",
      signed_url=with_query(f"{BASE}/voice?tenant=acme&lang=en-US", vp),
      description="configured URL already has a query; Twilio appends its params after it")
    c(name="get-apostrophe-raw", token=TK, kind="get",
      signed_url=f"{BASE}/voice?" + q(voice(FromState="Trezzo Sull'Adda")).replace("%27", "'"),
      description="raw ' in a query value, signed and requested unescaped (twilio-node#1059/#1183)")
    c(name="get-apostrophe-signed-raw-request-escaped", token=TK, kind="get",
      signed_url=f"{BASE}/voice?" + q(voice(FromState="Sull'Adda")).replace("%27", "'"),
      request_url=f"{BASE}/voice?" + q(voice(FromState="Sull'Adda")), expect=(False, True),
      description="signed with raw ', request query has %27 -> python rejects; node accepts via its legacy-querystring "
                  "fallback (querystring.stringify leaves ' unescaped)")
    c(name="get-apostrophe-space-signed-raw-request-escaped", token=TK, kind="get",
      signed_url=f"{BASE}/voice?" + q(voice(FromState="Trezzo Sull'Adda")).replace("%27", "'"),
      request_url=f"{BASE}/voice?" + q(voice(FromState="Trezzo Sull'Adda")), expect=(False, False),
      description="as get-apostrophe-signed-raw-request-escaped but the value also has a space (+): node's fallback "
                  "re-encodes the space as %20, so node rejects too")
    sip = voice(From="sip:alice@example.com", Caller="sip:alice@example.com")
    c(name="get-sip-at-colon-raw", token=TK, kind="get",
      signed_url=f"{BASE}/voice?" + q(sip).replace("%40", "@").replace("%3A", ":"),
      description="raw @ and : in query values (SIP URIs), signed unescaped (twilio-node PR #621)")
    c(name="get-sip-at-colon-signed-raw-request-escaped", token=TK, kind="get",
      signed_url=f"{BASE}/voice?" + q(sip).replace("%40", "@").replace("%3A", ":"),
      request_url=f"{BASE}/voice?" + q(sip), expect=(False, False),
      description="signed with raw @ and :, request has %40/%3A -> both SDKs reject")
    c(name="get-sip-at-colon-escaped", token=TK, kind="get", signed_url=f"{BASE}/voice?" + q(sip),
      description="@ and : escaped as %40/%3A, signed and requested escaped")
    c(name="get-utf8-query", token=TK, kind="get",
      signed_url=with_query(f"{BASE}/sms", sms("Olá 你好 😀 مرحبا")),
      description="non-ASCII values percent-encoded (UTF-8) in a GET query")
    c(name="get-utf8-query-pct20", token=TK, kind="get",
      signed_url=with_query(f"{BASE}/sms", sms("naïve café — 日本語"), "pct20"),
      description="non-ASCII values percent-encoded with %20 for spaces")
    long_pairs = [(f"Custom{i:02d}", "v" * 70 + f"-{i}") for i in range(50)]
    c(name="get-long-query", token=TK, kind="get", signed_url=with_query(f"{BASE}/voice", vp + long_pairs),
      description="very long GET query (~4.5 KB)")
    c(name="post-long-url-query", token=TK, signed_url=with_query(f"{BASE}/voice", long_pairs), params=vp,
      description="POST to a configured URL with a very long query string (~4 KB) plus form params")
    c(name="post-query-pct20-vs-plus-a", token=TK, signed_url=f"{BASE}/voice?greeting=hello+world", params=vp,
      description="POST; configured URL query uses + for space")
    c(name="post-query-pct20-vs-plus-b", token=TK, signed_url=f"{BASE}/voice?greeting=hello%20world", params=vp,
      description="POST; configured URL query uses %20 for space (different signature from ...-a)")
    c(name="post-query-quote-at-colon", token=TK, signed_url=f"{BASE}/voice?note=it's&sip=sip:bob@example.com",
      params=vp, description="POST; configured URL query contains raw ', @ and :")
    c(name="post-query-empty", token=TK, signed_url=f"{BASE}/voice?", params=vp, expect=(False, True),
      description="configured URL ends with a bare ? (empty query), signed and requested with it. python rejects "
                  "(urlparse().geturl() drops the empty '?'); node accepts (URL used as received)")
    c(name="post-query-empty-request-without", token=TK, signed_url=f"{BASE}/voice?", request_url=f"{BASE}/voice",
      params=vp, expect=(False, False), description="signed over '.../voice?' but request URL has no '?' -> rejected")


def repeated_cases():
    c = case
    c(name="rep-two-values-unsorted", token=TK, signed_url=f"{BASE}/voice",
      params=voice() + [("Digits", "9"), ("Digits", "1")],
      description="repeated name, two different values sent in descending order; signed as Digits1Digits9")
    c(name="rep-identical-values", token=TK, signed_url=f"{BASE}/sms",
      params=sms("hi") + [("MediaUrl0", "https://m.example/a.jpg"), ("MediaUrl0", "https://m.example/a.jpg")],
      description="identical repeated name+value pairs count ONCE (SDKs de-duplicate values)")
    c(name="rep-identical-values-no-dedup-negative", token=TK, signed_url=f"{BASE}/sms",
      params=[("Body", "x"), ("Body", "x")], sign_raw=f"{BASE}/smsBodyxBodyx", expect=(False, False),
      description="NEGATIVE: signature over BodyxBodyx (no de-duplication) is rejected by the SDKs, which sign Bodyx")
    c(name="rep-three-values-mixed", token=TK, signed_url=f"{BASE}/sms",
      params=sms("b") + [("Tag", "zeta"), ("Tag", "Alpha"), ("Tag", "alpha"), ("Tag", "Alpha")],
      description="four values (one duplicate) with case differences; sorted unique: Alpha, alpha, zeta")
    c(name="rep-empty-and-nonempty", token=TK, signed_url=f"{BASE}/voice",
      params=voice() + [("Digits", ""), ("Digits", "5"), ("Digits", "")],
      description="repeated name with empty values: sorted unique values '', '5'")
    c(name="rep-unicode-values", token=TK, signed_url=f"{BASE}/sms",
      params=sms("x") + [("Label", "é"), ("Label", "e"), ("Label", "ü")],
      description="repeated name with accented values, sorted by code point (e < é < ü)")
    c(name="rep-interleaved", token=TK, signed_url=f"{BASE}/voice",
      params=[("A", "2"), ("B", "x"), ("A", "1"), ("C", "y"), ("A", "2")],
      description="repeated name interleaved with other names in the body")
    div = [("CallSid", CALL), ("Label", "\uff01"), ("Label", "\U0001F600")]
    c(name="rep-sort-codepoint-python", token=TK, signed_url=f"{BASE}/voice", params=div, sdk_sign_diverges=True,
      expect=(True, False),
      description="repeated values U+FF01 and U+1F600: python sorts by code point (FF01 first), node by UTF-16 units "
                  "(surrogate D83D first); signature as computed by PYTHON (byte/code-point order)")
    c(name="rep-sort-utf16-node", token=TK, signed_url=f"{BASE}/voice", params=div, sdk_sign_diverges=True,
      sign_sdk="node", expect=(False, True),
      description="same as rep-sort-codepoint-python but signature as computed by NODE (UTF-16 code unit order)")
    c(name="name-sort-codepoint-python", token=TK, signed_url=f"{BASE}/voice",
      params=[("\uff21", "fullwidth"), ("\U0001F600", "emoji"), ("CallSid", CALL)], sdk_sign_diverges=True,
      expect=(True, False),
      description="param NAMES U+FF21 and U+1F600: python sorts by code point, node by UTF-16 units; python's signature")


def unicode_cases():
    c = case
    c(name="utf8-accents", token=TK, signed_url=f"{BASE}/sms", params=sms("Olá! Ça va? Ñandú, Straße, Ærø"),
      description="Latin accents, percent-encoded UTF-8, + for spaces")
    c(name="utf8-cjk-pct20", token=TK, signed_url=f"{BASE}/sms", params=sms("你好，世界。日本語のテキスト 한국어"),
      style="pct20", description="CJK text, %20 for spaces")
    c(name="utf8-emoji", token=TK, signed_url=f"{BASE}/sms", params=sms("😀👍🏽 family 👨‍👩‍👧 flag 🇧🇷"),
      description="emoji incl. skin tone modifier, ZWJ sequence and regional indicators (4-byte UTF-8)")
    c(name="utf8-rtl", token=TK, signed_url=f"{BASE}/sms", params=sms("\u200fمرحبا بالعالم\u200f שלום עולם"),
      description="Arabic and Hebrew with RTL marks")
    c(name="utf8-nfd", token=TK, signed_url=f"{BASE}/sms", params=sms("Cafe\u0301 Jose\u0301"),
      description="decomposed (NFD) accents: must not be Unicode-normalised before signing")
    c(name="utf8-nfc-vs-nfd-negative", token=TK, signed_url=f"{BASE}/sms", params=sms("Cafe\u0301"),
      sign_params=sms("Caf\u00e9"), expect=(False, False),
      description="NEGATIVE: signed over NFC 'Café' but the body carries NFD 'Cafe\\u0301' -> rejected")
    c(name="utf8-lowercase-hex-body", token=TK, signed_url=f"{BASE}/sms", params=sms("été"),
      style=q(sms("été")).replace("%C3%A9", "%c3%a9"),
      description="body percent-encoded with lowercase hex digits (%c3%a9); decodes to the same params")
    c(name="utf8-name-and-value", token=TK, signed_url=f"{BASE}/voice",
      params=voice() + [("Nombre_Niño", "Muñoz"), ("Città", "Forlì")], description="non-ASCII parameter names")
    c(name="utf8-url-path-escaped", token=TK, signed_url=f"{BASE}/voice/Espa%C3%B1a?a%C3%B1o=2023", params=voice(),
      description="percent-encoded UTF-8 in the path and query, signed verbatim")
    c(name="utf8-subaccount-sms", token=TSUB, signed_url=f"{BASE}/sms",
      params=sms("Grüße aus München 🍺", AccountSid=SUBACC),
      description="subaccount request: AccountSid is the subaccount and the key is the SUBACCOUNT's token")


def json_cases():
    c = case
    jb = json.dumps({"CallSid": CALL, "AccountSid": ACC, "From": "+14155550100", "To": "+14155550199",
                     "CallStatus": "ringing"}, separators=(",", ":"))
    c(name="json-voice", token=TK, kind="json", signed_url=f"{BASE}/voice?bodySHA256={{H}}", body=jb,
      description="JSON voice request: only the URL (with bodySHA256) is signed")
    ju = json.dumps({"Body": "Olá 😀 你好", "From": "+14155550100"}, ensure_ascii=False)
    c(name="json-unicode-raw", token=TK, kind="json", signed_url=f"{BASE}/voice?bodySHA256={{H}}", body=ju,
      description="JSON with raw UTF-8 text: the hash is over the UTF-8 bytes")
    je = json.dumps({"Body": "Olá 😀 你好", "From": "+14155550100"}, ensure_ascii=True)
    c(name="json-unicode-escaped", token=TK, kind="json", signed_url=f"{BASE}/voice?bodySHA256={{H}}", body=je,
      description="same JSON value with \\u escapes: different bytes, different hash (never re-serialise)")
    c(name="json-with-other-query", token=TK, kind="json", signed_url=f"{BASE}/voice?tenant=acme&bodySHA256={{H}}&x=1",
      body=jb, description="bodySHA256 in the middle of other query params")
    c(name="json-signed-443-request-plain", token=TK, kind="json",
      signed_url="https://voice.example.com:443/voice?bodySHA256={H}",
      request_url="https://voice.example.com/voice?bodySHA256={H}", body=jb,
      description="JSON; signed with :443, request URL without port")
    c(name="json-empty-body", token=TK, kind="json", signed_url=f"{BASE}/voice?bodySHA256={{H}}", body="",
      description="empty body; bodySHA256 is the SHA-256 of the empty string")
    c(name="json-tampered-body", token=TK, kind="json", signed_url=f"{BASE}/voice?bodySHA256={{H}}", body=jb,
      send_body=jb.replace("ringing", "in-progress"), expect=(False, False),
      description="NEGATIVE: URL signature is genuine but the body was altered after hashing -> body hash mismatch")
    c(name="json-reserialised-body", token=TK, kind="json", signed_url=f"{BASE}/voice?bodySHA256={{H}}", body=jb,
      send_body=json.dumps(json.loads(jb), indent=1), expect=(False, False),
      description="NEGATIVE: same JSON value, re-serialised with whitespace -> raw bytes differ -> rejected")
    c(name="json-no-bodysha256", token=TK, kind="json", signed_url=f"{BASE}/voice", body=jb, expect=(False, False),
      description="NEGATIVE: JSON body without bodySHA256; signature over the URL alone is genuine but the body is "
                  "unauthenticated -> must be rejected")
    c(name="json-no-bodysha256-empty-body", token=TK, kind="json", signed_url=f"{BASE}/voice", body="",
      expect=(True, False),
      description="JSON request with an EMPTY body and no bodySHA256: python accepts (an empty str body is treated as "
                  "no params), node rejects (validateBody compares against an empty hash). A server should reject")
    c(name="json-uppercase-hash", token=TK, kind="json", signed_url=f"{BASE}/voice?bodySHA256={{HU}}", body=jb,
      expect=(False, False),
      description="bodySHA256 written in UPPERCASE hex (URL signed with it): both SDKs compare the hex string "
                  "case-sensitively and reject")
    c(name="json-sha256-shared-key", token=SK, kind="json", algorithm=HMAC_SHA256,
      signed_url=f"{BASE}/voice?bodySHA256={{H}}", body=jb, description="JSON + SharedKey HMAC_SHA256")


def sha256_cases():
    c = case
    c(name="sha256-voice", token=SK, algorithm=HMAC_SHA256, signed_url=f"{BASE}/voice", params=voice(),
      description="SharedKey (X-Twilio-Webhooks-Signature-Settings: key=...,algorithm=HMAC_SHA256) voice POST")
    c(name="sha256-sms-unicode", token=SK, algorithm=HMAC_SHA256, signed_url=f"{BASE}/sms",
      params=sms("Grüße 😀 你好 + & = %"), description="SharedKey HMAC_SHA256, unicode and reserved characters")
    c(name="sha256-get", token=SK, algorithm=HMAC_SHA256, kind="get",
      signed_url=with_query(f"{BASE}/voice", voice()), description="SharedKey HMAC_SHA256 GET webhook")
    c(name="sha256-repeated", token=SK, algorithm=HMAC_SHA256, signed_url=f"{BASE}/voice",
      params=voice() + [("Digits", "2"), ("Digits", "1"), ("Digits", "2")],
      description="SharedKey HMAC_SHA256 with repeated values (sorted, de-duplicated)")
    c(name="sha256-signed-443-request-plain", token=SK, algorithm=HMAC_SHA256,
      signed_url="https://voice.example.com:443/voice", request_url=f"{BASE}/voice", params=voice(),
      description="SharedKey HMAC_SHA256; port variants apply as for SHA1")
    c(name="sha256-signed-plain-request-8443", token=SK, algorithm=HMAC_SHA256, signed_url=f"{BASE}/sms",
      request_url="https://voice.example.com:8443/sms", params=sms("hi"),
      description="SharedKey HMAC_SHA256; request URL :8443, signed without port")
    c(name="sha256-fallback", token=SK, algorithm=HMAC_SHA256, signed_url="https://fallback.example.net/anything",
      params=voice(ErrorCode="11205", ErrorUrl=f"{BASE}/voice"), description="SharedKey HMAC_SHA256 fallback request")
    c(name="sha256-wrong-secret", token=SK, algorithm=HMAC_SHA256, signed_url=f"{BASE}/voice", params=voice(),
      sign_token=SK + "x", expect=(False, None), description="NEGATIVE: HMAC_SHA256 with another secret")
    c(name="sha256-tampered-param", token=SK, algorithm=HMAC_SHA256, signed_url=f"{BASE}/voice",
      params=voice(To="+14155550666"), sign_params=voice(), expect=(False, None),
      description="NEGATIVE: HMAC_SHA256; To changed after signing")
    c(name="sha256-sig-checked-as-sha1", token=SK, algorithm=HMAC_SHA1, sign_algorithm=HMAC_SHA256,
      signed_url=f"{BASE}/voice", params=voice(), expect=(False, False),
      description="NEGATIVE: signature is HMAC_SHA256 (44 chars) but validated as HMAC_SHA1 (header says SHA1 or is absent)")
    c(name="sha1-sig-checked-as-sha256", token=SK, algorithm=HMAC_SHA256, sign_algorithm=HMAC_SHA1,
      signed_url=f"{BASE}/voice", params=voice(), expect=(False, None),
      description="NEGATIVE: signature is HMAC_SHA1 (28 chars) but the settings header says HMAC_SHA256")
    c(name="sha1-shared-key", token=SK, algorithm=HMAC_SHA1, signed_url=f"{BASE}/voice", params=voice(),
      description="SharedKey secret with algorithm=HMAC_SHA1 (header key=...,algorithm=HMAC_SHA1): plain SHA1 HMAC "
                  "keyed by the shared secret")


def awkward_cases():
    c = case
    c(name="awk-empty-values", token=TK, signed_url=f"{BASE}/voice",
      params=voice(Digits="", CallerName="", ForwardedFrom=""), description="several empty values")
    c(name="awk-empty-body-sms", token=TK, signed_url=f"{BASE}/sms", params=sms(""),
      description="SMS with an empty Body")
    c(name="awk-literal-plus", token=TK, signed_url=f"{BASE}/sms", params=sms("1+1=2 a+b"),
      description="literal + in a value: %2B in the body; must NOT decode to a space")
    c(name="awk-plus-as-space", token=TK, signed_url=f"{BASE}/sms", params=sms("a b  c"),
      description="spaces encoded as + in the body decode to spaces (two consecutive spaces kept)")
    c(name="awk-pct2B-text", token=TK, signed_url=f"{BASE}/sms", params=sms("%2B is a plus, %20 is a space"),
      description="the literal text %2B in a value is sent as %252B and must be decoded exactly once")
    c(name="awk-plus-only", token=TK, signed_url=f"{BASE}/sms", params=sms("+"), style="pct20",
      description="value that is a single +, %20 style body")
    c(name="awk-space-only", token=TK, signed_url=f"{BASE}/sms", params=sms(" "), description="value that is a single space")
    c(name="awk-mixed-space-encodings", token=TK, signed_url=f"{BASE}/sms", params=sms("a b c"),
      style=q(sms("a b c")).replace("a+b+c", "a+b%20c"),
      description="one body mixing + and %20 for spaces; both decode to a space")
    c(name="awk-unescaped-safe-chars", token=TK, signed_url=f"{BASE}/sms", params=sms("(it's) *ok*!~"),
      style=q(sms("x")).replace("Body=x", "Body=(it's)+*ok*!~"),
      description="body with characters a client may leave unescaped: ( ) ' * ! ~")
    body1600 = ("Ünïcödé 😀 " + "0123456789 abcdefghijklmnopqrstuvwxyz & < > \" ' = + % ") * 40
    body1600 = body1600[:1600]
    c(name="awk-long-body-1600", token=TK, signed_url=f"{BASE}/sms", params=sms(body1600),
      description="1600-character Body (the SMS maximum) with unicode and reserved characters")
    c(name="awk-case-names", token=TK, signed_url=f"{BASE}/voice",
      params=[("CallSid", CALL), ("callSid", "lower"), ("CALLSID", "upper"), ("From", "+14155550100")],
      description="CallSid / callSid / CALLSID are three different params; byte order CALLSID < CallSid < callSid")
    c(name="awk-trailing-slash-both", token=TK, signed_url=f"{BASE}/voice/", params=voice(),
      description="configured URL ends with /; request URL too")
    c(name="awk-trailing-slash-signed-without", token=TK, signed_url=f"{BASE}/voice", request_url=f"{BASE}/voice/",
      params=voice(), expect=(False, False), description="signed /voice, request /voice/ -> rejected")
    c(name="awk-trailing-slash-signed-with", token=TK, signed_url=f"{BASE}/voice/", request_url=f"{BASE}/voice",
      params=voice(), expect=(False, False), description="signed /voice/, request /voice -> rejected")
    c(name="awk-uppercase-host", token=TK, signed_url="https://Voice.Example.COM/voice", params=voice(),
      description="uppercase host as configured, request uses the same case")
    c(name="awk-uppercase-host-signed-request-lower", token=TK, signed_url="https://Voice.Example.COM/voice",
      request_url=f"{BASE}/voice", params=voice(), expect=(False, False),
      description="signed with uppercase host, request URL lowercase -> rejected (host case is signed)")
    c(name="awk-lower-host-signed-request-upper", token=TK, signed_url=f"{BASE}/voice",
      request_url="https://Voice.Example.COM/voice", params=voice(), expect=(False, True),
      description="signed lowercase host, request URL uppercase host -> python rejects; node accepts because its "
                  "new URL() fallback lowercases the host")
    c(name="awk-double-slash", token=TK, signed_url=f"{BASE}//voice", params=voice(),
      description="double slash in the path, kept verbatim")
    c(name="awk-double-slash-request-single", token=TK, signed_url=f"{BASE}//voice", request_url=f"{BASE}/voice",
      params=voice(), expect=(False, False), description="signed //voice, request /voice -> rejected (no path normalisation)")
    c(name="awk-quote-at-colon-values", token=TK, signed_url=f"{BASE}/voice",
      params=voice(From="sip:o'brien@example.com:5060", CallerName="O'Brien, \"Pat\""),
      description="', \", @ and : inside form values")
    c(name="awk-eq-amp-in-values", token=TK, signed_url=f"{BASE}/voice",
      params=voice(ErrorUrl="https://x.example/y?a=1&b=2", Note="k=v&k2=v2;x"),
      description="= & ; inside values (percent-encoded in the body)")
    c(name="awk-eq-amp-in-values-pct20", token=TK, signed_url=f"{BASE}/voice",
      params=voice(ErrorUrl="https://x.example/y?a=1&b=2 3", Note="k=v & k2=v2"), style="pct20",
      description="= & inside values, %20 style body")
    c(name="awk-percent-literal", token=TK, signed_url=f"{BASE}/sms", params=sms("100% sure, %zz %4"),
      description="literal % signs (incl. ones that look like broken escapes), sent as %25")
    c(name="awk-whitespace-untrimmed", token=TK, signed_url=f"{BASE}/sms", params=sms("  padded\t\r\n  "),
      description="leading/trailing spaces, tab and CRLF must be kept (never trim)")
    c(name="awk-control-chars", token=TK, signed_url=f"{BASE}/sms", params=sms("a\x01b\x0bc\x1fd\x7f"),
      description="ASCII control characters inside a value (\\x01 \\x0b \\x1f \\x7f)")
    c(name="awk-markup-in-value", token=TK, signed_url=f"{BASE}/sms",
      params=sms("</Message><Redirect>http://evil.example/</Redirect><Message>"),
      description="markup in a value is just data for signing (the server must XML-escape it in TwiML)")
    c(name="awk-json-looking-param", token=TK, signed_url=f"{BASE}/sms",
      params=sms("hi", AddOns='{"status":"successful","results":{}}'),
      description="a JSON-valued form param (AddOns) is an ordinary string")
    c(name="awk-dotted-bracket-names", token=TK, signed_url=f"{BASE}/voice",
      params=voice() + [("Media.Url[0]", "a"), ("Dest[]", "+1202"), ("Dest[]", "+1703")],
      description="names with dots and brackets; Dest[] repeated")
    c(name="awk-name-with-space-and-plus", token=TK, signed_url=f"{BASE}/voice",
      params=voice() + [("Custom Field", "x"), ("a+b", "y")],
      description="names containing a space (sent as +) and a literal plus (sent as %2B)")
    c(name="awk-many-params", token=TK, signed_url=f"{BASE}/voice",
      params=voice() + [(f"P{i:03d}", str(i)) for i in range(120, 0, -1)],
      description="130 params sent in reverse order")
    c(name="awk-fallback-sms", token=TK, signed_url="https://fallback.example.net/sms",
      params=sms("help", ErrorCode="11200", ErrorUrl="https://voice.example.com/sms"),
      description="SMS fallback request with ErrorCode and ErrorUrl")
    c(name="awk-fallback-unknown-path", token=TK, signed_url="https://fallback.example.net/some/unknown?x=1",
      params=voice(ErrorCode="11205", ErrorUrl="https://voice.example.com/menu?step=2"),
      description="voice fallback to an arbitrary path with a query")
    c(name="awk-secondary-token", token=TK2, signed_url=f"{BASE}/voice", params=voice(),
      description="request signed with the secondary (rotated-in) token; validated with that token")


def negative_cases():
    c = case
    vp = voice()
    c(name="neg-flipped-char", token=T, signed_url=U, params=P, mutate=flip, expect=(False, False),
      description="NEGATIVE: V1 with one base64 character of the signature changed")
    c(name="neg-flipped-last-char", token=T, signed_url=U, params=P, mutate=lambda s: s[:-2] + "9=",
      expect=(False, False), description="NEGATIVE: V1 with the last significant base64 character changed")
    c(name="neg-wrong-token", token=T, sign_token="54321", signed_url=U, params=P, expect=(False, False),
      description="NEGATIVE: signed with token 54321, validated with 12345")
    c(name="neg-token-case", token=TK, sign_token=TK.upper(), signed_url=f"{BASE}/voice", params=vp,
      expect=(False, False), description="NEGATIVE: signed with the token upper-cased (token case matters)")
    c(name="neg-subaccount-vs-parent", token=TK, sign_token=TSUB, signed_url=f"{BASE}/voice",
      params=voice(AccountSid=SUBACC), expect=(False, False),
      description="NEGATIVE: subaccount request signed with the subaccount token, validated with the parent's")
    c(name="neg-truncated", token=T, signed_url=U, params=P, mutate=lambda s: s[:-1], expect=(False, False),
      description="NEGATIVE: signature missing its last character")
    c(name="neg-empty-signature", token=T, signed_url=U, params=P, signature="", expect=(False, False),
      description="NEGATIVE: empty X-Twilio-Signature")
    c(name="neg-base64url-alphabet", token=T, signed_url=U, params=P,
      mutate=lambda s: s.replace("+", "-").replace("/", "_"), expect=(False, False),
      description="NEGATIVE: V1 signature re-written in the base64url alphabet (- _ instead of + /)")
    c(name="neg-lowercased-sig", token=T, signed_url=U, params=P, mutate=str.lower, expect=(False, False),
      description="NEGATIVE: V1 signature lower-cased")
    c(name="neg-value-changed", token=TK, signed_url=f"{BASE}/voice", params=voice(To="+14155550666"),
      sign_params=vp, expect=(False, False), description="NEGATIVE: To changed after signing")
    c(name="neg-param-added", token=TK, signed_url=f"{BASE}/voice", params=vp + [("Digits", "9")], sign_params=vp,
      expect=(False, False), description="NEGATIVE: a param added after signing")
    c(name="neg-param-removed", token=TK, signed_url=f"{BASE}/voice", params=vp[:-1], sign_params=vp,
      expect=(False, False), description="NEGATIVE: a param removed after signing")
    c(name="neg-empty-param-dropped", token=TK, signed_url=f"{BASE}/voice", params=vp,
      sign_params=vp + [("Digits", "")], expect=(False, False),
      description="NEGATIVE: signed with an empty Digits param that the receiver dropped (empty params count)")
    c(name="neg-value-trimmed", token=TK, signed_url=f"{BASE}/sms", params=sms("hello"), sign_params=sms("hello "),
      expect=(False, False), description="NEGATIVE: signed over 'hello ' but receiver saw trimmed 'hello'")
    c(name="neg-path-changed", token=TK, signed_url=f"{BASE}/voice", request_url=f"{BASE}/sms", params=vp,
      expect=(False, False), description="NEGATIVE: signed for /voice, replayed to /sms")
    c(name="neg-query-changed", token=TK, signed_url=f"{BASE}/voice?tenant=acme", request_url=f"{BASE}/voice?tenant=evil",
      params=vp, expect=(False, False), description="NEGATIVE: query value changed")
    c(name="neg-scheme-changed", token=TK, signed_url=f"{BASE}/voice", request_url="http://voice.example.com/voice",
      params=vp, expect=(False, False), description="NEGATIVE: signed https, validated as http (TLS-terminating proxy pitfall)")
    c(name="neg-host-changed", token=TK, signed_url=f"{BASE}/voice", request_url="https://internal.local/voice",
      params=vp, expect=(False, False), description="NEGATIVE: validated against an internal host name")
    c(name="neg-get-sig-on-post", token=TK, signed_url=f"{BASE}/voice", params=vp, sign_params=[],
      expect=(False, False), description="NEGATIVE: signature over the bare URL (as for GET) used for a POST with params")
    c(name="neg-fallback-missing-errorcode", token=TK, signed_url="https://fallback.example.net/voice",
      params=vp, sign_params=voice(ErrorCode="11205", ErrorUrl=f"{BASE}/voice"), expect=(False, False),
      description="NEGATIVE: fallback signature covers ErrorCode/ErrorUrl that were stripped from the body")


def build_cases():
    sdk_cases()
    port_cases()
    query_cases()
    repeated_cases()
    unicode_cases()
    json_cases()
    sha256_cases()
    awkward_cases()
    negative_cases()
    names = [c["name"] for c in CASES]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SystemExit(f"duplicate vector names: {sorted(dup)}")
    return CASES


# ---------------------------------------------------------------------------
class MultiParams(dict):
    """name -> [values], with the getall() accessor twilio-python uses for MultiDicts."""

    @classmethod
    def from_pairs(cls, pairs):
        m = cls()
        for k, v in pairs:
            m.setdefault(k, []).append(v)
        return m

    def getall(self, name):
        return list(self[name])


def node_params(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            if not isinstance(out[k], list):
                out[k] = [out[k]]
            out[k].append(v)
        else:
            out[k] = v
    return out


def run_node(node, ops):
    proc = subprocess.run([node, os.path.join(HERE, "generate.mjs")], input=json.dumps(ops).encode("utf-8"),
                          stdout=subprocess.PIPE, check=True, cwd=HERE)
    res = json.loads(proc.stdout.decode("utf-8"))
    assert len(res) == len(ops)
    return res


def py_validate(token, url, payload, sig, algorithm):
    try:
        return bool(RequestValidator(token).validate(url, payload, sig, algorithm=algorithm)), None
    except Exception as e:  # record, don't hide: e.g. str body without bodySHA256
        return False, f"{type(e).__name__}: {e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--node", default=os.environ.get("NODE", "node"))
    args = ap.parse_args()

    cases = build_cases()
    errors = []

    # Pass 1: python signatures, body hashes, URLs; queue node signing/hash ops.
    prepared = []
    node_ops = [{"op": "version"}]
    for cs in cases:
        kind = cs.get("kind", "form")
        alg = cs.get("algorithm", HMAC_SHA1)
        sign_alg = cs.get("sign_algorithm", alg)
        token = cs["token"]
        sign_token = cs.get("sign_token", token)
        v = RequestValidator(token)
        p = dict(cs, kind=kind, alg=alg, sign_alg=sign_alg, sign_token=sign_token)
        if kind == "json":
            hashed_body = cs["body"]
            h = v.compute_hash(hashed_body)
            p["hash"] = h
            node_ops.append({"op": "hash", "body": hashed_body})
            p["hash_op"] = len(node_ops) - 1
            fill = lambda s: s.replace("{HU}", h.upper()).replace("{H}", h)  # noqa: E731
            p["signed_url"] = fill(cs["signed_url"])
            p["request_url"] = fill(cs.get("request_url", cs["signed_url"]))
            p["wire_body"] = cs.get("send_body", cs["body"])
            p["params"] = []
            sign_pairs = []
        elif kind == "get":
            p["request_url"] = cs.get("request_url", cs["signed_url"])
            p["wire_body"] = ""
            p["params"] = []
            sign_pairs = []
        else:
            p["request_url"] = cs.get("request_url", cs["signed_url"])
            pairs = list(cs["params"])
            style = cs.get("style", "plus")
            body = q(pairs, style) if style in ("plus", "pct20") else style
            if parse_qsl(body, keep_blank_values=True) != pairs:
                errors.append(f"{cs['name']}: body does not decode to params: {body!r}")
            p["wire_body"] = body
            p["params"] = pairs
            sign_pairs = list(cs.get("sign_params", pairs))
        if "sign_raw" in cs:
            sign_url, sign_pairs = cs["sign_raw"], []
        else:
            sign_url = p["signed_url"]
        p["py_sig"] = RequestValidator(sign_token).compute_signature(
            sign_url, MultiParams.from_pairs(sign_pairs), algorithm=sign_alg)
        if sign_alg == HMAC_SHA1:
            node_ops.append({"op": "sign", "token": sign_token, "url": sign_url, "params": node_params(sign_pairs)})
            p["sign_op"] = len(node_ops) - 1
        prepared.append(p)

    res1 = run_node(args.node, node_ops)
    node_version = res1[0]["version"]

    # Pass 2: pick signatures, cross-check SDKs, queue node validations.
    val_ops = []
    for p in prepared:
        name = p["name"]
        if "hash_op" in p and res1[p["hash_op"]]["hash"] != p["hash"]:
            errors.append(f"{name}: body hash differs between SDKs")
        node_sig = res1[p["sign_op"]]["signature"] if "sign_op" in p else None
        if node_sig is not None:
            diverges = node_sig != p["py_sig"]
            if diverges != bool(p.get("sdk_sign_diverges")):
                errors.append(f"{name}: python/node signature divergence={diverges} (python {p['py_sig']}, node {node_sig})")
        sig = node_sig if p.get("sign_sdk") == "node" else p["py_sig"]
        if "expect_sig" in p and sig != p["expect_sig"]:
            errors.append(f"{name}: SDK signature {sig} != expected {p['expect_sig']}")
        if "mutate" in p:
            sig = p["mutate"](sig)
        if "signature" in p:
            sig = p["signature"]
        p["sig"] = sig
        if p["alg"] == HMAC_SHA1:
            if p["kind"] == "json":
                val_ops.append({"op": "validate", "kind": "body", "token": p["token"], "signature": sig,
                                "url": p["request_url"], "body": p["wire_body"]})
            else:
                received = parse_qsl(p["wire_body"], keep_blank_values=True)
                val_ops.append({"op": "validate", "kind": "params", "token": p["token"], "signature": sig,
                                "url": p["request_url"], "params": node_params(received)})
            p["val_op"] = len(val_ops) - 1
    res2 = run_node(args.node, val_ops) if val_ops else []

    vectors = []
    for p in prepared:
        name = p["name"]
        if p["kind"] == "json":
            payload = p["wire_body"]
        elif p["kind"] == "get":
            payload = {}
        else:
            payload = MultiParams.from_pairs(parse_qsl(p["wire_body"], keep_blank_values=True))
        py_ok, py_err = py_validate(p["token"], p["request_url"], payload, p["sig"], p["alg"])
        if "val_op" in p:
            node_ok, node_err = res2[p["val_op"]]["valid"], res2[p["val_op"]]["error"]
        else:
            node_ok, node_err = None, None
        expect = p.get("expect", (True, True if p["alg"] == HMAC_SHA1 else None))
        if (py_ok, node_ok) != tuple(expect):
            errors.append(f"{name}: verdicts python={py_ok} node={node_ok}, expected {expect}"
                          f" (errors: {py_err} / {node_err})")
        desc = p["description"]
        if py_err:
            desc += f" [python validate raised {py_err}]"
        if node_err:
            desc += f" [node validator threw {node_err}]"
        vectors.append({
            "name": name,
            "description": desc,
            "token": p["token"],
            "algorithm": p["alg"],
            "method": "GET" if p["kind"] == "get" else "POST",
            "signed_url": p["signed_url"],
            "request_url": p["request_url"],
            "content_type": {"form": FORM, "json": JSON_CT, "get": None}[p["kind"]],
            "params": [[k, v] for k, v in p["params"]],
            "body": p["wire_body"],
            "signature": p["sig"],
            "valid": {"python": py_ok, "node": node_ok},
        })

    if errors:
        for e in errors:
            print("generate.py: " + e, file=sys.stderr)
        raise SystemExit(f"generate.py: {len(errors)} problem(s); nothing written")

    doc = {"sdk_versions": {"python": twilio.__version__, "node": node_version}, "vectors": vectors}
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"generate.py: wrote {len(vectors)} vectors to {os.path.relpath(args.out)}"
          f" (twilio-python {twilio.__version__}, twilio-node {node_version})")


if __name__ == "__main__":
    main()
