"""A small Hugging Face Hub on 127.0.0.1 for tests: just enough of the Hub's HTTP API for the real
huggingface_hub client's `create_repo`, `upload_folder` and `snapshot_download`, recording every request.

Endpoints (as huggingface_hub 1.x / 2.x calls them, read from its source):

* `POST /api/repos/create`: a new repository starts with the Hub's default .gitattributes (LFS for
  *.h5, *.tflite, *.onnx, ...); an existing one answers 409, which `exist_ok=True` accepts.
* `POST /api/validate-yaml`: the README's front matter must be a YAML mapping with a known licence and
  a well-formed model-index, else 400 with the errors, as the Hub refuses a bad card before the upload.
* `POST /api/models/{repo}/preupload/{rev}`: "lfs" for paths .gitattributes sends to LFS, for binary
  samples (a NUL byte) and files over 10 MB, else "regular"; with the stored oid, so unchanged files
  are skipped.
* `POST /{repo}.git/info/lfs/objects/batch` (the git-lfs batch API, "basic" transfer), `PUT` of the
  object to the upload href (sha256 and size checked), `POST` to the verify href.
* `POST /api/models/{repo}/commit/{rev}`: the ndjson commit (header, file, lfsFile, deletedFile,
  deletedFolder); a regular file that should be LFS, or an lfsFile whose object was never uploaded,
  is refused as the Hub refuses it.
* `GET /api/models/{repo}[/revision/{rev}]`, `GET /api/models/{repo}/tree/{rev}[/{path}]`,
  `HEAD`/`GET /{repo}/resolve/{rev}/{path}` (X-Repo-Commit, ETag, X-Linked-Etag / X-Linked-Size for LFS).

Writes need `Authorization: Bearer <one of tokens>`. The client must run with Xet disabled
(HF_HUB_DISABLE_XET=1): Xet's storage protocol is not implemented here, the git-lfs one is.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import hashlib
import http.server
import json
import re
import threading
import urllib.parse

import yaml

# The Hub's .gitattributes for a new model repository (its LFS lines).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
        "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
        "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
        "*.xz", "*.zip", "*.zst", "*tfevents*"))
REGULAR_MAX_BYTES = 10 * 1024 * 1024
KNOWN_LICENSES = ("apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-nc-4.0", "gpl-3.0", "other")


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclasses.dataclass
class Blob:
    """A file in a commit: `content` for a regular file, `lfs_oid` (its sha256) for an LFS one."""

    size: int
    content: bytes | None = None
    lfs_oid: str | None = None

    @property
    def oid(self) -> str:
        """What the preupload endpoint reports: sha256 for LFS, the git blob sha1 otherwise."""
        return self.lfs_oid if self.lfs_oid else git_blob_sha1(self.content)


@dataclasses.dataclass
class Repo:
    private: bool | None
    commits: list = dataclasses.field(default_factory=list)  # [(oid, {path: Blob}, summary)]

    def tree(self, revision):
        for oid, files, _ in reversed(self.commits):
            if revision in ("main", oid):
                return oid, files
        return None, None


@dataclasses.dataclass
class Request:
    """One request as the server received it."""

    method: str
    path: str
    query: dict
    headers: dict  # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body)

    def ndjson(self):
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


class _HubError(Exception):
    def __init__(self, status, message, code=None, commit=None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.extra = status, message, code, commit, extra


class FakeHub:
    """The server: `with FakeHub(tokens={"hf_x"}) as hub:` ... `hub.url`, `hub.requests`, `hub.repos`."""

    def __init__(self, tokens=("hf_test_token",)):
        self.tokens = set(tokens)
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self._announced: set[str] = set()
        self._lock = threading.Lock()
        self._commits = 0
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self):
                split = urllib.parse.urlsplit(self.path)
                request = Request(self.command, urllib.parse.unquote(split.path),
                                  dict(urllib.parse.parse_qsl(split.query)),
                                  {k.lower(): v for k, v in self.headers.items()}, self._body())
                with hub._lock:
                    hub.requests.append(request)
                    try:
                        status, headers, body = hub._route(request)
                    except _HubError as error:
                        headers = {"X-Error-Message": error.message}
                        if error.code:
                            headers["X-Error-Code"] = error.code
                        if error.commit:
                            headers["X-Repo-Commit"] = error.commit
                        status, body = error.status, {"error": error.message, **error.extra}
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                length = headers.pop("_length", len(body))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, str(value))
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    # ---- helpers for tests ---------------------------------------------------------------------------

    def calls(self, method, pattern):
        """The recorded requests with this method whose path matches the regex `pattern`."""
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    def file(self, repo_id, path, revision="main") -> bytes:
        """The content of a file in a repository (LFS files resolved)."""
        _, files = self.repos[repo_id].tree(revision)
        blob = files[path]
        return self.lfs[blob.lfs_oid] if blob.lfs_oid else blob.content

    # ---- routing ------------------------------------------------------------------------------------

    def _route(self, r: Request):
        repo = r"([^/]+/[^/]+)"
        routes = [
            ("POST", r"/api/repos/create", self._create),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("POST", rf"/api/models/{repo}/preupload/([^/]+)", self._preupload),
            ("POST", rf"/api/models/{repo}/commit/([^/]+)", self._commit),
            ("GET", rf"/api/models/{repo}/tree/([^/]+)(?:/(.+))?", self._tree),
            ("GET", rf"/api/models/{repo}(?:/revision/([^/]+))?", self._info),
            ("POST", rf"/{repo}\.git/info/lfs/objects/batch", self._lfs_batch),
            ("POST", rf"/{repo}\.git/info/lfs/objects/verify", self._lfs_verify),
            ("PUT", r"/lfs-upload/([0-9a-f]{64})", self._lfs_put),
            ("HEAD", rf"/{repo}/resolve/([^/]+)/(.+)", self._resolve),
            ("GET", rf"/{repo}/resolve/([^/]+)/(.+)", self._resolve),
        ]
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, r.path)
            if method == r.method and match:
                return handler(r, *match.groups())
        raise _HubError(404, f"no route for {r.method} {r.path}")

    def _authorize(self, r):
        token = r.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id) -> Repo:
        if repo_id not in self.repos:
            raise _HubError(404, "Repository not found", code="RepoNotFound")
        return self.repos[repo_id]

    def _tree_of(self, repo_id, revision):
        oid, files = self._repo(repo_id).tree(revision)
        if oid is None:
            raise _HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return oid, files

    def _new_commit(self, repo: Repo, files, summary):
        self._commits += 1
        oid = hashlib.sha1(f"{self._commits}:{summary}".encode()).hexdigest()
        repo.commits.append((oid, files, summary))
        return oid

    def _lfs_patterns(self, files):
        attributes = files.get(".gitattributes")
        text = attributes.content.decode() if attributes is not None and attributes.content else ""
        return [line.split()[0] for line in text.splitlines() if "filter=lfs" in line]

    def _needs_lfs(self, files, path, sample: bytes, size: int) -> bool:
        name = path.rsplit("/", 1)[-1]
        by_pattern = any(fnmatch.fnmatch(path if "/" in pattern else name, pattern)
                         for pattern in self._lfs_patterns(files))
        return by_pattern or b"\0" in sample or size > REGULAR_MAX_BYTES

    # ---- endpoints ----------------------------------------------------------------------------------

    def _create(self, r):
        self._authorize(r)
        payload = r.json()
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.repos:
            raise _HubError(409, "You already created this model repo", url=f"{self.url}/{repo_id}")
        repo = self.repos[repo_id] = Repo(private=payload.get("visibility") == "private" or None)
        attributes = DEFAULT_GITATTRIBUTES.encode()
        self._new_commit(repo, {".gitattributes": Blob(len(attributes), content=attributes)}, "initial commit")
        return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def _validate_yaml(self, r):
        content = r.json()["content"]
        errors = []
        match = re.match(r"---\n(.*?)\n---\n", content, flags=re.DOTALL)
        try:
            data = yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError as error:
            data, errors = None, [f"invalid YAML: {error}"]
        if not isinstance(data, dict):
            errors = errors or ["README.md has no YAML metadata mapping"]
        else:
            if data.get("license") not in KNOWN_LICENSES:
                errors.append(f"\"license\" must be one of {KNOWN_LICENSES}")
            if data.get("license") == "other" and not data.get("license_name"):
                errors.append("license: other needs license_name")
            for entry in data.get("model-index") or []:
                for result in entry.get("results") or []:
                    if not result.get("task", {}).get("type") or not all(
                            result.get("dataset", {}).get(key) for key in ("name", "type")):
                        errors.append("model-index results need task.type, dataset.name and dataset.type")
                    for metric in result.get("metrics") or []:
                        if not metric.get("type") or not isinstance(metric.get("value"), (int, float)):
                            errors.append(f"model-index metric needs a type and a numeric value: {metric}")
        body = {"errors": [{"message": message} for message in errors], "warnings": []}
        return (400 if errors else 200), {}, body

    def _preupload(self, r, repo_id, revision):
        self._authorize(r)
        _, files = self._tree_of(repo_id, revision)
        result = []
        for entry in r.json()["files"]:
            path, size = entry["path"], entry["size"]
            lfs = self._needs_lfs(files, path, base64.b64decode(entry["sample"]), size)
            existing = files.get(path)
            result.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                           "oid": existing.oid if existing is not None else None})
        return 200, {}, {"files": result, "commitOid": self._tree_of(repo_id, revision)[0]}

    def _lfs_batch(self, r, repo_id):
        self._authorize(r)
        self._repo(repo_id)
        payload = r.json()
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", []):
            raise _HubError(400, "this server offers the basic upload transfer only")
        objects = []
        for item in payload["objects"]:
            oid, size = item["oid"], item["size"]
            entry = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.lfs:
                self._announced.add(oid)
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-upload/{oid}", "header": {}},
                    "verify": {"href": f"{self.url}/{repo_id}.git/info/lfs/objects/verify", "header": {}}}
            objects.append(entry)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, {"transfer": "basic", "objects": objects}

    def _lfs_put(self, r, oid):
        if oid not in self._announced:
            raise _HubError(403, "upload not announced through the batch endpoint")
        if hashlib.sha256(r.body).hexdigest() != oid:
            raise _HubError(400, "content does not match its oid")
        self.lfs[oid] = r.body
        return 200, {"ETag": '"%s"' % oid[:32]}, b""

    def _lfs_verify(self, r, repo_id):
        self._authorize(r)
        payload = r.json()
        if len(self.lfs.get(payload["oid"], b"")) != payload["size"] or payload["oid"] not in self.lfs:
            raise _HubError(404, "object not found")
        return 200, {}, {"message": "ok"}

    def _commit(self, r, repo_id, revision):
        self._authorize(r)
        repo = self._repo(repo_id)
        _, files = self._tree_of(repo_id, revision)
        lines = r.ndjson()
        if not lines or lines[0].get("key") != "header" or not lines[0]["value"].get("summary"):
            raise _HubError(400, "a commit starts with its header and summary")
        files = dict(files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                content = base64.b64decode(value["content"])
                if self._needs_lfs(files, value["path"], content[:512], len(content)):
                    raise _HubError(400, f"{value['path']}: binary or LFS-tracked files must be uploaded with LFS")
                files[value["path"]] = Blob(len(content), content=content)
            elif key == "lfsFile":
                stored = self.lfs.get(value["oid"])
                if stored is None or len(stored) != value.get("size", len(stored)):
                    raise _HubError(422, f"{value['path']}: LFS object {value['oid']} was not uploaded")
                files[value["path"]] = Blob(len(stored), lfs_oid=value["oid"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise _HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
            elif key == "deletedFolder":
                files = {p: b for p, b in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise _HubError(400, f"unknown commit operation {key!r}")
        oid = self._new_commit(repo, files, lines[0]["value"]["summary"])
        return 200, {}, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True}

    def _info(self, r, repo_id, revision=None):
        oid, files = self._tree_of(repo_id, revision or "main")
        return 200, {}, {"id": repo_id, "modelId": repo_id, "sha": oid, "private": bool(self.repos[repo_id].private),
                         "siblings": [{"rfilename": path} for path in sorted(files)], "tags": []}

    def _tree(self, r, repo_id, revision, folder=None):
        _, files = self._tree_of(repo_id, revision)
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        recursive = r.query.get("recursive", "False").lower() == "true"
        entries, folders = [], set()
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folders.add(prefix + "/".join(parts[:depth]))
            if len(parts) > 1 and not recursive:
                continue
            blob = files[path]
            entry = {"type": "file", "path": path, "size": blob.size}
            if blob.lfs_oid:
                pointer = lfs_pointer(blob.lfs_oid, blob.size)
                entry.update(oid=git_blob_sha1(pointer),
                             lfs={"oid": blob.lfs_oid, "size": blob.size, "pointerSize": len(pointer)})
            else:
                entry["oid"] = git_blob_sha1(blob.content)
            entries.append(entry)
        entries += [{"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0}
                    for path in sorted(folders)]
        return 200, {}, entries

    def _resolve(self, r, repo_id, revision, path):
        commit, files = self._tree_of(repo_id, revision)
        blob = files.get(path)
        if blob is None:
            raise _HubError(404, "Entry not found", code="EntryNotFound", commit=commit)
        headers = {"X-Repo-Commit": commit, "Content-Type": "application/octet-stream"}
        if blob.lfs_oid:
            pointer = lfs_pointer(blob.lfs_oid, blob.size)
            headers.update({"ETag": f'"{git_blob_sha1(pointer)}"', "X-Linked-Etag": f'"{blob.lfs_oid}"',
                            "X-Linked-Size": blob.size})
            content = self.lfs[blob.lfs_oid]
        else:
            headers["ETag"] = f'"{git_blob_sha1(blob.content)}"'
            content = blob.content
        if r.method == "HEAD":
            headers["_length"] = len(content)
            return 200, headers, b""
        return 200, headers, content
