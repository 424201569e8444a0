"""History and audit (issue 21 part 4): a local, bounded, queryable index of what happened.

The membership-changes topic already is the durable history of every membership, and the
catalog log the audit trail of every command; this package indexes both into one RocksDB per
worker, kept within a retention (age and changes per user), and answers the history, audit and
explain-as-of reads from it. Pure: a store is anything with ``get``, ``keys``/``items``
(``from_key``, ``backwards``); the edge that consumes the topics is processor/history_reader.py.

    keys      the key spaces and their byte layout
    records   stored values (MessagePack arrays)
    overlay   a batch of writes readable before it is committed
    writer    ingest a change or a catalog entry; retention sweeps
    reads     the queries (user, segment, series, audit, as-of)
    summary   a command's payload in one line
    settings  HISTORY_* environment variables
"""
