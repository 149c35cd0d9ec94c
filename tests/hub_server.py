"""A small Hub-compatible HTTP server for tests: the endpoints the real `huggingface_hub` client calls to create a
repository, upload and commit files, list them and download them. Repositories live in memory; every file is
committed inline ("regular" upload mode), so no LFS or Xet storage is involved. A test fixture, not a package
feature.

    server = HubServer(); server.start(); os.environ["HF_ENDPOINT"] = server.url  (before huggingface_hub loads)
"""

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

PREFIX = {"model": "", "dataset": "datasets/"}
API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/(revision|preupload|commit|tree|paths-info)"
                 r"(?:/([^/]+))?(/.*)?)?$")
RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class Repository:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.sha = hashlib.sha1(b"empty").hexdigest()

    def commit(self, changes: dict[str, bytes | None]):
        for path, content in changes.items():
            if content is None:
                self.files.pop(path, None)
            else:
                self.files[path] = content
        self.sha = hashlib.sha1((self.sha + json.dumps(sorted(changes))).encode()).hexdigest()

    def entries(self, prefix: str = "", recursive: bool = True) -> list[dict]:
        prefix = prefix.strip("/")
        folders, files = set(), []
        for path, content in sorted(self.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:] if prefix else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add("/".join(filter(None, [prefix, *parts[:depth]])))
            if recursive or len(parts) == 1:
                files.append(file_entry(path, content))
        return [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in sorted(folders)] + files


def file_entry(path: str, content: bytes) -> dict:
    return {"type": "file", "path": path, "size": len(content), "oid": git_sha(content)}


def git_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubServer:
    def __init__(self):
        self.repos: dict[tuple[str, str], Repository] = {}
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(HubHandler):
            hub = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()


class HubHandler(BaseHTTPRequestHandler):
    hub: HubServer

    def log_message(self, *args):  # quiet test output
        pass

    # -- plumbing ------------------------------------------------------------------------------------------------------
    def reply(self, status: int, body=None, headers: dict | None = None, head: bool = False):
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                           **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def error(self, status: int, code: str, message: str, head: bool = False):
        self.reply(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}, head)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def repo(self, kind: str, repo_id: str) -> Repository | None:
        if self.headers.get("Authorization"):
            self.hub.authorizations.append(self.headers["Authorization"])
        return self.hub.repos.get((kind, repo_id))

    # -- verbs ---------------------------------------------------------------------------------------------------------
    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        url = urlparse(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        if match := RESOLVE.match(path):
            return self.resolve(match, head)
        if match := API.match(path):
            kind, repo_id, action, revision, rest = match.groups()
            repo = self.repo(kind[:-1], repo_id)
            if repo is None:
                return self.error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            if action in (None, "revision"):
                return self.reply(200, {"id": repo_id, "sha": repo.sha, "private": False, "tags": [],
                                        "siblings": [{"rfilename": p} for p in sorted(repo.files)]}, head=head)
            if action == "tree":
                recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                entries = repo.entries(rest or "", recursive)
                if rest and not entries:
                    return self.error(404, "EntryNotFound", f"{rest} not found", head)
                return self.reply(200, entries, head=head)
        self.error(404, "EntryNotFound", f"no route for GET {path}", head)

    def do_POST(self):
        path = unquote(urlparse(self.path).path)
        if path == "/api/repos/create":
            request = json.loads(self.body())
            kind = request.get("type") or "model"
            repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") \
                else request["name"]
            self.repo(kind, repo_id)
            url = f"{self.hub.url}/{PREFIX[kind]}{repo_id}"
            with self.hub.lock:
                if (kind, repo_id) in self.hub.repos:  # the Hub answers 409 with the repository's URL
                    return self.reply(409, {"error": "You already created this repo", "url": url},
                                      {"X-Error-Message": "You already created this repo"})
                self.hub.repos[(kind, repo_id)] = Repository()
            return self.reply(200, {"url": url, "name": repo_id})
        if path == "/api/validate-yaml":
            self.body()
            return self.reply(200, {"errors": [], "warnings": []})
        if not (match := API.match(path)):
            return self.error(404, "EntryNotFound", f"no route for POST {path}")
        kind, repo_id, action, revision, _ = match.groups()
        repo = self.repo(kind[:-1], repo_id)
        if repo is None:
            return self.error(404, "RepoNotFound", f"Repository {repo_id} not found")
        if action == "preupload":
            files = json.loads(self.body())["files"]
            return self.reply(200, {"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                 "oid": git_sha(repo.files[f["path"]]) if f["path"] in repo.files else None} for f in files]})
        if action == "commit":
            return self.commit(kind[:-1], repo_id, repo)
        if action == "paths-info":
            form = parse_qs(self.body().decode())
            entries = {e["path"]: e for e in repo.entries()}
            return self.reply(200, [entries[p] for p in form.get("paths", []) if p in entries])
        self.error(404, "EntryNotFound", f"no route for POST {path}")

    # -- actions -------------------------------------------------------------------------------------------------------
    def commit(self, kind: str, repo_id: str, repo: Repository):
        changes = {}
        for line in self.body().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                changes[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] in ("deletedFile", "deletedFolder"):
                changes.update({p: None for p in repo.files if p == value["path"]
                                or p.startswith(value["path"].rstrip("/") + "/")})
            elif item["key"] == "lfsFile":
                return self.error(400, "BadRequest", "this test server takes inline files only")
        with self.hub.lock:
            repo.commit(changes)
        self.reply(200, {"commitUrl": f"{self.hub.url}/{PREFIX[kind]}{repo_id}/commit/{repo.sha}",
                         "commitOid": repo.sha, "success": True})

    def resolve(self, match, head: bool):
        dataset, repo_id, revision, filename = match.groups()
        repo = self.repo("dataset" if dataset else "model", repo_id)
        if repo is None:
            return self.error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
        if filename not in repo.files:
            return self.error(404, "EntryNotFound", f"{filename} does not exist at {revision}", head)
        content = repo.files[filename]
        self.reply(200, content, {"Content-Type": "application/octet-stream", "X-Repo-Commit": repo.sha,
                                  "ETag": f'"{git_sha(content)}"'}, head)
