"""What this owner has processed, and the re-emission of a state that is ahead of it.

After a crash the stored state (local store or changelog) can hold changes of messages past the
owner's committed offsets, whose output never left. Their own replay re-emits them
(``REPLAYED``), but a message of the *other* input topic (a backfill order or a timer tick on
the control topic, or a user event) may reach the user first and supersede them. So before a
handler applies a message to a stored user, :meth:`Replay.reconfirm` re-emits the user's
recorded changes (identical bytes) once per assignment if the state is ahead of what this
owner processed (``processor.membership.engine.ahead_of``). docs/operations.md, "Delivery
guarantees".

Such a state may exist only in this worker's local store (restarted on its state directory
after kill -9: the store is written before its changelog record leaves), so the re-emission
writes the state again first: the changelog holds every fact before its change leaves.
"""

from __future__ import annotations

from typing import Callable

from processor.handlers.ports import Changes, InputRecord, Partition, Stats
from processor.membership.engine import ahead_of, current_changes
from processor.state.user_state import UserState, encode_state

Committed = Callable[[str, int], "int | None"]  # (topic, partition) -> committed offset


def unprocessed(highwater: int, done: int) -> int:
    """Records of a partition this worker has not processed: its high watermark (the next offset
    to be written) minus the next offset to process (``done``: the last one processed, or the
    committed offset - 1 before the first). Read from what the handlers finished, not from the
    consumer's position, so a partition whose records were fetched but never processed (assigned
    but not consuming) shows lag, and the SegmentConsumerStalled alert fires."""
    return max(0, highwater - (done + 1))


class Replay:
    """Per assignment: the highest offset processed per (topic, partition), and the users whose
    recorded changes were re-emitted."""

    def __init__(self, user_events_topic: str, control_topic: str, changes: Changes, stats: Stats,
                 committed: Committed = lambda topic, partition: None) -> None:
        self.user_events_topic = user_events_topic
        self.control_topic = control_topic
        self.changes = changes
        self.stats = stats
        self._committed = committed
        self._done: dict[tuple[str, int], int] = {}
        self._reconfirmed: set[bytes] = set()

    def reset(self) -> None:
        """A new assignment: processed offsets and re-emitted users start over."""
        self._done.clear()
        self._reconfirmed.clear()

    def processed(self, msg: InputRecord) -> None:
        self._done[(msg.topic, msg.partition)] = msg.offset

    def done_offset(self, topic: str, partition: int) -> int:
        """Highest offset of ``topic[partition]`` processed (committed - 1 before the first)."""
        done = self._done.get((topic, partition))
        if done is not None:
            return done
        committed = self._committed(topic, partition)
        return committed - 1 if committed else -1

    def positions(self, partition: int) -> tuple[int, int]:
        """(user events done, control done) on ``partition``."""
        return self.done_offset(self.user_events_topic, partition), self.done_offset(self.control_topic, partition)

    async def reconfirm(self, part: Partition, key: bytes, st: UserState, msg: InputRecord,
                        positions: tuple[int, int] | None = None) -> None:
        """Re-emit a user's recorded changes once if its state is ahead of what this owner processed.

        Runs before ``msg`` may supersede those changes, with ``st`` as stored in ``part``, which it
        writes again first (it may be a local write whose changelog record never left; the message
        may write nothing for this user). The message itself counts as processed: a replayed user
        event only re-issues its own changes, and a control message that already changed this user
        is a re-run. ``positions``: fixed for a message that visits many users (a backfill), else
        read now.
        """
        if key in self._reconfirmed:
            return
        user_done, control_done = positions if positions is not None else self.positions(msg.partition)
        if msg.topic == self.user_events_topic:
            if msg.offset <= st.last_offset:
                return  # REPLAYED or an old duplicate: nothing is superseded
            user_done = max(user_done, msg.offset)
        else:
            control_done = max(control_done, msg.offset)
        if not ahead_of(st, user_done, control_done):
            return
        self._reconfirmed.add(key)
        again = current_changes(st)
        self.stats.count("changes.reconfirmed", len(again))
        if again:
            await part.put(key, encode_state(st))  # durable before the changes can leave
        for change in again:
            self.changes.queue(change, key)
