"""A real OCI registry for the image tests, and the tools to fill it by hand.

The node pulls images over the Registry HTTP API v2; to test that against something that is
not our own code, this module runs Debian's `docker-registry` (distribution v2.8, the
reference implementation Docker Hub grew from) on a loopback port with throw-away storage,
optionally behind htpasswd (Basic) or bearer-token authentication. The token server is ours
(a few dozen lines below), but the registry verifies its tokens with its own code, so a
client that gets the Docker token dance wrong fails here as it would against a real registry.

- `Registry(auth=None|"htpasswd"|"token")`: the running registry (`.host`, `.url`,
  `.log_path`, `.credentials`, `.stop()`, a context manager). `blob_requests(digest)` counts
  the blob GETs it served, from its access log, so a test can assert each blob was fetched
  once; `access_log()` gives every request it logged.
- `push_layers`, `push_index`, `push_manifest_raw`, `push_blob`, `get_manifest`: the v2 API
  spoken directly with `requests` (monolithic blob uploads, manifests by tag), for images that
  no tool would build: zstd layers, wrong digests, hand-made indexes, hostile tar entries.
- `tar_layer(entries)` with `File`, `Dir`, `Symlink`, `Hardlink`, `Device`, `Fifo`,
  `Whiteout`, `Opaque`: layers crafted with `tarfile`. Every path is written verbatim (no
  normalisation), so `../x`, `/abs`, `.wh.name` and `.wh..wh..opq` are whatever a test says.

Images built with independent tools (busybox, umoci, mmdebstrap, skopeo) are in
`image_fixtures.py`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable, Union

import requests

REGISTRY_BIN = "docker-registry"  # Debian package docker-registry (distribution 2.8)
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 120.0

# Media types.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

#: The `Accept` header of a client that takes every manifest kind above.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Auth = Union[tuple[str, str], None]


class ToolMissing(RuntimeError):
    """A program the fixtures need is not installed (CI installs it from `.ci/run`)."""


def require_tool(binary: str, package: str) -> str:
    """The path of `binary`, or a ToolMissing naming the Debian package that provides it."""
    path = shutil.which(binary)
    if path is None:
        raise ToolMissing(
            f"`{binary}` not found: install the Debian package {package} "
            f"(apt-get install {package}; .ci/run does this on CI)"
        )
    return path


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never through a proxy, never with a netrc
    return s


# ---------------------------------------------------------------------------------------------
# the token server


@dataclass
class TokenRequest:
    """One request the token server answered (for tests asserting how a client authenticated)."""

    method: str
    user: str | None  # the Basic user name, None when there were no (valid) credentials
    service: str | None
    scopes: list[str]
    status: int


class TokenServer:
    """A Docker token server (https://distribution.github.io/distribution/spec/auth/token/):
    `GET /token?service=S&scope=repository:NAME:pull,push` with Basic credentials answers
    `{"token", "access_token", "expires_in", "issued_at"}`; without valid credentials 401.
    The OAuth2 form (`POST /token`, grant_type=password) is accepted too.

    Tokens are RS256 JWTs whose header carries the signing certificate as `x5c` (which
    distribution 2.8 verifies against its `rootcertbundle`, here that same self-signed
    certificate) and, for clients that look, the libtrust `kid` of the key. Every requested
    action is granted to a valid user: the tests are about the protocol, not about policy.
    """

    def __init__(self, username: str, password: str, service: str, issuer: str, dir: Path,
                 expires_in: int = 300):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.x509.oid import NameOID

        self.username, self.password = username, password
        self.service, self.issuer = service, issuer
        self.expires_in = expires_in
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        now = _dt.datetime.now(_dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = Path(dir) / "token-signing.crt"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._header = {
            "typ": "JWT",
            "alg": "RS256",
            "kid": self.libtrust_key_id(spki),
            "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        self._sign = lambda data: self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the requests are recorded instead
                pass

            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                server._answer(self, "GET", self._basic_user(), q)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode(errors="replace"))
                user = self._basic_user()
                if user is None and form.get("grant_type") == ["password"]:
                    if (form.get("username", [None])[0], form.get("password", [None])[0]) == (
                        server.username, server.password):
                        user = server.username
                server._answer(self, "POST", user, form)

            def _basic_user(self) -> str | None:
                header = self.headers.get("Authorization") or ""
                if not header.lower().startswith("basic "):
                    return None
                try:
                    user, _, pw = base64.b64decode(header[6:].strip()).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    return None
                return user if (user, pw) == (server.username, server.password) else None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="token-server",
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def libtrust_key_id(spki_der: bytes) -> str:
        """The key id distribution (libtrust) computes for a public key: the first 240 bits of
        the SHA-256 of its DER SubjectPublicKeyInfo, base32, in 12 groups of 4 joined by ':'."""
        b32 = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode()
        return ":".join(b32[i:i + 4] for i in range(0, 48, 4))

    def issue(self, subject: str, scopes: Iterable[str]) -> str:
        """A signed token granting `scopes` ("repository:NAME:pull,push") to `subject`."""
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            # The name may itself hold a ':' (a registry host with a port); actions are last.
            rtype, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": rtype, "name": name,
                           "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (_b64url(json.dumps(self._header, separators=(",", ":")).encode()) + "."
                         + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        return signing_input + "." + _b64url(self._sign(signing_input.encode()))

    def _answer(self, h: BaseHTTPRequestHandler, method: str, user: str | None,
                q: dict[str, list[str]]) -> None:
        service = (q.get("service") or [None])[0]
        # `scope` may repeat, and one value may hold several space-separated scopes.
        scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
        if user is None:
            status, body = 401, {"errors": [{"code": "UNAUTHORIZED",
                                             "message": "valid credentials required"}]}
        elif service != self.service:
            status, body = 400, {"errors": [{"code": "INVALID_REQUEST",
                                             "message": f"unknown service {service!r}"}]}
        else:
            token = self.issue(user, scopes)
            status, body = 200, {
                "token": token,
                "access_token": token,
                "expires_in": self.expires_in,
                "issued_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        with self._lock:
            self.requests.append(TokenRequest(method, user, service, scopes, status))
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if status == 401:
            h.send_header("WWW-Authenticate", 'Basic realm="ai2in-test-token-server"')
        h.end_headers()
        h.wfile.write(data)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# ---------------------------------------------------------------------------------------------
# the registry


@dataclass
class AccessEntry:
    """One line of the registry's access log (Apache combined format)."""

    method: str
    path: str  # with its query string
    status: int
    size: int
    user_agent: str


_ACCESS_RE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "[^"]*" "(?P<ua>[^"]*)"'
)
_BLOB_PATH_RE = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+:[A-Za-z0-9=_-]+)$")


class Registry:
    """`docker-registry serve` on 127.0.0.1:<free port>, storage in a temp dir, plain HTTP.

    `auth`: None (anonymous pull and push), "htpasswd" (Basic, `username`/`password`) or
    "token" (Bearer tokens from `self.token_server`, which wants `username`/`password`).
    The registry's output (its own log and the access log, one line per request) goes to
    `log_path`. `refs` and `digests` are filled by `image_fixtures.push_all`.
    """

    SERVICE = "ai2in-test-registry"
    ISSUER = "ai2in-test-token-server"

    def __init__(self, auth: str | None = None, username: str = "ai2in-test",
                 password: str = "pull-secret-e2e", token_expires_in: int = 300):
        if auth not in (None, "htpasswd", "token"):
            raise ValueError(f"auth must be None, 'htpasswd' or 'token', not {auth!r}")
        self.binary = require_tool(REGISTRY_BIN, "docker-registry")
        self.auth = auth
        self.username, self.password = username, password
        self.dir = Path(tempfile.mkdtemp(prefix="ai2in-registry-"))
        self.log_path = str(self.dir / "registry.log")
        self.config_path = self.dir / "config.yml"
        self.token_server: TokenServer | None = None
        self.proc: subprocess.Popen | None = None
        self.refs: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self._token_expires_in = token_expires_in
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    @property
    def credentials(self) -> Auth:
        """(user, password) for an auth registry, None for the anonymous one."""
        return (self.username, self.password) if self.auth else None

    # -- process ----------------------------------------------------------------------------

    def _config(self, port: int) -> str:
        storage = self.dir / "storage"
        storage.mkdir(exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",  # `info` writes a "response completed" line per request too
            "  formatter: text",
            "  accesslog:",
            "    disabled: false",  # one Apache combined line per request: blob_requests
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.auth == "htpasswd":
            htpasswd = require_tool("htpasswd", "apache2-utils")
            out = subprocess.run([htpasswd, "-Bbn", self.username, self.password],
                                 capture_output=True, text=True, check=True, timeout=30)
            path = self.dir / "htpasswd"
            path.write_text(out.stdout.strip() + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: ai2in-test-registry",
                      f"    path: {path}"]
        elif self.auth == "token":
            if self.token_server is None:
                self.token_server = TokenServer(self.username, self.password, self.SERVICE,
                                                self.ISSUER, self.dir, self._token_expires_in)
            ts = self.token_server
            lines += ["auth:", "  token:", f"    realm: {ts.realm}", f"    service: {ts.service}",
                      f"    issuer: {ts.issuer}", f"    rootcertbundle: {ts.cert_path}"]
        return "\n".join(lines) + "\n"

    def _start(self) -> None:
        # The port is picked before the registry binds it: retry if another process took it.
        for attempt in range(3):
            port = _free_port()
            self.host = f"127.0.0.1:{port}"
            self.url = f"http://{self.host}"
            self.config_path.write_text(self._config(port))
            with open(self.log_path, "ab") as log:
                log.write(f"===== e2e: {self.binary} serve {self.config_path} "
                          f"at {time.ctime()} =====\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [self.binary, "serve", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.dir, start_new_session=True,
                )
            if self._wait_ready():
                return
            if "address already in use" not in self.log_tail() or attempt == 2:
                break
        tail = self.log_tail()
        raise RuntimeError(f"docker-registry did not start (GET /v2/ within {START_TIMEOUT:.0f} s)."
                           f"\n--- {self.log_path} (tail) ---\n{tail}")

    def _wait_ready(self) -> bool:
        s = _session()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                # 200 anonymous, 401 with auth: either way the API is up.
                if s.get(self.url + "/v2/", timeout=2).status_code in (200, 401):
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.05)
        return False

    def stop(self, remove: bool | None = None) -> None:
        """Stops the registry and the token server; removes the temp dir (storage, log) unless
        AI2IN_E2E_KEEP is set or `remove=False`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None
        if remove is None:
            remove = not os.environ.get("AI2IN_E2E_KEEP")
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Registry({self.host}, auth={self.auth})"

    # -- the log ----------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def access_log(self) -> list[AccessEntry]:
        """Every request in the access log so far, oldest first."""
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return []
        entries = []
        for line in text.splitlines():
            m = _ACCESS_RE.match(line)
            if m:
                size = m["size"]
                entries.append(AccessEntry(m["method"], m["path"], int(m["status"]),
                                           0 if size == "-" else int(size), m["ua"]))
        return entries

    def blob_requests(self, digest: str, name: str | None = None,
                      statuses: Iterable[int] | None = (200, 206), settle: float = 0.3) -> int:
        """How many `GET /v2/<name>/blobs/<digest>` the registry served (status 200 or 206 by
        default; `statuses=None` counts every answer, 404 and 401 included), in any
        repository unless `name` is given. HEADs are not counted.

        The access log line is written once the response is complete, which can be just
        after the client has read the last byte, so the count is read until it has not
        changed for `settle` seconds."""
        wanted = None if statuses is None else set(statuses)

        def count() -> int:
            n = 0
            for e in self.access_log():
                if e.method != "GET":
                    continue
                m = _BLOB_PATH_RE.match(urllib.parse.urlsplit(e.path).path)
                if m is None or m["digest"] != digest or (name is not None and m["name"] != name):
                    continue
                if wanted is None or e.status in wanted:
                    n += 1
            return n

        last = count()
        deadline = time.monotonic() + 5
        stable_since = time.monotonic()
        while time.monotonic() - stable_since < settle and time.monotonic() < deadline:
            time.sleep(0.05)
            now = count()
            if now != last:
                last, stable_since = now, time.monotonic()
        return last


# ---------------------------------------------------------------------------------------------
# the v2 API, spoken directly


class RegistryClient:
    """Requests to one registry with the auth dance done: on a 401 it follows the challenge,
    Basic (the credentials) or Bearer (a token from the realm for the challenge's scope, kept
    per scope), and retries once."""

    def __init__(self, host: str, auth: Auth = None):
        self.base = f"http://{host}"
        self.auth = auth
        self.session = _session()
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic = False

    def request(self, method: str, url: str, scope: str, **kw) -> requests.Response:
        url = urllib.parse.urljoin(self.base, url)
        kw.setdefault("timeout", HTTP_TIMEOUT)
        headers = dict(kw.pop("headers", None) or {})
        r = self.session.request(method, url, headers={**headers, **self._auth_header(scope)}, **kw)
        if r.status_code != 401:
            return r
        challenge = r.headers.get("WWW-Authenticate", "")
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic" and self.auth:
            self._basic = True
        elif scheme == "bearer" and "realm" in params:
            self._tokens[scope] = self._fetch_token(params, scope)
        else:
            return r
        return self.session.request(method, url, headers={**headers, **self._auth_header(scope)},
                                    **kw)

    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.auth:
            user, pw = self.auth
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}
        return {}

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        query = {"scope": params.get("scope", scope)}
        if "service" in params:
            query["service"] = params["service"]
        r = self.session.get(params["realm"], params=query, auth=self.auth, timeout=HTTP_TIMEOUT)
        if r.status_code != 200:
            raise RuntimeError(f"token server {params['realm']} → {r.status_code} {r.text}")
        body = r.json()
        return body.get("token") or body["access_token"]


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` → ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _check(r: requests.Response, what: str, *ok: int) -> requests.Response:
    if r.status_code not in ok:
        raise RuntimeError(f"{what} → {r.status_code} {r.text[:2000]}")
    return r


def push_blob(registry_host: str, name: str, data: bytes, auth: Auth = None,
              client: RegistryClient | None = None) -> str:
    """Uploads `data` as a blob of repository `name` (POST an upload, PUT ?digest=, one piece)
    unless the registry has it already; returns its digest."""
    c = client or RegistryClient(registry_host, auth)
    scope = f"repository:{name}:pull,push"
    digest = sha256_digest(data)
    if c.request("HEAD", f"/v2/{name}/blobs/{digest}", scope).status_code == 200:
        return digest
    r = _check(c.request("POST", f"/v2/{name}/blobs/uploads/", scope),
               f"POST /v2/{name}/blobs/uploads/", 202)
    location = urllib.parse.urljoin(c.base, r.headers["Location"])
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    _check(c.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", scope,
                     data=data, headers={"Content-Type": "application/octet-stream"}),
           f"PUT blob {digest} of {name}", 201)
    return digest


def push_manifest_raw(registry_host: str, name: str, reference: str, manifest: bytes | dict,
                      media_type: str | None = None, auth: Auth = None,
                      expect: Iterable[int] = (201,)) -> requests.Response:
    """PUTs a manifest exactly as given (bytes verbatim; a dict as compact JSON) under the tag or
    digest `reference`; `media_type` defaults to the manifest's own `mediaType`. Returns the
    response, after checking its status is in `expect` (pass `expect=()` to skip the check,
    e.g. to see the registry refuse a broken manifest)."""
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest, separators=(",", ":")).encode()
    if media_type is None:
        media_type = json.loads(body).get("mediaType") or OCI_MANIFEST
    c = RegistryClient(registry_host, auth)
    r = c.request("PUT", f"/v2/{name}/manifests/{reference}", f"repository:{name}:pull,push",
                  data=body, headers={"Content-Type": media_type})
    expect = tuple(expect)
    if expect:
        _check(r, f"PUT /v2/{name}/manifests/{reference}", *expect)
    return r


def _put_manifest(registry_host: str, name: str, tag: str, manifest: dict, media_type: str,
                  auth: Auth) -> str:
    body = json.dumps(manifest, separators=(",", ":")).encode()
    r = push_manifest_raw(registry_host, name, tag, body, media_type, auth)
    digest = sha256_digest(body)
    got = r.headers.get("Docker-Content-Digest")
    if got and got != digest:
        raise RuntimeError(f"registry says the manifest is {got}, we sent {digest}")
    return digest


def compress_layer(tar: bytes, compress: str) -> bytes:
    """gzip (mtime 0, so the same tar gives the same blob), zstd, or none."""
    if compress == "gzip":
        return gzip.compress(tar, compresslevel=6, mtime=0)
    if compress == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(tar)
    if compress == "none":
        return tar
    raise ValueError(f"compress must be 'gzip', 'zstd' or 'none', not {compress!r}")


def image_config(layers: list[bytes], architecture: str = "amd64", os_: str = "linux",
                 variant: str | None = None, **config) -> dict:
    """A minimal valid image config: the platform, `config` (Env defaults to a PATH; pass
    e.g. Cmd=["/bin/sh"], WorkingDir="/x", User="1000"), and `rootfs.diff_ids` = sha256 of
    each uncompressed tar in `layers`."""
    config.setdefault("Env", [DEFAULT_PATH_ENV])
    cfg = {
        "architecture": architecture,
        "os": os_,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(t) for t in layers]},
        "history": [{"created_by": f"ai2in e2e: registry.push_layers layer {i}"}
                    for i in range(len(layers))],
    }
    if variant:
        cfg["variant"] = variant
    return cfg


def push_layers(registry_host: str, name: str, tag: str, layers: list[bytes],
                config: dict | None = None, media_type: str = "oci", compress: str = "gzip",
                auth: Auth = None) -> str:
    """Pushes an image made of `layers` (uncompressed tars, compressed here as asked) and
    `config` (default: `image_config(layers)`) through the v2 API, as an OCI (`media_type=
    "oci"`) or Docker schema 2 (`"docker"`) manifest tagged `tag`. Returns the manifest digest.
    A given `config` is pushed as is: a test can make its diff_ids lie."""
    if media_type not in ("oci", "docker"):
        raise ValueError(f"media_type must be 'oci' or 'docker', not {media_type!r}")
    if media_type == "docker" and compress == "zstd":
        raise ValueError("Docker schema 2 has no zstd layer media type")
    layer_type = {
        ("oci", "gzip"): OCI_LAYER_GZIP, ("oci", "zstd"): OCI_LAYER_ZSTD, ("oci", "none"): OCI_LAYER,
        ("docker", "gzip"): DOCKER_LAYER_GZIP, ("docker", "none"): DOCKER_LAYER,
    }[(media_type, compress)]
    c = RegistryClient(registry_host, auth)
    descriptors = []
    for tar in layers:
        blob = compress_layer(tar, compress)
        descriptors.append({"mediaType": layer_type, "size": len(blob),
                            "digest": push_blob(registry_host, name, blob, client=c)})
    config_bytes = json.dumps(config if config is not None else image_config(layers),
                              separators=(",", ":")).encode()
    manifest_type = OCI_MANIFEST if media_type == "oci" else DOCKER_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": OCI_CONFIG if media_type == "oci" else DOCKER_CONFIG,
                   "size": len(config_bytes),
                   "digest": push_blob(registry_host, name, config_bytes, client=c)},
        "layers": descriptors,
    }
    return _put_manifest(registry_host, name, tag, manifest, manifest_type, auth)


def push_index(registry_host: str, name: str, tag: str,
               manifests: list[tuple[str, int, str, dict]], media_type: str = "oci",
               auth: Auth = None) -> str:
    """Pushes an OCI index (`media_type="oci"`) or a Docker manifest list (`"docker"`) of
    `manifests` = [(digest, size, media type, platform)], e.g. platform
    {"architecture": "arm64", "os": "linux", "variant": "v8"}. The manifests must already be in
    repository `name` (distribution checks). Returns the index digest."""
    index_type = {"oci": OCI_INDEX, "docker": DOCKER_MANIFEST_LIST}[media_type]
    index = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [{"mediaType": mt, "size": size, "digest": digest, "platform": platform}
                      for digest, size, mt, platform in manifests],
    }
    return _put_manifest(registry_host, name, tag, index, index_type, auth)


def get_manifest(registry_host: str, name: str, reference: str, auth: Auth = None,
                 accept: str = MANIFEST_ACCEPT) -> tuple[dict, str, str, int]:
    """(manifest, digest, media type, size) of `name:reference` as the registry serves it."""
    c = RegistryClient(registry_host, auth)
    r = _check(c.request("GET", f"/v2/{name}/manifests/{reference}", f"repository:{name}:pull",
                         headers={"Accept": accept}),
               f"GET /v2/{name}/manifests/{reference}", 200)
    return (r.json(), sha256_digest(r.content),
            r.headers.get("Content-Type", "").split(";")[0], len(r.content))


# ---------------------------------------------------------------------------------------------
# crafted layers


@dataclass
class File:
    path: str
    content: bytes | str = b""
    mode: int = 0o644  # may carry setuid/setgid/sticky bits
    uid: int = 0
    gid: int = 0
    mtime: int = 0


@dataclass
class Dir:
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime: int = 0


@dataclass
class Symlink:
    path: str
    target: str
    uid: int = 0
    gid: int = 0


@dataclass
class Hardlink:
    path: str
    target: str  # the path of an entry earlier in the archive (or anything, to test refusal)


@dataclass
class Device:
    path: str
    kind: str = "char"  # "char" or "block"
    major: int = 1
    minor: int = 3  # 1,3 is /dev/null
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass
class Fifo:
    path: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass
class Whiteout:
    """Deletes `path` of the layers below: an empty file `<dir>/.wh.<name>`."""

    path: str


@dataclass
class Opaque:
    """Hides everything the layers below have in directory `path`: `<path>/.wh..wh..opq`."""

    path: str


@dataclass
class Raw:
    """Any tar header a test builds itself, with its data."""

    info: tarfile.TarInfo
    data: bytes = b""


Entry = Union[File, Dir, Symlink, Hardlink, Device, Fifo, Whiteout, Opaque, Raw]


def tar_layer(entries: Iterable[Entry], format: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed tar of `entries`, in order, names exactly as given ('../x', '/abs',
    'a//b' stay as they are; only a `Dir` gets the trailing '/' tar always writes). uname and
    gname are empty, so only the numeric ids count. `format`: tarfile.PAX_FORMAT (default),
    GNU_FORMAT or USTAR_FORMAT, for tests of long names and big ids."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format) as tar:
        for e in entries:
            data = b""
            if isinstance(e, Raw):
                info, data = e.info, e.data
                info.size = len(data)
            else:
                info = tarfile.TarInfo(_entry_name(e))
                info.uname = info.gname = ""
                info.uid = getattr(e, "uid", 0)
                info.gid = getattr(e, "gid", 0)
                info.mtime = getattr(e, "mtime", 0)
                if isinstance(e, File):
                    data = e.content.encode() if isinstance(e.content, str) else e.content
                    info.type, info.mode, info.size = tarfile.REGTYPE, e.mode, len(data)
                elif isinstance(e, Dir):
                    info.type, info.mode = tarfile.DIRTYPE, e.mode
                elif isinstance(e, Symlink):
                    info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, e.target
                elif isinstance(e, Hardlink):
                    info.type, info.mode, info.linkname = tarfile.LNKTYPE, 0o644, e.target
                elif isinstance(e, Device):
                    if e.kind not in ("char", "block"):
                        raise ValueError(f"Device.kind must be 'char' or 'block', not {e.kind!r}")
                    info.type = tarfile.CHRTYPE if e.kind == "char" else tarfile.BLKTYPE
                    info.mode, info.devmajor, info.devminor = e.mode, e.major, e.minor
                elif isinstance(e, Fifo):
                    info.type, info.mode = tarfile.FIFOTYPE, e.mode
                elif isinstance(e, (Whiteout, Opaque)):
                    info.type, info.mode = tarfile.REGTYPE, 0o644
                else:
                    raise TypeError(f"not a layer entry: {e!r}")
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _entry_name(e: Entry) -> str:
    if isinstance(e, Whiteout):
        parent, _, base = e.path.rstrip("/").rpartition("/")
        return f"{parent}/.wh.{base}" if parent else f".wh.{base}"
    if isinstance(e, Opaque):
        return e.path.rstrip("/") + "/.wh..wh..opq"
    return e.path
