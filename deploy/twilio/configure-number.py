#!/usr/bin/env python3
"""Point a Twilio phone number at twiml-failover: primary URLs, fallback URLs, status callback.

Sets, through Twilio's REST API (POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json):

    VoiceUrl            = PRIMARY/voice#<overrides>   VoiceMethod         = POST
    VoiceFallbackUrl    = FALLBACK/voice              VoiceFallbackMethod = POST
    SmsUrl              = PRIMARY/sms#<overrides>     SmsMethod           = POST
    SmsFallbackUrl      = FALLBACK/sms                SmsFallbackMethod   = POST
    StatusCallback      = PRIMARY/status              StatusCallbackMethod = POST

The connection overrides (a URL #fragment Twilio reads and does not sign) go on the primary URLs only:
they make Twilio give up on a dead primary quickly, so that the fallback still answers inside the
15 s Twilio allows a call request. The fallback URLs keep Twilio's defaults: nothing comes after
them, so they should get every chance.

Credentials come from the environment, never from flags:
    TWILIO_API_KEY + TWILIO_API_SECRET   (preferred: an API key you can revoke), or
    TWILIO_AUTH_TOKEN                    (with the account SID).
The account SID comes from --account-sid or TWILIO_ACCOUNT_SID.

Exit status: 0 done, 2 nothing changed or not sure (bad arguments, missing credentials, an API or
network error). Python 3.8+ standard library only.
"""

import argparse
import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

# Worst case, Twilio spends tt = 6 s on the primary before it calls the fallback, which leaves at
# least 9 s of the 15 s call budget for the fallback:
#   ct=1000  TCP connect within 1 s (a healthy connect takes well under 300 ms even between continents)
#   rc=1     one more attempt...
#   rp=ct    ...only when connecting (or the TLS handshake) failed: a new connection may reach another
#            ingress node; a slow answer is not retried
#   rt=4000  first answer byte within 4 s (the server answers in milliseconds; 4 s survives a lost packet)
#   tt=6000  all attempts together stop after 6 s
DEFAULT_OVERRIDES = "#ct=1000&rt=4000&tt=6000&rc=1&rp=ct"

# Documented ranges ("Webhooks: connection overrides").
NUMERIC_OVERRIDES = {"ct": (100, 10000), "rt": (100, 15000), "tt": (100, 15000), "rc": (0, 5)}
RETRY_POLICIES = {"4xx", "5xx", "ct", "rt", "all"}
OTHER_OVERRIDES = {"rp", "e", "sni"}

ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
NUMBER_SID = re.compile(r"^PN[0-9a-fA-F]{32}$")
PHONE_NUMBER = re.compile(r"^\+[1-9][0-9]{1,14}$")
BASE_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?$")

EXIT_FAILED = 2


class Failure(Exception):
    """Something went wrong; the message says what and what to do."""


def parse_overrides(text):
    """Validates a connection-override fragment; returns it with its leading '#', or '' for none."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return ""
    body = text[1:] if text.startswith("#") else text
    seen = set()
    for pair in body.split("&"):
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise Failure(f"--overrides: {pair!r} is not key=value")
        if key in seen:
            raise Failure(f"--overrides: {key} appears twice")
        seen.add(key)
        if key in NUMERIC_OVERRIDES:
            low, high = NUMERIC_OVERRIDES[key]
            if not value.isdigit() or not low <= int(value) <= high:
                raise Failure(f"--overrides: {key} must be a whole number from {low} to {high}, not {value!r}")
        elif key == "rp":
            bad = [p for p in value.split(",") if p not in RETRY_POLICIES]
            if bad:
                raise Failure(f"--overrides: rp accepts {', '.join(sorted(RETRY_POLICIES))}, not {bad[0]!r}")
        elif key == "sni":
            if value not in ("y", "n"):
                raise Failure("--overrides: sni is y or n")
        elif key not in OTHER_OVERRIDES:
            known = ", ".join(sorted(set(NUMERIC_OVERRIDES) | OTHER_OVERRIDES))
            raise Failure(f"--overrides: unknown key {key!r} (known: {known})")
    return "#" + body


def parse_base(flag, text):
    """Validates an https base URL (host and optional path prefix); drops a trailing slash."""
    if "#" in text or "?" in text:
        raise Failure(f"{flag}: no ?query or #fragment in the base (overrides go in --overrides)")
    if not BASE_URL.match(text):
        raise Failure(f"{flag}: expected https://host[/prefix], got {text!r}")
    return text.rstrip("/")


def parse_path(flag, text):
    if not re.match(r"^/[A-Za-z0-9._~/-]+$", text):
        raise Failure(f"{flag}: expected a path like /voice, got {text!r}")
    return text


def build_fields(args):
    """The form fields of the update, in the order they are sent."""
    overrides = args.overrides
    fields = [
        ("VoiceUrl", args.primary_base + args.voice_path + overrides),
        ("VoiceMethod", "POST"),
        ("VoiceFallbackUrl", args.fallback_base + args.voice_path),
        ("VoiceFallbackMethod", "POST"),
        ("SmsUrl", args.primary_base + args.sms_path + overrides),
        ("SmsMethod", "POST"),
        ("SmsFallbackUrl", args.fallback_base + args.sms_path),
        ("SmsFallbackMethod", "POST"),
    ]
    if not args.no_status_callback:
        fields += [
            ("StatusCallback", args.status_base + args.status_path),
            ("StatusCallbackMethod", "POST"),
        ]
    return fields


class Credentials:
    def __init__(self, username, password, kind):
        self.username = username
        self.password = password
        self.kind = kind

    def header(self):
        raw = f"{self.username}:{self.password}".encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def redacted(self):
        return f"Basic <redacted: {self.username} + {self.kind}>"


def credentials_from_env(account_sid, env, required):
    key, secret = env.get("TWILIO_API_KEY", ""), env.get("TWILIO_API_SECRET", "")
    token = env.get("TWILIO_AUTH_TOKEN", "")
    if key or secret:
        if not (key and secret):
            raise Failure("set both TWILIO_API_KEY and TWILIO_API_SECRET, or neither")
        return Credentials(key, secret, "API key secret")
    if token:
        return Credentials(account_sid, token, "auth token")
    if required:
        raise Failure(
            "no credentials: set TWILIO_API_KEY and TWILIO_API_SECRET, or TWILIO_AUTH_TOKEN, in the environment"
        )
    return None


def api_call(method, url, credentials, fields=None, timeout=15.0):
    """Sends one request; returns the decoded JSON answer or raises Failure with a clear message."""
    data = None
    headers = {
        "Accept": "application/json",
        "User-Agent": "twiml-failover-configure-number/1",
        "Authorization": credentials.header(),
    }
    if fields is not None:
        data = urllib.parse.urlencode(fields).encode("ascii")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        raise Failure(describe_http_error(method, url, e.code, e.read(), credentials)) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Failure(f"{method} {url}: cannot reach the API: {reason}") from None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Failure(f"{method} {url}: the answer is not JSON") from None


def describe_http_error(method, url, status, body, credentials):
    detail = ""
    try:
        answer = json.loads(body.decode("utf-8"))
        if isinstance(answer, dict) and answer.get("message"):
            detail = f" (Twilio code {answer.get('code')}: {answer['message']}"
            detail += f"; {answer['more_info']})" if answer.get("more_info") else ")"
    except (UnicodeDecodeError, ValueError):
        pass
    head = f"{method} {url}: HTTP {status}{detail}"
    if status == 401:
        return (
            f"{head}\nTwilio rejected the credentials ({credentials.kind} for {credentials.username}). "
            "Check TWILIO_API_KEY/TWILIO_API_SECRET or TWILIO_AUTH_TOKEN, and that they belong to --account-sid."
        )
    if status == 403:
        return f"{head}\nThese credentials may not change this number (a restricted API key, or another account's number)."
    if status == 404:
        return f"{head}\nNo such phone number in this account: check --number-sid / --phone-number and --account-sid."
    if status == 400:
        return f"{head}\nTwilio refused a value; nothing was changed."
    return f"{head}\nNothing was changed (or the change is uncertain: check the number in the Console)."


def lookup_url(args):
    query = urllib.parse.urlencode({"PhoneNumber": args.phone_number})
    return f"{args.api_base}/2010-04-01/Accounts/{args.account_sid}/IncomingPhoneNumbers.json?{query}"


def update_url(args, number_sid):
    return f"{args.api_base}/2010-04-01/Accounts/{args.account_sid}/IncomingPhoneNumbers/{number_sid}.json"


def find_number_sid(args, credentials):
    answer = api_call("GET", lookup_url(args), credentials, timeout=args.timeout)
    numbers = answer.get("incoming_phone_numbers") if isinstance(answer, dict) else None
    if not isinstance(numbers, list):
        raise Failure("the phone-number lookup answer has no incoming_phone_numbers list")
    matches = [n for n in numbers if isinstance(n, dict) and n.get("phone_number") == args.phone_number]
    if not matches:
        raise Failure(f"no number {args.phone_number} in account {args.account_sid}")
    if len(matches) > 1:
        sids = ", ".join(str(n.get("sid")) for n in matches)
        raise Failure(f"{args.phone_number} matches several numbers ({sids}); pass --number-sid")
    sid = matches[0].get("sid", "")
    if not NUMBER_SID.match(str(sid)):
        raise Failure(f"the lookup returned an unexpected sid {sid!r}")
    return sid


def print_dry_run(args, fields, credentials, out):
    auth = credentials.redacted() if credentials else "<set TWILIO_API_KEY/TWILIO_API_SECRET or TWILIO_AUTH_TOKEN>"
    print("DRY RUN: nothing is sent.", file=out)
    if args.phone_number:
        print("", file=out)
        print(f"GET {lookup_url(args)}", file=out)
        print(f"Authorization: {auth}", file=out)
        print(f"  (finds the PhoneNumberSid of {args.phone_number})", file=out)
    sid = args.number_sid or "{PhoneNumberSid}"
    print("", file=out)
    print(f"POST {update_url(args, sid)}", file=out)
    print(f"Authorization: {auth}", file=out)
    print("Content-Type: application/x-www-form-urlencoded", file=out)
    print("", file=out)
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"  {name.ljust(width)} = {value}", file=out)
    print("", file=out)
    print("Body:", file=out)
    print(urllib.parse.urlencode(fields), file=out)


# Fields in the answer that make Twilio ignore the URLs we set.
OVERRIDING_FIELDS = {
    "voice_application_sid": "a TwiML App handles voice: Twilio ignores VoiceUrl/VoiceFallbackUrl",
    "sms_application_sid": "a TwiML App handles messaging: Twilio ignores SmsUrl/SmsFallbackUrl",
    "trunk_sid": "an Elastic SIP Trunk handles voice: Twilio ignores VoiceUrl",
}
ANSWER_FIELDS = {
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "VoiceFallbackUrl": "voice_fallback_url",
    "VoiceFallbackMethod": "voice_fallback_method",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsFallbackMethod": "sms_fallback_method",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
}


def report(answer, fields, out, err):
    number = answer.get("phone_number", "?") if isinstance(answer, dict) else "?"
    sid = answer.get("sid", "?") if isinstance(answer, dict) else "?"
    print(f"Updated {number} ({sid}):", file=out)
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"  {name.ljust(width)} = {value}", file=out)
    if not isinstance(answer, dict):
        return
    for field, sent in fields:
        got = answer.get(ANSWER_FIELDS[field])
        if got is not None and got != sent:
            print(f"warning: Twilio reports {field} = {got!r}, not the value sent", file=err)
    for field, meaning in OVERRIDING_FIELDS.items():
        if answer.get(field):
            print(f"warning: {field} is {answer[field]}: {meaning}", file=err)


def parse_args(argv, env):
    parser = argparse.ArgumentParser(
        description="Point a Twilio number's Voice and Messaging URLs at the twiml-failover primary, "
        "and its 'Primary handler fails' URLs at the fallback.",
        epilog="Credentials: TWILIO_API_KEY + TWILIO_API_SECRET, or TWILIO_AUTH_TOKEN (environment only).",
    )
    parser.add_argument("--account-sid", default=env.get("TWILIO_ACCOUNT_SID", ""),
                        help="AC... (default: $TWILIO_ACCOUNT_SID)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--number-sid", help="PN... of the number to change")
    which.add_argument("--phone-number", help="the number in E.164 (+15551234567); its PN... is looked up first")
    parser.add_argument("--primary-base", required=True, help="e.g. https://voice.example.com (the primary's --public-url)")
    parser.add_argument("--fallback-base", required=True, help="e.g. https://fallback.example.net (the fallback's --public-url)")
    parser.add_argument("--status-base", help="base for StatusCallback (default: --primary-base)")
    parser.add_argument("--overrides", default=DEFAULT_OVERRIDES,
                        help=f"connection overrides for the primary URLs (default {DEFAULT_OVERRIDES!r}; 'none' for none)")
    parser.add_argument("--voice-path", default="/voice", help="default /voice")
    parser.add_argument("--sms-path", default="/sms", help="default /sms")
    parser.add_argument("--status-path", default="/status", help="default /status")
    parser.add_argument("--no-status-callback", action="store_true", help="leave StatusCallback unchanged")
    parser.add_argument("--api-base", default="https://api.twilio.com", help="default https://api.twilio.com (tests use a local fake)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per API request (default 15)")
    parser.add_argument("--dry-run", action="store_true", help="print the request(s) and send nothing")
    args = parser.parse_args(argv)

    if not ACCOUNT_SID.match(args.account_sid or ""):
        raise Failure("--account-sid (or TWILIO_ACCOUNT_SID): expected AC followed by 32 hex digits")
    if args.number_sid is not None and not NUMBER_SID.match(args.number_sid):
        raise Failure("--number-sid: expected PN followed by 32 hex digits")
    if args.phone_number is not None and not PHONE_NUMBER.match(args.phone_number):
        raise Failure("--phone-number: expected E.164, e.g. +15551234567")
    args.primary_base = parse_base("--primary-base", args.primary_base)
    args.fallback_base = parse_base("--fallback-base", args.fallback_base)
    args.status_base = parse_base("--status-base", args.status_base) if args.status_base else args.primary_base
    if args.primary_base == args.fallback_base:
        raise Failure("--primary-base and --fallback-base are the same: the fallback must run elsewhere")
    args.overrides = parse_overrides(args.overrides)
    args.voice_path = parse_path("--voice-path", args.voice_path)
    args.sms_path = parse_path("--sms-path", args.sms_path)
    args.status_path = parse_path("--status-path", args.status_path)
    api = urllib.parse.urlsplit(args.api_base)
    if api.scheme not in ("https", "http") or not api.netloc or api.query or api.fragment:
        raise Failure("--api-base: expected a URL like https://api.twilio.com")
    args.api_base = args.api_base.rstrip("/")
    if not args.timeout > 0:
        raise Failure("--timeout must be above 0")
    return args


def main(argv=None, env=None, out=sys.stdout, err=sys.stderr):
    env = os.environ if env is None else env
    try:
        args = parse_args(argv, env)
        fields = build_fields(args)
        credentials = credentials_from_env(args.account_sid, env, required=not args.dry_run)
        if args.dry_run:
            print_dry_run(args, fields, credentials, out)
            return 0
        number_sid = args.number_sid or find_number_sid(args, credentials)
        answer = api_call("POST", update_url(args, number_sid), credentials, fields, timeout=args.timeout)
        report(answer, fields, out, err)
        return 0
    except Failure as e:
        print(f"configure-number: error: {e}", file=err)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
