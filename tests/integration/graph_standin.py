#!/usr/bin/env python3
"""A strict local stand-in for Microsoft's token endpoint and Graph's
sendMail, and for Google's token endpoint (JWT bearer grant), over TLS,
for tests/integration/graph.rs.

Every request is checked against the contract the relay must keep
(issue 26): grant fields, the client assertion's RS256 signature against
the test's certificate (verified with the openssl program), its header
thumbprint and claims (aud, iss, sub, jti never reused, nbf, exp,
lifetime), Authorization: Bearer with a token it issued and that is still
valid, Content-Type text/plain, strict base64, at most 4 MB, at most 4
requests in flight per mailbox (the peak per mailbox is written to
<dir>/max-in-flight-by-mailbox, JSON), at most 150 MB of message data
(sendMail and draft bodies, attachment POSTs, upload PUTs) per mailbox in
5 minutes. A deviation is written to <dir>/violations, one line
each; the test asserts the file is empty. Each request is recorded in
<dir>/requests (JSON lines); each accepted message is written decoded to
<dir>/mail/<n>.eml.

Answers follow Graph's documentation: 202; 401 for an unknown or expired
token; 429 with Retry-After for the first --storm requests; 400 with
Graph's JSON error for a message whose Subject holds "BAD400".

A message over sendMail's 4 MB goes through a draft, as in
learn.microsoft.com/graph/outlook-large-attachments: POST
/users/{id}/messages (MIME, base64, text/plain, at most 4 MB) answers 201
with the draft's id; POST .../messages/{mid}/attachments takes a
fileAttachment under 3 MB; POST .../attachments/createUploadSession
(AttachmentItem: attachmentType file, name, size of 3 MB to 150 MB)
answers 201 with an uploadUrl on this server; each PUT to it must come
without Authorization, with Content-Type application/octet-stream,
Content-Range "bytes s-e/total" starting where the last ended, the
session's total, Content-Length equal to the range, under 4 MB, and is
answered 200 with nextExpectedRanges, the last 201 with Location; POST
.../messages/{mid}/send (Content-Length 0, every session complete)
answers 202 and the draft is "sent": its MIME goes to mail/<n>.eml and
its attachments to attachments/<n>-<k> (bytes as reassembled), listed in
attachments/<n>.json. DELETE .../messages/{mid} answers 204.
--fail-put N answers the Nth PUT with 503 (Retry-After 1).

Message trace: GET /v1.0/admin/exchange/tracing/messageTraces with one
$filter=messageId eq '<id>' (quotes doubled), a live token, the role
ExchangeMessageTrace.Read.All (else 403), at most 100 look-ups in 5
minutes; the first look-up of a sent message says "pending" for each of
its To/Cc/Bcc recipients, later ones "failed" if its Subject holds
TRACEFAIL (or it is addressed to --trace-fail-to), "quarantined" for
QUARANTINE, else "delivered".
"""

import argparse
import base64
import binascii
import email
import email.utils
import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST = 4 * 1024 * 1024
MAX_IN_FLIGHT = 4
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"

args = None
lock = threading.Lock()
state = {
    "tokens": {},  # token -> accepted until (monotonic)
    "jtis": set(),
    "issued": 0,
    "in_flight": 0,
    "max_in_flight": 0,
    "in_flight_by": {},  # mailbox -> requests in flight now
    "max_in_flight_by": {},  # mailbox -> the most at once
    "uploads_by": {},  # mailbox -> [(monotonic, octets)] of message data in the last 5 minutes
    "send_requests": 0,
    "mail": 0,
    "storm_left": 0,
    "drafts": {},  # id -> {"mime", "attachments": [...], "sessions": [...]}
    "sessions": {},  # id -> {"draft", "size", "next", "token", "path", "item"}
    "puts": 0,
    "sent": {},  # Message-ID -> {"recipients", "subject", "mark", "size", "lookups"}
    "traces": [],
}
MAX_ATTACHMENT = 150 * 1024 * 1024
MAX_UPLOAD = 150 * 1024 * 1024
UPLOAD_WINDOW = 300
SMALL_ATTACHMENT = 3 * 1000 * 1000


def violation(text):
    with lock:
        with open(os.path.join(args.dir, "violations"), "a") as f:
            f.write(text.replace("\n", " ") + "\n")


def record(entry):
    entry["t"] = time.time()
    with lock:
        with open(os.path.join(args.dir, "requests"), "a") as f:
            f.write(json.dumps(entry) + "\n")


def b64url(data):
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def verify_rs256(jwt, public_pem):
    """True if the JWT's RS256 signature verifies with the key (openssl)."""
    signing_input, _, signature = jwt.rpartition(".")
    with tempfile.NamedTemporaryFile() as sig, tempfile.NamedTemporaryFile() as key:
        sig.write(b64url(signature))
        sig.flush()
        key.write(public_pem)
        key.flush()
        run = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", key.name, "-signature", sig.name],
            input=signing_input.encode(),
            capture_output=True,
            timeout=20,
        )
    return run.returncode == 0


def public_key_of_certificate(path):
    return subprocess.run(
        ["openssl", "x509", "-in", path, "-noout", "-pubkey"],
        capture_output=True, check=True, timeout=20,
    ).stdout


def public_key_of_private_key(pem):
    return subprocess.run(
        ["openssl", "pkey", "-pubout"], input=pem.encode(),
        capture_output=True, check=True, timeout=20,
    ).stdout


def certificate_thumbprints(path):
    der = subprocess.run(
        ["openssl", "x509", "-in", path, "-outform", "DER"],
        capture_output=True, check=True, timeout=20,
    ).stdout
    enc = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    return enc(hashlib.sha256(der).digest()), enc(hashlib.sha1(der).digest())


def check_jwt(jwt, public_pem, where):
    """Checks a JWT's form and signature; returns (header, claims) or None."""
    parts = jwt.split(".")
    if len(parts) != 3:
        violation(f"{where}: the assertion is not a JWS compact serialisation")
        return None
    try:
        header = json.loads(b64url(parts[0]))
        claims = json.loads(b64url(parts[1]))
    except (ValueError, binascii.Error) as e:
        violation(f"{where}: the assertion does not decode: {e}")
        return None
    if any("=" in p for p in parts):
        violation(f"{where}: the assertion's base64url has padding")
    if header.get("alg") != "RS256":
        violation(f"{where}: alg is {header.get('alg')!r}, not RS256")
    if not verify_rs256(jwt, public_pem):
        violation(f"{where}: the assertion's signature does not verify")
        return None
    return header, claims


def check_times(claims, where, lifetime_max):
    now = time.time()
    for c in ("exp",):
        if not isinstance(claims.get(c), int):
            violation(f"{where}: claim {c} missing or not a number")
            return False
    start = claims.get("nbf", claims.get("iat"))
    if not isinstance(start, int):
        violation(f"{where}: no nbf or iat")
        return False
    if start > now + 60:
        violation(f"{where}: nbf/iat {start} is in the future (now {now:.0f})")
    if claims["exp"] <= now:
        violation(f"{where}: exp {claims['exp']} has passed (now {now:.0f})")
    if claims["exp"] - start > lifetime_max or claims["exp"] <= start:
        violation(f"{where}: lifetime {claims['exp'] - start}s, not within (0, {lifetime_max}]")
    return True


def check_header(message, where):
    """RFC 5322 section 3.6: To, Cc and Bcc at most once each."""
    header = message.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    names = [line.split(b":", 1)[0].strip().lower()
             for line in header.split(b"\n") if line and line[:1] not in (b" ", b"\t")]
    for name in (b"to", b"cc", b"bcc"):
        if names.count(name) > 1:
            violation(f"{where}: {names.count(name)} {name.decode()} fields")


def remember_sent(message):
    """Keeps what message trace will say about a sent message."""
    header = message.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    parsed = email.message_from_bytes(header + b"\n\n")
    mid = (parsed.get("Message-ID") or "").strip()
    if not mid:
        return
    fields = parsed.get_all("To", []) + parsed.get_all("Cc", []) + parsed.get_all("Bcc", [])
    recipients = [a for _, a in email.utils.getaddresses(fields) if a]
    subject = parsed.get("Subject") or ""
    mark = next((m for m in ("TRACEFAIL", "QUARANTINE") if m in subject), "")
    if args.trace_fail_to and args.trace_fail_to.lower() in [r.lower() for r in recipients]:
        mark = "TRACEFAIL"
    with lock:
        state["sent"][mid] = {"recipients": recipients, "subject": subject, "mark": mark,
                              "size": len(message), "lookups": 0}


def issue_token():
    # Shaped as Microsoft's: a JWT whose payload carries the app's roles
    # (the signature is not the relay's business).
    with lock:
        state["issued"] += 1
        payload = {"aud": "https://graph.microsoft.com", "roles": ROLES,
                   "jti": f"{state['issued']}-{os.urandom(6).hex()}"}
        enc = lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()
        token = f"{enc({'typ': 'JWT', 'alg': 'RS256'})}.{enc(payload)}.c2lnbmF0dXJl"
        state["tokens"][token] = time.monotonic() + args.token_accept
    return token


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def leave(self):
        """The request is answered from here on: no longer in flight (so
        the relay, which may start another the moment it reads the answer,
        is not counted twice)."""
        if getattr(self, "in_flight_counted", False):
            self.in_flight_counted = False
            with lock:
                state["in_flight"] -= 1
                state["in_flight_by"][self.counted_key] -= 1
                with open(os.path.join(args.dir, "max-in-flight"), "w") as f:
                    f.write(str(state["max_in_flight"]))
                with open(os.path.join(args.dir, "max-in-flight-by-mailbox.new"), "w") as f:
                    json.dump(state["max_in_flight_by"], f)
                os.rename(os.path.join(args.dir, "max-in-flight-by-mailbox.new"),
                          os.path.join(args.dir, "max-in-flight-by-mailbox"))

    def answer(self, status, body=b"", headers=()):
        self.leave()
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        length = self.headers.get("Content-Length")
        if length is None:
            violation(f"{self.path}: no Content-Length")
            return b""
        return self.rfile.read(int(length))

    def do_GET(self):
        split = urllib.parse.urlsplit(self.path)
        if split.path == "/v1.0/admin/exchange/tracing/messageTraces":
            self.counted(self.message_trace, split)
            return
        violation(f"GET {self.path}: not part of the contract")
        self.answer(404, {"error": {"code": "NotFound", "message": "no such path"}})

    def message_trace(self, split):
        where = "messageTrace"
        if self.headers.get("Content-Length") not in (None, "0"):
            violation(f"{where}: a body on a GET")
            self.body()
        if not self.authorised(where):
            return
        now = time.monotonic()
        with lock:
            state["traces"] = [t for t in state["traces"] if now - t < 300] + [now]
            recent = len(state["traces"])
        if recent > 100:
            violation(f"{where}: {recent} look-ups in 5 minutes, over 100")
        if "ExchangeMessageTrace.Read.All" not in ROLES:
            record({"path": where, "status": 403})
            self.answer(403, {"error": {"code": "Authorization_RequestDenied",
                                        "message": "Insufficient privileges to complete the operation."}})
            return
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        m = re.fullmatch(r"messageId eq '((?:[^']|'')*)'", (query.get("$filter") or [""])[0])
        if set(query) != {"$filter"} or len(query["$filter"]) != 1 or not m:
            violation(f"{where}: query {split.query!r} is not one $filter=messageId eq '...'")
            self.answer(400, {"error": {"code": "BadRequest", "message": "Invalid filter clause"}})
            return
        mid = m.group(1).replace("''", "'")
        with lock:
            sent = state["sent"].get(mid)
            if sent is not None:
                sent["lookups"] += 1
        record({"path": where, "status": 200, "messageId": mid})
        value = []
        if sent is not None:
            status = "pending"
            if sent["lookups"] > 1:
                status = {"TRACEFAIL": "failed", "QUARANTINE": "quarantined"}.get(sent["mark"], "delivered")
            for to in sent["recipients"]:
                value.append({"id": os.urandom(8).hex(), "senderAddress": args.mailbox,
                              "recipientAddress": to, "messageId": mid, "subject": sent["subject"],
                              "receivedDateTime": "2026-12-06T23:00:00Z", "size": sent["size"],
                              "fromIP": "", "toIP": "", "status": status})
        self.answer(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#admin/exchange/tracing/messageTraces",
                          "value": value})

    def do_PUT(self):
        split = urllib.parse.urlsplit(self.path)
        if split.path.startswith("/upload/"):
            self.counted(self.put_range, split)
        else:
            self.body()
            violation(f"PUT {split.path}: not part of the contract")
            self.answer(404, {"error": {"code": "NotFound", "message": "no such path"}})

    def do_DELETE(self):
        path = urllib.parse.urlsplit(self.path).path
        parts = path.split("/")
        # /v1.0/users/{mb}/messages/{mid}
        if len(parts) == 6 and parts[1:3] == ["v1.0", "users"] and parts[4] == "messages":
            self.counted(self.delete_draft, parts)
        else:
            violation(f"DELETE {path}: not part of the contract")
            self.answer(404, {"error": {"code": "NotFound", "message": "no such path"}})

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        parts = path.split("/")
        draft_path = len(parts) >= 5 and parts[1:3] == ["v1.0", "users"] and parts[4] == "messages"
        if path == f"/{args.tenant}/oauth2/v2.0/token":
            self.token(self.body())
        elif path == "/google/token":
            self.google_token(self.body())
        elif path.startswith("/v1.0/users/") and path.endswith("/sendMail"):
            self.send_mail(path)
        elif draft_path and len(parts) == 5:
            self.counted(self.create_draft, parts)
        elif draft_path and len(parts) == 7 and parts[6] == "send":
            self.counted(self.send_draft, parts)
        elif draft_path and len(parts) == 7 and parts[6] == "attachments":
            self.counted(self.add_attachment, parts)
        elif draft_path and len(parts) == 8 and parts[6:] == ["attachments", "createUploadSession"]:
            self.counted(self.create_session, parts)
        else:
            self.body()
            violation(f"POST {path}: not part of the contract")
            self.answer(404, {"error": {"code": "NotFound", "message": "no such path"}})

    def form(self, body, where):
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            violation(f"{where}: Content-Type {self.headers.get('Content-Type')!r}")
        pairs = urllib.parse.parse_qsl(body.decode("ascii", "replace"), keep_blank_values=True, strict_parsing=False)
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            violation(f"{where}: a form field twice: {keys}")
        return dict(pairs)

    def token(self, body):
        where = "token"
        form = self.form(body, where)
        url = f"https://127.0.0.1:{args.port}/{args.tenant}/oauth2/v2.0/token"
        expect = {
            "grant_type": "client_credentials",
            "client_id": args.client_id,
            "scope": args.scope,
            "client_assertion_type": ASSERTION_TYPE,
        }
        for k, v in expect.items():
            if form.get(k) != v:
                violation(f"{where}: {k} is {form.get(k)!r}, not {v!r}")
        if "client_secret" in form:
            violation(f"{where}: a client_secret beside the assertion")
        extra = set(form) - set(expect) - {"client_assertion"}
        if extra:
            violation(f"{where}: unexpected fields {sorted(extra)}")
        record({"path": "token", "grant": form.get("grant_type")})
        if args.revoked:
            self.answer(401, {"error": "invalid_client", "error_description":
                              "AADSTS7000274: Key was found, but the certificate has been revoked."})
            return
        jwt = form.get("client_assertion", "")
        checked = check_jwt(jwt, APP_PUBLIC, where)
        if checked is None:
            self.answer(401, {"error": "invalid_client", "error_description": "AADSTS700027: signature"})
            return
        header, claims = checked
        if header.get("x5t#S256") != APP_X5T_S256 and header.get("x5t") != APP_X5T:
            violation(f"{where}: neither x5t#S256 nor x5t is the certificate's thumbprint")
        for c, v in (("aud", url), ("iss", args.client_id), ("sub", args.client_id)):
            if claims.get(c) != v:
                violation(f"{where}: claim {c} is {claims.get(c)!r}, not {v!r}")
        jti = claims.get("jti")
        if not jti:
            violation(f"{where}: no jti")
        with lock:
            reused = jti in state["jtis"]
            state["jtis"].add(jti)
        if reused:
            violation(f"{where}: jti {jti} used twice")
        if "nbf" not in claims:
            violation(f"{where}: no nbf")
        check_times(claims, where, 600)
        token = issue_token()
        with open(os.path.join(args.dir, "last-token.new"), "w") as f:
            f.write(token)
        os.rename(os.path.join(args.dir, "last-token.new"), os.path.join(args.dir, "last-token"))
        self.answer(200, {"token_type": "Bearer", "expires_in": args.expires_in,
                          "ext_expires_in": args.expires_in, "access_token": token})

    def google_token(self, body):
        where = "google token"
        form = self.form(body, where)
        url = f"https://127.0.0.1:{args.port}/google/token"
        if form.get("grant_type") != JWT_BEARER:
            violation(f"{where}: grant_type is {form.get('grant_type')!r}")
        extra = set(form) - {"grant_type", "assertion"}
        if extra:
            violation(f"{where}: unexpected fields {sorted(extra)}")
        record({"path": "google-token"})
        checked = check_jwt(form.get("assertion", ""), GOOGLE_PUBLIC, where)
        if checked is None:
            self.answer(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            return
        header, claims = checked
        if header.get("kid") != GOOGLE_KEY["private_key_id"]:
            violation(f"{where}: kid is {header.get('kid')!r}")
        for c, v in (("iss", GOOGLE_KEY["client_email"]), ("sub", args.mailbox),
                     ("scope", GOOGLE_SCOPE), ("aud", url)):
            if claims.get(c) != v:
                violation(f"{where}: claim {c} is {claims.get(c)!r}, not {v!r}")
        check_times(claims, where, 3600)
        token = issue_token()
        with open(os.path.join(args.dir, "last-token.new"), "w") as f:
            f.write(token)
        os.rename(os.path.join(args.dir, "last-token.new"), os.path.join(args.dir, "last-token"))
        self.answer(200, {"token_type": "Bearer", "expires_in": args.expires_in, "access_token": token})

    def counted(self, handler, *a):
        """A request that counts against the mailbox's 4 at once."""
        self.enter()
        try:
            handler(*a)
        finally:
            self.leave()

    def mailbox_key(self):
        """Whose limits a request counts against: the mailbox in a
        /v1.0/users/{mailbox}/... path; an upload URL belongs to a draft
        of the one mailbox drafts are made in; message trace is the
        tenant's, counted apart."""
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/v1.0/users/"):
            return urllib.parse.unquote(path.split("/")[3]).lower()
        if path.startswith("/upload/"):
            return args.mailbox.lower()
        return "(tenant)"

    def enter(self):
        """A request that counts against its mailbox's 4 at once; one that
        carries message data (a MIME body, an attachment, an upload range)
        counts its octets against the mailbox's 150 MB per 5 minutes."""
        key = self.mailbox_key()
        path = urllib.parse.urlsplit(self.path).path
        carries = self.command == "PUT" or (self.command == "POST" and (
            path.endswith("/sendMail") or path.endswith("/messages") or path.endswith("/attachments")))
        octets = int(self.headers.get("Content-Length") or 0) if carries else 0
        now = time.monotonic()
        with lock:
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
            by = state["in_flight_by"]
            by[key] = by.get(key, 0) + 1
            state["max_in_flight_by"][key] = max(state["max_in_flight_by"].get(key, 0), by[key])
            in_flight = by[key]
            window = [(t, n) for t, n in state["uploads_by"].get(key, []) if now - t < UPLOAD_WINDOW]
            if octets:
                window.append((now, octets))
            state["uploads_by"][key] = window
            uploaded = sum(n for _, n in window)
        self.counted_key = key
        self.in_flight_counted = True
        if in_flight > MAX_IN_FLIGHT:
            violation(f"{self.command} {self.path}: {in_flight} requests in flight for {key}, more than {MAX_IN_FLIGHT}")
        if uploaded > MAX_UPLOAD:
            violation(f"{self.command} {self.path}: {uploaded} octets of uploads for {key} in 5 minutes, over 150 MB")

    def authorised(self, where):
        """Checks Authorization: Bearer with a live token we issued; answers
        401 and returns False otherwise."""
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        if token is None:
            violation(f"{where}: Authorization {auth[:20]!r} is not Bearer")
        with lock:
            until = state["tokens"].get(token)
        if until is None and token is not None:
            violation(f"{where}: a token the endpoint never issued")
        if until is None or time.monotonic() > until:
            record({"path": where, "status": 401})
            self.answer(401, {"error": {"code": "InvalidAuthenticationToken",
                                        "message": "Lifetime validation failed, the token is expired."}})
            return False
        return True

    def mailbox_ok(self, parts, where):
        mailbox = urllib.parse.unquote(parts[3])
        if mailbox.lower() != args.mailbox.lower():
            violation(f"{where}: mailbox {mailbox!r}")
            self.answer(404, {"error": {"code": "ErrorInvalidUser",
                                        "message": f"The requested user '{mailbox}' is invalid."}})
            return False
        return True

    def draft_of(self, parts, where):
        mid = urllib.parse.unquote(parts[5])
        with lock:
            draft = state["drafts"].get(mid)
        if draft is None:
            violation(f"{where}: no draft {mid!r}")
            self.answer(404, {"error": {"code": "ErrorItemNotFound",
                                        "message": "The specified object was not found in the store."}})
        return mid, draft

    def limited_body(self, where):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            violation(f"{where}: Content-Length {length!r}")
            return None
        if int(length) > MAX_REQUEST:
            violation(f"{where}: {length} octets, over 4 MB")
            self.close_connection = True
            self.answer(413, {"error": {"code": "ErrorMessageSizeExceeded", "message": "too large"}})
            return None
        return self.rfile.read(int(length))

    def json_body(self, where):
        body = self.limited_body(where)
        if body is None:
            return None
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            violation(f"{where}: Content-Type {self.headers.get('Content-Type')!r}, not application/json")
        try:
            return json.loads(body)
        except ValueError as e:
            violation(f"{where}: the body is not JSON: {e}")
            self.answer(400, {"error": {"code": "RequestBodyRead", "message": "not JSON"}})
            return None

    def create_draft(self, parts):
        where = "createDraft"
        body = self.limited_body(where)
        if body is None:
            return
        if self.headers.get("Content-Type") != "text/plain":
            violation(f"{where}: Content-Type {self.headers.get('Content-Type')!r}, not text/plain")
        if not self.authorised(where) or not self.mailbox_ok(parts, where):
            return
        try:
            message = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as e:
            violation(f"{where}: the body is not strict base64: {e}")
            self.answer(400, {"error": {"code": "ErrorMimeContentInvalidBase64String",
                                        "message": "Invalid base64 string for MIME content."}})
            return
        if base64.b64encode(message) != body:
            violation(f"{where}: the base64 is not canonical (line breaks or padding)")
        check_header(message, where)
        if "Mail.ReadWrite" not in ROLES:
            record({"path": where, "status": 403})
            self.answer(403, {"error": {"code": "ErrorAccessDenied",
                                        "message": "Access is denied. Check credentials and try again."}})
            return
        mid = "AAMk" + base64.urlsafe_b64encode(os.urandom(12)).decode()
        with lock:
            state["drafts"][mid] = {"mime": message, "attachments": [], "sessions": []}
        record({"path": where, "status": 201, "size": len(message)})
        self.answer(201, {"id": mid, "isDraft": True})

    def add_attachment(self, parts):
        where = "addAttachment"
        item = self.json_body(where)
        if item is None or not self.authorised(where) or not self.mailbox_ok(parts, where):
            return
        mid, draft = self.draft_of(parts, where)
        if draft is None:
            return
        if item.get("@odata.type") != "#microsoft.graph.fileAttachment":
            violation(f"{where}: @odata.type {item.get('@odata.type')!r}")
        if not isinstance(item.get("name"), str) or not item["name"]:
            violation(f"{where}: no name")
        try:
            data = base64.b64decode(item.get("contentBytes", ""), validate=True)
        except (binascii.Error, ValueError) as e:
            violation(f"{where}: contentBytes is not base64: {e}")
            data = b""
        if len(data) >= SMALL_ATTACHMENT:
            violation(f"{where}: {len(data)} octets: 3 MB or more go by upload session")
        with lock:
            draft["attachments"].append({"name": item.get("name"), "contentType": item.get("contentType"),
                                         "isInline": item.get("isInline"), "contentId": item.get("contentId"),
                                         "data": data, "how": "post"})
        record({"path": where, "status": 201, "size": len(data)})
        self.answer(201, {"id": "att" + os.urandom(4).hex(), "size": len(data)})

    def create_session(self, parts):
        where = "createUploadSession"
        request = self.json_body(where)
        if request is None or not self.authorised(where) or not self.mailbox_ok(parts, where):
            return
        mid, draft = self.draft_of(parts, where)
        if draft is None:
            return
        item = request.get("AttachmentItem")
        if not isinstance(item, dict) or set(request) != {"AttachmentItem"}:
            violation(f"{where}: the body is not one AttachmentItem: {sorted(request)}")
            self.answer(400, {"error": {"code": "ErrorInvalidRequest", "message": "AttachmentItem"}})
            return
        if item.get("attachmentType") != "file":
            violation(f"{where}: attachmentType {item.get('attachmentType')!r}")
        if not isinstance(item.get("name"), str) or not item["name"]:
            violation(f"{where}: no name")
        size = item.get("size")
        if not isinstance(size, int) or not SMALL_ATTACHMENT <= size <= MAX_ATTACHMENT:
            violation(f"{where}: size {size!r} is not within 3 MB to 150 MB")
            self.answer(400, {"error": {"code": "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                                        "message": "size"}})
            return
        known = {"attachmentType", "name", "size", "contentType", "isInline", "contentId"}
        if set(item) - known:
            violation(f"{where}: unknown AttachmentItem fields {sorted(set(item) - known)}")
        sid = os.urandom(8).hex()
        token = base64.urlsafe_b64encode(os.urandom(18)).decode()
        store = os.path.join(args.dir, "sessions", sid)
        open(store, "wb").close()
        with lock:
            state["sessions"][sid] = {"draft": mid, "size": size, "next": 0, "token": token,
                                      "path": store, "item": item, "done": False}
            draft["sessions"].append(sid)
        record({"path": where, "status": 201, "size": size})
        self.answer(201, {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": f"https://127.0.0.1:{args.port}/upload/{sid}?authtoken={token}",
            "expirationDateTime": "2030-01-01T00:00:00.0000000Z",
            "nextExpectedRanges": ["0-"]})

    def put_range(self, split):
        where = "PUT upload"
        sid = split.path[len("/upload/"):]
        query = urllib.parse.parse_qs(split.query)
        with lock:
            session = state["sessions"].get(sid)
            state["puts"] += 1
            n_put = state["puts"]
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            violation(f"{where}: Content-Length {length!r}")
            self.close_connection = True
            self.answer(400, {"error": {"code": "InvalidRequest", "message": "Content-Length"}})
            return
        length = int(length)
        if length >= MAX_REQUEST:
            violation(f"{where}: {length} octets, not under 4 MB")
            self.close_connection = True
            self.answer(413, {"error": {"code": "RequestEntityTooLarge", "message": "too large"}})
            return
        body = self.rfile.read(length)
        if "Authorization" in self.headers:
            violation(f"{where}: an Authorization header on the pre-authenticated upload URL")
        if self.headers.get("Content-Type") != "application/octet-stream":
            violation(f"{where}: Content-Type {self.headers.get('Content-Type')!r}, not application/octet-stream")
        if session is None or query.get("authtoken") != [session["token"]]:
            violation(f"{where}: an upload URL this server did not give out: {self.path}")
            self.answer(404, {"error": {"code": "ErrorItemNotFound", "message": "no such session"}})
            return
        if session["done"]:
            violation(f"{where}: a PUT after the last range")
        crange = self.headers.get("Content-Range", "")
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", crange)
        if not m:
            violation(f"{where}: Content-Range {crange!r} is not 'bytes start-end/total'")
            self.answer(400, {"error": {"code": "InvalidRange", "message": crange}})
            return
        start, end, total = (int(g) for g in m.groups())
        if total != session["size"]:
            violation(f"{where}: total {total}, but the session's size is {session['size']}")
        if start != session["next"]:
            violation(f"{where}: range starts at {start}, expected {session['next']}")
        if end < start or end >= total:
            violation(f"{where}: range {start}-{end} of {total}")
        if end - start + 1 != length:
            violation(f"{where}: Content-Length {length} for a range of {end - start + 1}")
        if args.fail_put and n_put == args.fail_put:
            record({"path": where, "status": 503})
            self.answer(503, {"error": {"code": "ServiceUnavailable", "message": "try later"}},
                        [("Retry-After", "1")])
            return
        with open(session["path"], "ab") as f:
            f.write(body)
        with lock:
            session["next"] = start + len(body)
            last = session["next"] >= total
        record({"path": where, "status": 201 if last else 200, "start": start, "end": end,
                "length": length})
        if not last:
            self.answer(200, {"expirationDateTime": "2030-01-01T00:00:00.0000000Z",
                              "nextExpectedRanges": [str(session["next"])]})
            return
        with lock:
            session["done"] = True
            draft = state["drafts"].get(session["draft"])
            item = session["item"]
            if draft is not None:
                draft["attachments"].append({"name": item.get("name"), "contentType": item.get("contentType"),
                                             "isInline": item.get("isInline"), "contentId": item.get("contentId"),
                                             "file": session["path"], "how": "upload"})
        self.answer(201, b"", [("Location", f"https://127.0.0.1:{args.port}/v1.0/users/{args.mailbox}/messages/{session['draft']}/attachments/{sid}")])

    def send_draft(self, parts):
        where = "sendDraft"
        length = self.headers.get("Content-Length")
        if length != "0":
            violation(f"{where}: Content-Length {length!r}, not 0")
            self.body()
        if not self.authorised(where) or not self.mailbox_ok(parts, where):
            return
        mid, draft = self.draft_of(parts, where)
        if draft is None:
            return
        with lock:
            open_sessions = [s for s in draft["sessions"] if not state["sessions"][s]["done"]]
            state["drafts"].pop(mid, None)
            state["mail"] += 1
            n = state["mail"]
        if open_sessions:
            violation(f"{where}: sent with {len(open_sessions)} upload session(s) unfinished")
        listing = []
        for k, att in enumerate(draft["attachments"]):
            target = os.path.join(args.dir, "attachments", f"{n:05}-{k}")
            if "file" in att:
                os.rename(att.pop("file"), target)
            else:
                with open(target, "wb") as f:
                    f.write(att.pop("data"))
            att["size"] = os.path.getsize(target)
            listing.append(att)
        with open(os.path.join(args.dir, "attachments", f"{n:05}.json"), "w") as f:
            json.dump(listing, f)
        with open(os.path.join(args.dir, "mail", f"{n:05}.eml"), "wb") as f:
            f.write(draft["mime"])
        remember_sent(draft["mime"])
        record({"path": where, "status": 202, "n": n})
        self.answer(202, b"")

    def delete_draft(self, parts):
        where = "deleteDraft"
        if self.headers.get("Content-Length") not in (None, "0"):
            self.body()
        if not self.authorised(where) or not self.mailbox_ok(parts, where):
            return
        mid, draft = self.draft_of(parts, where)
        if draft is None:
            return
        with lock:
            state["drafts"].pop(mid, None)
        record({"path": where, "status": 204})
        self.answer(204, b"")

    def send_mail(self, path):
        where = "sendMail"
        with lock:
            state["send_requests"] += 1
        self.enter()
        try:
            self.send_mail_checked(path, where)
        finally:
            self.leave()

    def send_mail_checked(self, path, where):
        mailbox = urllib.parse.unquote(path[len("/v1.0/users/"):-len("/sendMail")])
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            violation(f"{where}: {length} octets, over 4 MB")
            self.close_connection = True
            self.answer(413, {"error": {"code": "ErrorMessageSizeExceeded", "message": "too large"}})
            return
        body = self.body()
        if self.headers.get("Content-Type") != "text/plain":
            violation(f"{where}: Content-Type {self.headers.get('Content-Type')!r}, not text/plain")
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        if token is None:
            violation(f"{where}: Authorization {auth[:20]!r} is not Bearer")
        with lock:
            until = state["tokens"].get(token)
            storm = state["storm_left"] > 0
            if storm:
                state["storm_left"] -= 1
        if until is None and token is not None:
            violation(f"{where}: a token the endpoint never issued")
        if until is None or time.monotonic() > until:
            record({"path": "sendMail", "status": 401})
            self.answer(401, {"error": {"code": "InvalidAuthenticationToken",
                                        "message": "Lifetime validation failed, the token is expired."}})
            return
        try:
            message = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as e:
            violation(f"{where}: the body is not strict base64: {e}")
            self.answer(400, {"error": {"code": "ErrorMimeContentInvalidBase64String",
                                        "message": "Invalid base64 string for MIME content."}})
            return
        if base64.b64encode(message) != body:
            violation(f"{where}: the base64 is not canonical (line breaks or padding)")
        if mailbox.lower() != args.mailbox.lower():
            record({"path": "sendMail", "status": 404})
            self.answer(404, {"error": {"code": "ErrorInvalidUser",
                                        "message": f"The requested user '{mailbox}' is invalid."}})
            return
        if "Mail.Send" not in ROLES:
            record({"path": "sendMail", "status": 403})
            self.answer(403, {"error": {"code": "ErrorAccessDenied",
                                        "message": "Access is denied. Check credentials and try again."}})
            return
        if not message:
            record({"path": "sendMail", "status": 400})
            self.answer(400, {"error": {"code": "ErrorMimeContentInvalid",
                                        "message": "The MIME content is empty."}})
            return
        check_header(message, where)
        if args.delay:
            time.sleep(args.delay / 1000.0)
        header = message.split(b"\r\n\r\n", 1)[0]
        if storm:
            record({"path": "sendMail", "status": 429})
            self.answer(429, {"error": {"code": "ApplicationThrottled",
                                        "message": "Application is over its MailboxConcurrency limit."}},
                        [("Retry-After", str(args.retry_after))])
            return
        if b"BAD400" in header:
            record({"path": "sendMail", "status": 400})
            self.answer(400, {"error": {"code": "ErrorInvalidRecipients",
                                        "message": "At least one recipient is not valid., Recipient 'nobody@nowhere.invalid' is not resolved."}})
            return
        with lock:
            state["mail"] += 1
            n = state["mail"]
        with open(os.path.join(args.dir, "mail", f"{n:05}.eml"), "wb") as f:
            f.write(message)
        remember_sent(message)
        record({"path": "sendMail", "status": 202, "n": n})
        self.leave()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    global args, APP_PUBLIC, APP_X5T_S256, APP_X5T, GOOGLE_KEY, GOOGLE_PUBLIC
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--app-cert")
    p.add_argument("--google-key")
    p.add_argument("--tenant", default="contoso.example")
    p.add_argument("--client-id", default="11111111-2222-3333-4444-555555555555")
    p.add_argument("--mailbox", default="printer@contoso.example")
    p.add_argument("--expires-in", type=int, default=3600)
    p.add_argument("--token-accept", type=float, default=3600)
    p.add_argument("--storm", type=int, default=0)
    p.add_argument("--retry-after", type=int, default=1)
    p.add_argument("--delay", type=int, default=0)
    p.add_argument("--revoked", action="store_true")
    p.add_argument("--roles", default="Mail.Send,Mail.ReadWrite")
    p.add_argument("--fail-put", type=int, default=0)
    p.add_argument("--scope", default=GRAPH_SCOPE)
    p.add_argument("--trace-fail-to")
    args = p.parse_args()
    global ROLES
    ROLES = [r for r in args.roles.split(",") if r]
    for sub in ("mail", "attachments", "sessions"):
        os.makedirs(os.path.join(args.dir, sub), exist_ok=True)
    open(os.path.join(args.dir, "violations"), "a").close()
    state["storm_left"] = args.storm
    if args.app_cert:
        APP_PUBLIC = public_key_of_certificate(args.app_cert)
        APP_X5T_S256, APP_X5T = certificate_thumbprints(args.app_cert)
    if args.google_key:
        GOOGLE_KEY = json.load(open(args.google_key))
        GOOGLE_PUBLIC = public_key_of_private_key(GOOGLE_KEY["private_key"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    args.port = server.server_address[1]
    with open(os.path.join(args.dir, "port.new"), "w") as f:
        f.write(str(args.port))
    os.rename(os.path.join(args.dir, "port.new"), os.path.join(args.dir, "port"))
    server.serve_forever()


if __name__ == "__main__":
    main()
