"""Benchmark peer: what a Python user would run. Flask with twilio-python's RequestValidator
(signature validation on, auth token from TWILIO_AUTH_TOKEN) under gunicorn, answering the same SMS
TwiML as twiml-failover's shipped sms.xml template."""
import os

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

COMPANY = "Example Corp"
app = Flask(__name__)
validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])


@app.post("/sms")
def sms():
    signature = request.headers.get("X-Twilio-Signature", "")
    if not validator.validate(request.url, request.form, signature):
        abort(403)
    body = request.form.get("Body", "")
    twiml = MessagingResponse()
    word = body.strip().upper()
    if word == "HELP":
        twiml.message(f"{COMPANY}: reply to this number and an agent will answer. Reply STOP to opt out.")
    elif word != "STOP":
        twiml.message(f'Thanks for your message to {COMPANY}: "{body}". An agent will reply soon.')
    return Response(str(twiml), mimetype="text/xml")
