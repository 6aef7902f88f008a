-- wrk script: every request is the same genuinely signed SMS webhook POST to /sms.
-- BENCH_BODY_FILE holds the form body, BENCH_SIGNATURE its X-Twilio-Signature (see make_request.py).
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "r"))
wrk.method = "POST"
wrk.path = "/sms"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["X-Twilio-Signature"] = os.getenv("BENCH_SIGNATURE")
wrk.headers["I-Twilio-Idempotency-Token"] = "2b1f6a44-5a8e-4c1f-9a55-3c2d1e0f9b7a"
wrk.headers["User-Agent"] = "TwilioProxy/1.1"
wrk.headers["Accept"] = "*/*"

function done(summary, latency, requests)
  -- One parseable line for run.sh: requests/s, latency percentiles in µs, non-2xx count.
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
