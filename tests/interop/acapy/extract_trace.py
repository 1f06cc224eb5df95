#!/usr/bin/env python3
"""Plaintext DIDComm trace of one ACA-Py agent, from its `--log-level debug` output.

Usage: extract_trace.py AGENT.log [--full]  >  trace.jsonl

Get the logs with
  ACAPY_TEST_LOG_LEVEL=debug ACAPY_TEST_LOG_DIR=/tmp/acapy-logs \
    cargo test -p integration-tests --test acapy_reference

One JSON object per line, in log order:
  {"t": time, "dir": "in",  "msg": <plaintext message it unpacked>}
  {"t": time, "dir": "out", "msg": <plaintext message it queued>, "to": endpoint,
   "routing_keys": [...], "reply_session": bool}   (reply_session: answering on the inbound
                                                    connection if it is still open)
  {"t": time, "dir": "out-forwarded", "to": endpoint, "bytes_prefix": ...}  (a mediator relaying
                                                    an already encrypted message)
  {"t": time, "dir": "http-post", "to": endpoint, "headers": {...}}   (webhook posts left out)
Long values (did:peer:4 long forms, JWE fields, attachments) are shortened unless --full.
"""

import ast
import json
import re
import sys

FULL = "--full" in sys.argv


def shorten(value):
    if FULL:
        return value
    if isinstance(value, dict):
        return {k: shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v) for v in value]
    if isinstance(value, str) and len(value) > 120:
        return value[:100] + f"…({len(value)} chars)"
    return value


def emit(obj):
    print(json.dumps(obj, ensure_ascii=False))


def main(path):
    expanded = re.compile(r"Expanded message: (\{.*\})\s*$")
    queued = re.compile(
        r"queued_for_delivery, payload=<OutboundMessage\(connection_id='([^']*)', "
        r"enc_payload=(None|b'.{0,80})"
    )
    payload = re.compile(r", payload='(\{.*?\})', reply_session_id=([^,]*),")
    targets = re.compile(r"endpoint='([^']*)'.*?routing_keys=(\[[^\]]*\])")
    posting = re.compile(r"Posting to (\S+); Data: .*; Headers: (\{.*\})\s*$")
    for line in open(path, encoding="utf-8", errors="replace"):
        t = line[11:23]
        if m := expanded.search(line):
            emit({"t": t, "dir": "in", "msg": shorten(ast.literal_eval(m.group(1)))})
        elif m := queued.search(line):
            target = targets.search(line[m.end():])
            to = target.group(1) if target else None
            routing = ast.literal_eval(target.group(2)) if target else None
            if m.group(2) == "None":
                p = payload.search(line)
                if not p:
                    continue
                emit({
                    "t": t,
                    "dir": "out",
                    "msg": shorten(json.loads(p.group(1))),
                    "to": to,
                    "routing_keys": routing,
                    "reply_session": p.group(2) != "None",
                })
            else:
                emit({"t": t, "dir": "out-forwarded", "to": to, "routing_keys": routing,
                      "bytes_prefix": m.group(2)[2:60]})
        elif (m := posting.search(line)) and "/topic/" not in m.group(1):  # not webhooks
            emit({"t": t, "dir": "http-post", "to": m.group(1),
                  "headers": ast.literal_eval(m.group(2))})


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        sys.exit(__doc__)
    main(args[0])
