// Benchmark peer: what a Node user would run. Express 5 with the official twilio.webhook()
// middleware (signature validation on, auth token from TWILIO_AUTH_TOKEN) answering the same SMS
// TwiML as twiml-failover's shipped sms.xml template.
"use strict";
const express = require("express");
const twilio = require("twilio");

const company = "Example Corp";
const app = express();
app.use(express.urlencoded({ extended: false }));
app.post("/sms", twilio.webhook({ validate: true }), (req, res) => {
  const body = String(req.body.Body || "");
  const twiml = new twilio.twiml.MessagingResponse();
  const word = body.trim().toUpperCase();
  if (word === "HELP") {
    twiml.message(`${company}: reply to this number and an agent will answer. Reply STOP to opt out.`);
  } else if (word !== "STOP") {
    twiml.message(`Thanks for your message to ${company}: "${body}". An agent will reply soon.`);
  }
  res.type("text/xml").send(twiml.toString());
});
const port = Number(process.env.PORT || 8082);
app.listen(port, "127.0.0.1");
