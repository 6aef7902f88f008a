// Node half of the signature oracle. Driven by generate.py; not meant to be run by hand.
//
// Reads a JSON array of operations on stdin and writes a JSON array of results on stdout,
// one result per operation, in the same order. Every signature, hash and verdict comes from
// the pinned twilio-node SDK (see package.json); nothing here computes an HMAC itself.
//
//   {"op": "version"}                                        -> {"version": "6.x.y"}
//   {"op": "sign", "token", "url", "params": {...}}          -> {"signature": "..."}
//   {"op": "hash", "body"}                                   -> {"hash": "..."}
//   {"op": "validate", "kind": "params", "token", "signature", "url", "params": {...}}
//   {"op": "validate", "kind": "body",   "token", "signature", "url", "body": "..."}
//                                                            -> {"valid": bool, "error": str|null}
//
// "params" objects map a name to a string, or to an array of strings for repeated names.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const twilio = require("twilio");
const here = dirname(fileURLToPath(import.meta.url));

function sdkVersion() {
  const pkg = JSON.parse(
    readFileSync(join(here, "node_modules", "twilio", "package.json"), "utf8")
  );
  return pkg.version;
}

function run(op) {
  switch (op.op) {
    case "version":
      return { version: sdkVersion() };
    case "sign":
      return {
        signature: twilio.getExpectedTwilioSignature(op.token, op.url, op.params),
      };
    case "hash":
      return { hash: twilio.getExpectedBodyHash(op.body) };
    case "validate":
      try {
        let valid;
        if (op.kind === "body") {
          valid = twilio.validateRequestWithBody(op.token, op.signature, op.url, op.body);
        } else {
          valid = twilio.validateRequest(op.token, op.signature, op.url, op.params);
        }
        return { valid: Boolean(valid), error: null };
      } catch (e) {
        return { valid: false, error: `${e.name}: ${e.message}` };
      }
    default:
      throw new Error(`unknown op ${JSON.stringify(op.op)}`);
  }
}

const input = readFileSync(0, "utf8");
const ops = JSON.parse(input);
process.stdout.write(JSON.stringify(ops.map(run)));
