"""A small in-memory Hugging Face Hub for tests: the HTTP API calls ``huggingface_hub``'s
``create_repo``/``upload_folder``/``snapshot_download`` and ``datasets.load_dataset`` make.

Implemented: repo create, repo info (``/api/datasets/NS/NAME[/revision/REV]``), validate-yaml,
whoami, preupload, LFS batch + PUT + verify, ndjson commit (file, lfsFile, deletedFile,
deletedFolder), tree listing (recursive), paths-info, file resolve (HEAD/GET, ranges). Bound to
127.0.0.1 on a free port; request bodies are bounded (``max_body``) and sockets time out. With
``token`` set, every write needs ``Authorization: Bearer <token>``. Legacy LFS only: run clients
with ``HF_HUB_DISABLE_XET=1``. Unknown routes answer 404 and are recorded in ``unknown``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".wav", ".npz", ".npy", ".zip", ".gz", ".tar")
LFS_MIN_BYTES = 10 * 1024 * 1024


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Entry:
    size: int
    blob_id: str
    data: bytes | None = None
    """Regular files' bytes (LFS files live in ``HubServer.lfs``)."""
    lfs_oid: str | None = None


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    files: dict[str, Entry] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    snapshots: dict[str, dict[str, Entry]] = field(default_factory=dict)
    """commit id → files at that commit."""

    @property
    def head(self) -> str:
        return self.commits[-1]


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """``with HubServer(token=...) as hub: hub.url``; state is in memory (small test data)."""

    def __init__(self, token: str | None = None, max_body: int = 256 * 1024 * 1024, user: str = "tester") -> None:
        self.token, self.max_body, self.user = token, max_body, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[str] = []
        """``METHOD path?query`` of every request (tests grep it)."""
        self.auth_headers: list[str] = []
        self.unknown: list[str] = []
        self.lfs_puts = 0
        self.fail_commits = 0
        """Answer this many next commits with 500 (an upload interrupted before its commit)."""
        self.lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "HubServer":
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- state helpers ---------------------------------------------------------------------
    def repo(self, repo_type: str, repo_id: str) -> Repo:
        r = self.repos.get((repo_type, repo_id))
        if r is None:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return r

    def files_at(self, repo: Repo, rev: str) -> tuple[str, dict[str, Entry]]:
        rev = unquote(rev)
        if rev in ("main", repo.head):
            return repo.head, repo.files
        if rev in repo.snapshots:
            return rev, repo.snapshots[rev]
        raise HubError(404, f"Revision {rev} not found", "RevisionNotFound")

    def content(self, e: Entry) -> bytes:
        return self.lfs[e.lfs_oid] if e.lfs_oid else (e.data or b"")

    def entry_json(self, repo: Repo, path: str, e: Entry) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "file", "oid": e.blob_id, "size": e.size, "path": path}
        if e.lfs_oid:
            d["lfs"] = {"oid": e.lfs_oid, "size": e.size, "pointerSize": 134}
        return d

    def commit(self, repo: Repo, lines: list[dict[str, Any]]) -> str:
        header = next((x["value"] for x in lines if x.get("key") == "header"), {})
        parent = header.get("parentCommit")
        if parent and parent != repo.head:
            raise HubError(412, "parent commit is not the head of the branch")
        files = dict(repo.files)
        for x in lines:
            k, v = x.get("key"), x.get("value", {})
            if k == "file":
                data = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else v["content"].encode()
                files[v["path"]] = Entry(len(data), git_blob_id(data), data=data)
            elif k == "lfsFile":
                oid = v["oid"]
                if oid not in self.lfs:
                    raise HubError(422, f"LFS object {oid} was not uploaded")
                data = self.lfs[oid]
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()
                files[v["path"]] = Entry(len(data), git_blob_id(pointer), lfs_oid=oid)
            elif k == "deletedFile":
                if v["path"] not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {v['path']}", "EntryNotFound")
                del files[v["path"]]
            elif k == "deletedFolder":
                pre = v["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(pre)]:
                    del files[p]
            elif k != "header":
                raise HubError(400, f"unknown commit operation {k!r}")
        oid = hashlib.sha1(json.dumps([repo.head, header, sorted((p, e.blob_id) for p, e in files.items()), time.time_ns()]).encode()).hexdigest()
        repo.files = files
        repo.commits.append(oid)
        repo.snapshots[oid] = files
        return oid


_REPO = r"(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+?)"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: HubServer
    timeout = 30

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # -- plumbing --------------------------------------------------------------------------
    def _body(self) -> bytes:
        hub = self.server_hub
        self._consumed = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                if len(out) + size > hub.max_body:
                    self._consumed = False
                    raise HubError(413, "request body too large")
                out += self.rfile.read(size)
                self.rfile.readline()
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        if n > hub.max_body:
            self._consumed = False
            raise HubError(413, "request body too large")
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body and self.command != "HEAD":  # a HEAD answer never has a body
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _auth(self, write: bool) -> None:
        hub = self.server_hub
        h = self.headers.get("Authorization", "")
        if h:
            hub.auth_headers.append(h)
        if write and hub.token and h != f"Bearer {hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def _dispatch(self, method: str) -> None:
        hub = self.server_hub
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        hub.requests.append(f"{method} {self.path}")
        self._consumed = False
        try:
            with hub.lock:
                self._route(method, path, query)
        except HubError as e:
            hdr = {"X-Error-Code": e.code} if e.code else {}
            hdr["X-Error-Message"] = e.message
            if not self._consumed and method in ("POST", "PUT"):
                # an unread body would be parsed as the next request: close after answering
                hdr["Connection"] = "close"
                self.close_connection = True
            self._json(e.status, {"error": e.message}, headers=hdr)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # -- routes ----------------------------------------------------------------------------
    def _route(self, method: str, path: str, q: dict[str, list[str]]) -> None:
        hub = self.server_hub
        m = None

        def match(pattern: str) -> bool:
            nonlocal m
            m = re.fullmatch(pattern, path)
            return m is not None

        if method == "POST" and path == "/api/repos/create":
            self._auth(write=True)
            body = json.loads(self._body() or b"{}")
            typ = body.get("type") or "model"
            name, org = body["name"], body.get("organization") or hub.user
            repo_id = f"{org}/{name}"
            prefix = "" if typ == "model" else f"{typ}s/"
            if (typ, repo_id) in hub.repos:  # the Hub answers 409 with the repo's url
                return self._json(409, {"error": "You already created this repo", "url": f"{hub.url}/{prefix}{repo_id}"}, headers={"X-Error-Message": "You already created this repo"})
            r = Repo(typ, repo_id, bool(body.get("private") or body.get("visibility") == "private"))
            oid = hashlib.sha1(f"init {typ} {repo_id}".encode()).hexdigest()
            r.commits.append(oid)
            r.snapshots[oid] = {}
            hub.repos[(typ, repo_id)] = r
            return self._json(200, {"url": f"{hub.url}/{prefix}{repo_id}", "name": repo_id})
        if method == "POST" and path == "/api/validate-yaml":
            self._auth(write=False)
            body = json.loads(self._body() or b"{}")
            import yaml

            content = body.get("content", "")
            mt = re.match(r"^---\n(.*?)\n---\n", content, re.S)
            try:
                yaml.safe_load(mt.group(1)) if mt else None
            except yaml.YAMLError as e:
                return self._json(400, {"errors": [{"message": str(e)}], "warnings": []})
            return self._json(200, {"errors": [], "warnings": []})
        if method == "GET" and path == "/api/whoami-v2":
            self._auth(write=True)
            return self._json(200, {"type": "user", "name": hub.user, "orgs": [], "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if match(rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?"):
            self._auth(write=False)
            repo = hub.repo(m["type"][:-1], m["repo"])
            sha, files = hub.files_at(repo, m["rev"] or "main")
            siblings = [{"rfilename": p, "size": e.size, **({"lfs": {"sha256": e.lfs_oid, "size": e.size, "pointerSize": 134}} if e.lfs_oid else {})} for p, e in sorted(files.items())]
            return self._json(200, {"id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": sha, "private": repo.private, "siblings": siblings,
                                    "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0,
                                    "gated": False, "disabled": False, "cardData": {}})  # fmt: skip
        if method == "POST" and match(rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)"):
            self._auth(write=True)
            repo = hub.repo(m["type"][:-1], m["repo"])
            _, files = hub.files_at(repo, m["rev"])
            body = json.loads(self._body() or b"{}")
            res = []
            for f in body.get("files", []):
                lfs = f["path"].endswith(LFS_SUFFIXES) or int(f.get("size", 0)) >= LFS_MIN_BYTES
                e = files.get(f["path"])
                oid = (e.lfs_oid if lfs else e.blob_id) if e is not None else None
                res.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
            return self._json(200, {"files": res, "commitOid": repo.head})
        if method == "POST" and match(rf"/api/{_REPO}/commit/(?P<rev>[^/]+)"):
            self._auth(write=True)
            repo = hub.repo(m["type"][:-1], m["repo"])
            hub.files_at(repo, m["rev"])
            lines = [json.loads(x) for x in self._body().splitlines() if x.strip()]
            if hub.fail_commits > 0:
                hub.fail_commits -= 1
                raise HubError(500, "simulated failure before the commit")
            oid = hub.commit(repo, lines)
            prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
            return self._json(200, {"commitUrl": f"{hub.url}/{prefix}{repo.repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None, "success": True})
        if method == "GET" and match(rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"):
            self._auth(write=False)
            repo = hub.repo(m["type"][:-1], m["repo"])
            _, files = hub.files_at(repo, m["rev"])
            base = (m["path"] or "").strip("/")
            recursive = q.get("recursive", ["false"])[0].lower() in ("1", "true")
            pre = base + "/" if base else ""
            if base and base in files:
                raise HubError(404, f"{base} is a file", "EntryNotFound")
            if base and not any(p.startswith(pre) for p in files):
                raise HubError(404, f"{base} does not exist", "EntryNotFound")
            out, dirs = [], set()
            for p, e in sorted(files.items()):
                if not p.startswith(pre):
                    continue
                rest = p[len(pre) :].split("/")
                for k in range(1, len(rest)):
                    d = pre + "/".join(rest[:k])
                    if (recursive or k == 1) and d not in dirs:
                        dirs.add(d)
                        out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
                if recursive or len(rest) == 1:
                    out.append(hub.entry_json(repo, p, e))
            return self._json(200, out)
        if method == "POST" and match(rf"/api/{_REPO}/paths-info/(?P<rev>[^/]+)"):
            self._auth(write=False)
            repo = hub.repo(m["type"][:-1], m["repo"])
            _, files = hub.files_at(repo, m["rev"])
            raw = self._body()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(raw or b"{}").get("paths", [])
            else:
                paths = parse_qs(raw.decode()).get("paths", [])
            out = []
            for p in paths:
                p = p.strip("/")
                if p in files:
                    out.append(hub.entry_json(repo, p, files[p]))
                elif any(x.startswith(p + "/") for x in files) or p == "":
                    out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
            return self._json(200, out)
        if method == "POST" and match(rf"/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+?)\.git/info/lfs/objects/batch"):
            self._auth(write=True)
            hub.repo((m["type"] or "models")[:-1], m["repo"])
            body = json.loads(self._body() or b"{}")
            objs = []
            for o in body.get("objects", []):
                oid, size = o["oid"], int(o["size"])
                if oid in hub.lfs:
                    objs.append({"oid": oid, "size": size})  # already there: no actions, nothing to send
                else:
                    objs.append({"oid": oid, "size": size, "authenticated": True,
                                 "actions": {"upload": {"href": f"{hub.url}/_lfs/{oid}?size={size}"}, "verify": {"href": f"{hub.url}/_lfs/{oid}/verify"}}})  # fmt: skip
            return self._send(200, json.dumps({"transfer": "basic", "objects": objs}).encode(), ctype="application/vnd.git-lfs+json")
        if method == "PUT" and match(r"/_lfs/(?P<oid>[0-9a-f]{64})"):
            data = self._body()
            if hashlib.sha256(data).hexdigest() != m["oid"]:
                raise HubError(400, "sha256 mismatch")
            hub.lfs[m["oid"]] = data
            hub.lfs_puts += 1
            return self._send(200)
        if method == "POST" and match(r"/_lfs/(?P<oid>[0-9a-f]{64})/verify"):
            self._body()
            if m["oid"] not in hub.lfs:
                raise HubError(404, "object not uploaded")
            return self._json(200, {})
        if method in ("GET", "HEAD") and match(rf"/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+?)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"):
            self._auth(write=False)
            repo = hub.repo((m["type"] or "models")[:-1], m["repo"])
            sha, files = hub.files_at(repo, m["rev"])
            p = unquote(m["path"])
            e = files.get(p)
            if e is None:
                raise HubError(404, f"Entry not found: {p}", "EntryNotFound")
            data = hub.content(e)
            etag = f'"{e.lfs_oid or e.blob_id}"'
            hdr = {"X-Repo-Commit": sha, "ETag": etag, "Accept-Ranges": "bytes"}
            if e.lfs_oid:
                hdr.update({"X-Linked-Etag": etag, "X-Linked-Size": str(e.size)})
            rng = self.headers.get("Range")
            if rng and method == "GET":
                mr = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                if mr:
                    a = int(mr[1]) if mr[1] else max(0, len(data) - int(mr[2] or 0))
                    b = int(mr[2]) if (mr[2] and mr[1]) else len(data) - 1
                    b = min(b, len(data) - 1)
                    hdr["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
                    return self._send(206, data[a : b + 1], ctype="application/octet-stream", headers=hdr)
            return self._send(200, data, ctype="application/octet-stream", headers=hdr, head=method == "HEAD")
        hub.unknown.append(f"{method} {path}")
        if method in ("POST", "PUT"):
            self._body()
        raise HubError(404, f"not implemented by the test hub: {method} {path}")
