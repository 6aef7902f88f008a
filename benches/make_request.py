"""Writes the benchmark's signed SMS webhook: the form body Twilio sends for an inbound SMS (all
the parameters of a real one) and its X-Twilio-Signature for a URL, computed by the official
twilio-python SDK so the request is genuinely signed.

usage: make_request.py URL BODY_FILE   (token from TWILIO_AUTH_TOKEN; prints the signature)"""
import os
import sys
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

PARAMS = [
    ("ToCountry", "US"),
    ("ToState", "CA"),
    ("SmsMessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
    ("NumMedia", "0"),
    ("ToCity", "SAN FRANCISCO"),
    ("FromZip", "94105"),
    ("SmsSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
    ("FromState", "CA"),
    ("SmsStatus", "received"),
    ("FromCity", "SAN FRANCISCO"),
    ("Body", "Running late, see you at the cafe in 10 minutes. Can you order me a flat white please?"),
    ("FromCountry", "US"),
    ("To", "+14155550100"),
    ("MessagingServiceSid", "MG9752274e9e519418a7406176694466fa"),
    ("ToZip", "94105"),
    ("NumSegments", "1"),
    ("ReferralNumMedia", "0"),
    ("MessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
    ("AccountSid", "ACae0e8ac8c1d5f3e9f4c1b2a3d4e5f607"),
    ("From", "+14155550123"),
    ("ApiVersion", "2010-04-01"),
]


def main() -> None:
    url, body_file = sys.argv[1], sys.argv[2]
    with open(body_file, "w", encoding="utf-8") as f:
        f.write(urlencode(PARAMS))
    validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
    print(validator.compute_signature(url, dict(PARAMS)))


if __name__ == "__main__":
    main()
