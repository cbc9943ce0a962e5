"""``wallboard ingest-queue-log``: feed an Asterisk queue_log file (``--follow``: as it grows) to a server."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from server.core.auth import mint
from server.core.config import Settings
from server.core.embedded import signing_secret
from server.core.errors import WallboardError
from server.tools.queue_log_follow import IngestError, ingest_file


def cmd_ingest_queue_log(args: argparse.Namespace) -> int:
    """Post a queue_log file's events; 0 when all went in, 1 when lines were refused, 2 on bad config.

    Without ``--token`` (or ``$WALLBOARD_TOKEN``) an ingest token is minted here from the
    configured signing secret or private key. Such a token is re-minted when the server
    answers 401 (it expired during a long ``--follow``); a given token is used as it is.
    Ctrl-C stops at once: the offset of every batch the server answered is already saved,
    and a batch in flight is sent again next time (the server counts it as duplicates).
    """
    settings = Settings.from_env()
    url = args.url or f"http://127.0.0.1:{settings.port}"
    # A client credential, not server configuration: read here rather than into Settings.
    given = args.token or os.environ.get("WALLBOARD_TOKEN") or None

    def new_token() -> str:
        signer = settings
        if signer.jwt_secret is None and signer.jwt_public_key is None:
            signer = signer.replace(jwt_secret=signing_secret(signer.data_dir))
        elif signer.jwt_public_key is not None and signer.jwt_private_key is None:
            raise WallboardError(
                "WALLBOARD_JWT_PUBLIC_KEY is set (RS256/ES256) but WALLBOARD_JWT_PRIVATE_KEY is not: "
                "set it to the PEM private key, or pass an ingest token with --token or $WALLBOARD_TOKEN"
            )
        return mint(signer, tenant=args.tenant, role="ingest", sub="queue-log", ttl_s=24 * 3600)

    try:
        token = given or new_token()
    except ValueError as exc:  # an ill-formed tenant
        print(f"wallboard: error: {exc}", file=sys.stderr)
        return 2
    totals = dict.fromkeys(("lines", "events", "accepted", "duplicates", "rejected", "errors"), 0)
    try:
        while True:
            try:
                summary = asyncio.run(ingest_file(args.file, url, token, follow=args.follow,
                                                  state_path=args.state_file, batch_size=args.batch,
                                                  progress=sys.stderr.isatty()))
            except IngestError as exc:
                if given or not isinstance(exc.details, dict) or exc.details.get("status") != 401:
                    raise
                token = new_token()  # resumes at the committed offset with a fresh token
                continue
            for key in totals:
                totals[key] += summary.get(key, 0)
            break
    except FileNotFoundError as exc:
        print(f"wallboard: error: {exc.filename or args.file}: no such file", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stopped; the next run resumes at the saved offset ({args.state_file or args.file + '.offset.json'})",
              file=sys.stderr)
        return 130
    print(f"{args.file}: {totals['lines']} lines read, {totals['events']} events sent: "
          f"{totals['accepted']} accepted, {totals['duplicates']} duplicates, {totals['rejected']} rejected; "
          f"{totals['errors']} unparseable lines")
    return 1 if totals["rejected"] or totals["errors"] else 0
