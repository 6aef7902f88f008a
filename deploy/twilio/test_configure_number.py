#!/usr/bin/env python3
"""Tests for configure-number.py against a local fake of Twilio's REST API (standard library only).

Run:  python3 deploy/twilio/test_configure_number.py      (or: python3 -m unittest discover -s deploy/twilio)

Each test starts an HTTP server on 127.0.0.1, port 0, runs the script as a subprocess with
--api-base pointing at it, and checks exactly what reached the fake.
"""

import base64
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import unittest
import urllib.parse

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configure-number.py")

ACCOUNT = "AC" + "0123456789abcdef" * 2
NUMBER = "PN" + "fedcba9876543210" * 2
OTHER_NUMBER = "PN" + "00112233445566778899aabbccddeeff"
PHONE = "+15551234567"
TOKEN = "auth-token-never-printed"
API_KEY = "SK" + "aaaabbbbccccdddd" * 2
API_SECRET = "api-secret-never-printed"
OVERRIDES = "#ct=1000&rt=4000&tt=6000&rc=1&rp=ct"

EXPECTED_FIELDS = [
    ("VoiceUrl", "https://voice.example.com/voice" + OVERRIDES),
    ("VoiceMethod", "POST"),
    ("VoiceFallbackUrl", "https://fallback.example.net/voice"),
    ("VoiceFallbackMethod", "POST"),
    ("SmsUrl", "https://voice.example.com/sms" + OVERRIDES),
    ("SmsMethod", "POST"),
    ("SmsFallbackUrl", "https://fallback.example.net/sms"),
    ("SmsFallbackMethod", "POST"),
    ("StatusCallback", "https://voice.example.com/status"),
    ("StatusCallbackMethod", "POST"),
]

UPDATE_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{NUMBER}.json"
LIST_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json"


def number_resource(fields, **extra):
    """What Twilio answers after an update: the resource with snake_case fields."""
    names = {
        "VoiceUrl": "voice_url", "VoiceMethod": "voice_method",
        "VoiceFallbackUrl": "voice_fallback_url", "VoiceFallbackMethod": "voice_fallback_method",
        "SmsUrl": "sms_url", "SmsMethod": "sms_method",
        "SmsFallbackUrl": "sms_fallback_url", "SmsFallbackMethod": "sms_fallback_method",
        "StatusCallback": "status_callback", "StatusCallbackMethod": "status_callback_method",
    }
    resource = {"sid": NUMBER, "account_sid": ACCOUNT, "phone_number": PHONE,
                "voice_application_sid": None, "sms_application_sid": None, "trunk_sid": None}
    for name, value in fields.items():
        resource[names[name]] = value
    resource.update(extra)
    return resource


class FakeTwilio:
    """A threaded HTTP server that records requests and answers from a route table."""

    def __init__(self):
        self.requests = []
        self.stopped = False
        # (method, path) -> callable(query, form) -> (status, json-able body)
        self.routes = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self):
                split = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = {
                    "method": self.command,
                    "path": split.path,
                    "query": urllib.parse.parse_qsl(split.query, keep_blank_values=True),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "raw": raw,
                    "form": urllib.parse.parse_qsl(raw.decode("ascii"), keep_blank_values=True),
                }
                fake.requests.append(record)
                route = fake.routes.get((self.command, split.path))
                if route is None:
                    status, body = 404, {"code": 20404, "message": "The requested resource was not found",
                                         "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}
                else:
                    status, body = route(record)
                payload = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def base(self):
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self.thread.start()

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class ConfigureNumberTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeTwilio()
        self.fake.start()
        self.addCleanup(self.fake.stop)

    def run_script(self, *extra, env=None, number=True, dry_run=False):
        argv = [sys.executable, SCRIPT, "--account-sid", ACCOUNT,
                "--primary-base", "https://voice.example.com",
                "--fallback-base", "https://fallback.example.net/",
                "--api-base", self.fake.base, "--timeout", "5"]
        if number:
            argv += ["--number-sid", NUMBER]
        if dry_run:
            argv.append("--dry-run")
        argv += list(extra)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
        clean.update({"TWILIO_AUTH_TOKEN": TOKEN} if env is None else env)
        return subprocess.run(argv, env=clean, capture_output=True, text=True, timeout=60, check=False)

    def accept_update(self, **extra):
        self.fake.routes[("POST", UPDATE_PATH)] = lambda r: (200, number_resource(dict(r["form"]), **extra))

    # -- the update itself ---------------------------------------------------------------------

    def test_update_sends_exact_fields_path_and_basic_auth(self):
        self.accept_update()
        result = self.run_script()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(self.fake.requests), 1)
        request = self.fake.requests[0]
        self.assertEqual(request["method"], "POST")
        self.assertEqual(request["path"], UPDATE_PATH)
        self.assertEqual(request["query"], [])
        self.assertEqual(request["form"], EXPECTED_FIELDS)
        self.assertEqual(request["headers"]["authorization"], basic(ACCOUNT, TOKEN))
        self.assertEqual(request["headers"]["content-type"], "application/x-www-form-urlencoded")
        # The fragment travels form-encoded inside the value, so Twilio stores it with the URL.
        self.assertIn(b"VoiceUrl=https%3A%2F%2Fvoice.example.com%2Fvoice%23ct%3D1000%26rt%3D4000", request["raw"])
        self.assertIn("Updated " + PHONE, result.stdout)
        self.assertNotIn(TOKEN, result.stdout + result.stderr)
        self.assertEqual(result.stderr, "")

    def test_overrides_go_on_primary_urls_only(self):
        self.accept_update()
        result = self.run_script()
        self.assertEqual(result.returncode, 0, result.stderr)
        form = dict(self.fake.requests[0]["form"])
        for name in ("VoiceUrl", "SmsUrl"):
            self.assertTrue(form[name].endswith(OVERRIDES), name)
        for name in ("VoiceFallbackUrl", "SmsFallbackUrl", "StatusCallback"):
            self.assertNotIn("#", form[name], name)

    def test_custom_and_disabled_overrides(self):
        self.accept_update()
        result = self.run_script("--overrides", "ct=2000&rt=8000&tt=12000")
        self.assertEqual(result.returncode, 0, result.stderr)
        form = dict(self.fake.requests[-1]["form"])
        self.assertEqual(form["VoiceUrl"], "https://voice.example.com/voice#ct=2000&rt=8000&tt=12000")
        result = self.run_script("--overrides", "none")
        self.assertEqual(result.returncode, 0, result.stderr)
        form = dict(self.fake.requests[-1]["form"])
        self.assertEqual(form["VoiceUrl"], "https://voice.example.com/voice")
        self.assertEqual(form["SmsUrl"], "https://voice.example.com/sms")

    def test_invalid_overrides_are_refused_before_any_request(self):
        for bad in ("ct=50", "rt=20000", "rc=9", "zz=1", "rp=sometimes", "ct", "ct=1000&ct=2000"):
            result = self.run_script("--overrides", bad)
            self.assertEqual(result.returncode, 2, bad)
            self.assertIn("--overrides", result.stderr, bad)
        self.assertEqual(self.fake.requests, [])

    def test_api_key_credentials(self):
        self.accept_update()
        result = self.run_script(env={"TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET})
        self.assertEqual(result.returncode, 0, result.stderr)
        request = self.fake.requests[0]
        self.assertEqual(request["headers"]["authorization"], basic(API_KEY, API_SECRET))
        self.assertEqual(request["path"], UPDATE_PATH)  # still the account's URL
        self.assertNotIn(API_SECRET, result.stdout + result.stderr)

    def test_status_callback_can_be_left_alone_or_moved(self):
        self.accept_update()
        result = self.run_script("--no-status-callback")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.fake.requests[-1]["form"], EXPECTED_FIELDS[:-2])
        result = self.run_script("--status-base", "https://status.example.org/hooks")
        self.assertEqual(result.returncode, 0, result.stderr)
        form = dict(self.fake.requests[-1]["form"])
        self.assertEqual(form["StatusCallback"], "https://status.example.org/hooks/status")

    def test_warns_when_a_twiml_app_overrides_the_urls(self):
        self.accept_update(voice_application_sid="AP" + "1" * 32)
        result = self.run_script()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("voice_application_sid", result.stderr)
        self.assertIn("ignores VoiceUrl", result.stderr)

    # -- phone-number lookup -------------------------------------------------------------------

    def test_phone_number_lookup_then_update(self):
        def listing(record):
            self.assertEqual(record["query"], [("PhoneNumber", PHONE)])
            return 200, {"incoming_phone_numbers": [{"sid": NUMBER, "phone_number": PHONE}],
                         "page": 0, "page_size": 50}
        self.fake.routes[("GET", LIST_PATH)] = listing
        self.accept_update()
        result = self.run_script("--phone-number", PHONE, number=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([(r["method"], r["path"]) for r in self.fake.requests],
                         [("GET", LIST_PATH), ("POST", UPDATE_PATH)])
        lookup, update = self.fake.requests
        self.assertEqual(lookup["query"], [("PhoneNumber", PHONE)])
        self.assertEqual(lookup["headers"]["authorization"], basic(ACCOUNT, TOKEN))
        self.assertEqual(lookup["raw"], b"")
        self.assertEqual(update["form"], EXPECTED_FIELDS)

    def test_phone_number_not_in_account(self):
        self.fake.routes[("GET", LIST_PATH)] = lambda r: (200, {"incoming_phone_numbers": []})
        result = self.run_script("--phone-number", PHONE, number=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn(f"no number {PHONE} in account {ACCOUNT}", result.stderr)
        self.assertEqual(len(self.fake.requests), 1)  # no update attempted

    def test_phone_number_matching_several_numbers(self):
        numbers = [{"sid": NUMBER, "phone_number": PHONE}, {"sid": OTHER_NUMBER, "phone_number": PHONE}]
        self.fake.routes[("GET", LIST_PATH)] = lambda r: (200, {"incoming_phone_numbers": numbers})
        result = self.run_script("--phone-number", PHONE, number=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--number-sid", result.stderr)
        self.assertEqual(len(self.fake.requests), 1)

    # -- errors ------------------------------------------------------------------------------------

    def test_401_gives_a_clear_message_and_exit_2(self):
        self.fake.routes[("POST", UPDATE_PATH)] = lambda r: (401, {
            "code": 20003, "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})
        result = self.run_script()
        self.assertEqual(result.returncode, 2)
        self.assertIn("HTTP 401", result.stderr)
        self.assertIn("20003", result.stderr)
        self.assertIn("rejected the credentials", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertNotIn(TOKEN, result.stdout + result.stderr)

    def test_401_on_lookup(self):
        self.fake.routes[("GET", LIST_PATH)] = lambda r: (401, {"code": 20003, "message": "Authenticate"})
        result = self.run_script("--phone-number", PHONE, number=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn("rejected the credentials", result.stderr)
        self.assertEqual(len(self.fake.requests), 1)

    def test_404_gives_a_clear_message_and_exit_2(self):
        # No route for the update path: the fake answers Twilio's 404 body.
        result = self.run_script()
        self.assertEqual(result.returncode, 2)
        self.assertIn("HTTP 404", result.stderr)
        self.assertIn("20404", result.stderr)
        self.assertIn("No such phone number", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_unreachable_api_exit_2(self):
        self.fake.stop()
        result = self.run_script()
        self.assertEqual(result.returncode, 2)
        self.assertIn("cannot reach the API", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_missing_credentials_exit_2_without_request(self):
        result = self.run_script(env={})
        self.assertEqual(result.returncode, 2)
        self.assertIn("no credentials", result.stderr)
        result = self.run_script(env={"TWILIO_API_KEY": API_KEY})
        self.assertEqual(result.returncode, 2)
        self.assertIn("TWILIO_API_SECRET", result.stderr)
        self.assertEqual(self.fake.requests, [])

    def test_bad_arguments_exit_2_without_request(self):
        cases = [
            ("--account-sid", "ACnothex"),
            ("--number-sid", "PN123"),
            ("--primary-base", "http://voice.example.com"),
            ("--primary-base", "https://voice.example.com/voice#ct=1000"),
            ("--fallback-base", "https://voice.example.com"),
        ]
        for flag, value in cases:
            result = self.run_script(flag, value)
            self.assertEqual(result.returncode, 2, (flag, value, result.stderr))
            self.assertIn(flag, result.stderr, (flag, value))
        result = self.run_script("--phone-number", "5551234567", number=False)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(self.fake.requests, [])

    # -- dry run -----------------------------------------------------------------------------------

    def test_dry_run_sends_nothing_and_prints_the_exact_request(self):
        self.accept_update()
        result = self.run_script(dry_run=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.fake.requests, [])
        out = result.stdout
        self.assertIn("DRY RUN", out)
        self.assertIn(f"POST {self.fake.base}{UPDATE_PATH}", out)
        self.assertIn(f"Basic <redacted: {ACCOUNT} + auth token>", out)
        for name, value in EXPECTED_FIELDS:
            self.assertRegex(out, rf"(?m)^  {name} += {re.escape(value)}$")
        self.assertIn(urllib.parse.urlencode(EXPECTED_FIELDS), out)
        self.assertNotIn(TOKEN, out + result.stderr)

    def test_dry_run_with_phone_number_does_not_look_up(self):
        result = self.run_script("--phone-number", PHONE, number=False, dry_run=True,
                                 env={"TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.fake.requests, [])
        self.assertIn(f"GET {self.fake.base}{LIST_PATH}?PhoneNumber=%2B15551234567", result.stdout)
        self.assertIn("IncomingPhoneNumbers/{PhoneNumberSid}.json", result.stdout)
        self.assertIn(f"Basic <redacted: {API_KEY} + API key secret>", result.stdout)
        self.assertNotIn(API_SECRET, result.stdout + result.stderr)

    def test_dry_run_needs_no_credentials(self):
        result = self.run_script(dry_run=True, env={})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.fake.requests, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
