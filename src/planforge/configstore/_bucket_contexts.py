"""The context each bucket is planned with by a batch (`planforge batch --buckets`).

A bucket's configuration has a history; its context is a snapshot of the portfolio it
plans (positions change every day), so it is replaced, not versioned: the audit trail keeps
who set which digest when. Contexts are stored as the runs table stores them (zlib of the
canonical JSON, with its sha256), under the same size bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select

from planforge.configstore._audit import write_audit
from planforge.configstore._inputs import check_text, findable, now
from planforge.configstore._models import NAME_LENGTH, BucketContextRow
from planforge.configstore._run_records import decode_context, encode_context
from planforge.configstore.errors import RunContextTooLarge

if TYPE_CHECKING:
    from planforge.configstore._sessions import Sessions

__all__ = ["BucketContexts"]

B = BucketContextRow


class BucketContexts:
    def __init__(self, sessions: Sessions, max_bytes: int, limit_name: str) -> None:
        self._sessions = sessions
        self._max_bytes = max_bytes
        self._limit_name = limit_name

    def set(self, bucket: str, context: dict[str, Any], set_by: str) -> str:
        """Store `context` as `bucket`'s (replacing the one before); its digest."""
        check_text("bucket", bucket, NAME_LENGTH)
        check_text("set_by", set_by, NAME_LENGTH)
        blob, digest = encode_context(context)
        if len(blob) > self._max_bytes:
            raise RunContextTooLarge(len(blob), self._max_bytes, self._limit_name)
        row = {
            "bucket": bucket,
            "context_digest": digest,
            "context": blob,
            "updated_at": now(),
            "updated_by": set_by,
        }
        with self._sessions.writing("store a bucket's context") as connection:
            connection.execute(delete(B).where(B.bucket == bucket))
            connection.execute(insert(B).values(**row))
            detail = {"context_digest": digest, "bytes": len(blob)}
            write_audit(connection, set_by, "bucket.context", "bucket", bucket, detail)
        return digest

    def get(self, bucket: str) -> dict[str, Any] | None:
        """`bucket`'s stored context, or None when it has none."""
        if not findable(bucket):
            return None
        with self._sessions.reading("read a bucket's context") as connection:
            blob = connection.execute(select(B.context).where(B.bucket == bucket)).scalar()
        return None if blob is None else decode_context(blob)
