"""Conditional writes on S3 for the lake's lock: create only if absent, replace or delete only if
unchanged.

pyarrow's S3 filesystem cannot send `If-None-Match` or `If-Match`, so the lock object alone goes
through botocore (the optional extra `driftline[s3]`, imported only here, only for an s3:// lake):

- create: `PUT` with `If-None-Match: *`; S3 stores the object only if the key does not exist, so
  of two runs that create at the same moment exactly one gets 200 and the other 412;
- take over a stale lock: `PUT` with `If-Match: <the ETag of the stale lock as read>`; of two runs
  that judged the same lock stale exactly one replaces it, the other gets 412 and looks again;
- release: `DELETE` with `If-Match: <our ETag>`, so a run never deletes a lock that another run
  took over from it.

The endpoint, scheme, region, CA file and keys are those pyarrow opened the lake with, from its
URI (`s3://[KEY:SECRET@]bucket/prefix?endpoint_override=host:port&scheme=http&region=...`), else
botocore's usual chain (the AWS environment variables, `~/.aws`, an instance role), as pyarrow's
S3 does.

Amazon S3 honours all three conditions (writes since 2024, deletes on general purpose buckets
since 2025); other S3-compatible stores may ignore them (the write just happens) or refuse them.
`conditional_store` finds out once per process and bucket with a probe object
(`<lock dir>/.probe-<random>`, removed after) and returns None with the reason when a conditional
PUT is not honoured; the lock then falls back to best effort and says so (data_lake/lock.py). A
store that honours the PUTs but not a conditional DELETE keeps the conditional lock and releases
it by read, compare, delete.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow.fs as pafs

from data_lake.storage import Storage

INSTALL_HINT = "pip install 'driftline[s3]'"


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the ETag they were read under (one GET: they belong together)."""

    payload: bytes
    etag: str
    modified: datetime | None


class ConditionalStore:
    """Create-if-absent, replace-if-unchanged and delete-if-unchanged of one bucket's objects,
    addressed like pyarrow's paths (`bucket/key`)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket
        # a store may honour If-Match on PUT but not on DELETE; `probe` finds out
        self.deletes_conditionally = True
        from botocore.exceptions import BotoCoreError, ClientError

        self._client_error, self._botocore_error = ClientError, BotoCoreError

    def _key(self, path: str) -> str:
        bucket, _, key = path.partition("/")
        if bucket != self.bucket:
            raise ValueError(f"{path} is not in bucket {self.bucket}")
        return key

    def _call(
        self,
        operation: str,
        path: str,
        *,
        answers: tuple[int, ...] = (404, 409, 412),
        **kwargs: Any,
    ) -> tuple[int, dict[str, Any]]:
        """Run one request: (200, response), or (status, error) for a refusal whose status is in
        `answers` (412 the condition does not hold, 409 another conditional write of the key is
        in flight, 404 no such key). Anything else (403, no such bucket, 5xx, no connection) is
        an OSError naming the object: the run fails with it as with any storage outage."""
        try:
            response = getattr(self.client, operation)(
                Bucket=self.bucket, Key=self._key(path), **kwargs
            )
        except self._client_error as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = exc.response.get("Error", {}).get("Code")
            if status in answers and code != "NoSuchBucket":  # a missing bucket is no answer
                return status, {"Error": exc.response.get("Error", {})}
            raise OSError(f"S3 {operation} of s3://{path}: {exc}") from exc
        except self._botocore_error as exc:
            raise OSError(f"S3 {operation} of s3://{path}: {exc}") from exc
        return 200, response

    def create(self, path: str, payload: bytes) -> str | None:
        """Write `path` only if no object has that key; its ETag, or None when one exists."""
        status, response = self._call(
            "put_object", path, answers=(409, 412), Body=payload, IfNoneMatch="*"
        )
        return str(response["ETag"]) if status == 200 else None

    def replace(self, path: str, payload: bytes, etag: str) -> str | None:
        """Overwrite `path` only while it is still the object read under `etag`."""
        status, response = self._call("put_object", path, Body=payload, IfMatch=etag)
        return str(response["ETag"]) if status == 200 else None

    def delete(self, path: str, etag: str) -> bool:
        """Delete `path` only while it is still the object written under `etag`.

        On a store without conditional deletes: read, compare, delete. Another run can replace
        the lock between the read and the delete only if it judged ours stale, i.e. after a run
        held it beyond DRIFTLINE_LOCK_STALE_SECONDS (docs/reliability.md, "The lock, and its
        limits")."""
        if self.deletes_conditionally:
            status, _ = self._call("delete_object", path, IfMatch=etag)
            return status == 200
        current = self.read(path)
        if current is None or current.etag != etag:
            return False
        self._call("delete_object", path)
        return True

    def read(self, path: str) -> Versioned | None:
        status, response = self._call("get_object", path)
        if status != 200:
            return None
        with response["Body"] as body:
            payload = body.read()
        return Versioned(payload, str(response["ETag"]), response.get("LastModified"))

    def probe(self, directory: str) -> str | None:
        """None when the store honours the conditional PUTs, else what it did instead; notes
        whether it honours `If-Match` on DELETE as well (the lock's release).

        A store that cannot be reached raises OSError (nothing is concluded from that)."""
        path = f"{directory}/.probe-{uuid.uuid4().hex}"
        other_etag = '"0123456789abcdef0123456789abcdef"'
        refused = (400, 405, 409, 412, 501)  # 403 (no access) or 404 (no bucket): OSError
        checks = (
            ("a PUT with If-None-Match: * of a new key", "put_object",
             {"Body": b"probe", "IfNoneMatch": "*"}, 200),
            ("a PUT with If-None-Match: * over an existing object", "put_object",
             {"Body": b"again", "IfNoneMatch": "*"}, 412),
            ("a PUT with If-Match: <another ETag>", "put_object",
             {"Body": b"again", "IfMatch": other_etag}, 412),
        )  # fmt: skip
        try:
            for what, operation, kwargs, expected in checks:
                status, _ = self._call(operation, path, answers=refused, **kwargs)
                if status != expected:
                    did = "was carried out" if status == 200 else f"was refused (HTTP {status})"
                    return f"{what} {did}, where S3 answers {expected}"
            status, _ = self._call("delete_object", path, answers=refused, IfMatch=other_etag)
            self.deletes_conditionally = status == 412
            return None
        finally:
            with contextlib.suppress(OSError):  # a probe left behind is hidden and harmless
                self._call("delete_object", path)


@dataclass(frozen=True)
class _S3Options:
    endpoint_url: str | None
    region: str | None
    addressing: str
    access_key: str | None
    secret_key: str | None
    session_token: str | None
    anonymous: bool
    ca_file: str | None


def _options(fs: pafs.S3FileSystem) -> _S3Options:
    """The options pyarrow's S3 filesystem was opened with (from the URI's query and userinfo,
    `s3://KEY:SECRET@bucket/prefix?endpoint_override=...&scheme=...&region=...`), for botocore;
    pyarrow hands them out to pickle the filesystem."""
    opened: dict[str, Any] = fs.__reduce__()[1][0]
    endpoint = opened.get("endpoint_override") or None
    if endpoint and "://" not in endpoint:
        endpoint = f"{opened.get('scheme') or 'https'}://{endpoint}"
    return _S3Options(
        endpoint_url=endpoint,
        region=opened.get("region") or fs.region or None,
        # pyarrow addresses buckets by path unless told otherwise; do the same
        addressing="virtual"
        if opened.get("force_virtual_addressing")
        else ("path" if endpoint else "auto"),
        access_key=opened.get("access_key") or None,
        secret_key=opened.get("secret_key") or None,
        session_token=opened.get("session_token") or None,
        anonymous=bool(opened.get("anonymous")),
        ca_file=opened.get("tls_ca_file_path") or None,
    )


def _client(options: _S3Options) -> Any:
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": options.addressing},
        # S3-compatible stores that do not know the newer default checksums still take these
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        signature_version=UNSIGNED if options.anonymous else None,
    )
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=options.endpoint_url,
        region_name=options.region,
        aws_access_key_id=options.access_key,
        aws_secret_access_key=options.secret_key,
        aws_session_token=options.session_token,
        verify=options.ca_file,
        config=config,
    )


_probed: dict[tuple[str | None, str], tuple[ConditionalStore | None, str | None]] = {}
_probing = threading.Lock()


def conditional_store(
    storage: Storage, lock_dir: str
) -> tuple[ConditionalStore | None, str | None]:
    """The conditional store of an s3:// storage, or None and why the lock cannot have one.

    Local and other filesystems get (None, None): they have their own mechanism or none.
    """
    if not isinstance(storage.fs, pafs.S3FileSystem):
        return None, None
    try:
        import botocore  # noqa: F401
    except ImportError:
        return None, f"botocore is not installed ({INSTALL_HINT} adds it)"
    options = _options(storage.fs)
    bucket = lock_dir.partition("/")[0]
    with _probing:
        key = (options.endpoint_url, bucket)
        if key not in _probed:
            store = ConditionalStore(_client(options), bucket)
            why_not = store.probe(lock_dir)
            where = options.endpoint_url or "Amazon S3"
            _probed[key] = (
                (store, None)
                if why_not is None
                else (None, f"the store at {where} does not honour conditional writes: {why_not}")
            )
        return _probed[key]
