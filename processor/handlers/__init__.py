"""What the worker does with each consumed message, without Faust or Kafka.

Each handler takes the users table (``ports.Table``), the outbox (``ports.Changes``) and the
catalog view (``ports.CatalogView``); the worker (processor/runtime/app.py) wires the Kafka-backed
ones, the unit tests (tests/unit/handlers) in-memory ones:

* :mod:`user_events` - a user event folded into the user's state;
* :mod:`backfill` - a command's re-evaluation of one site's stored users on one partition;
* :mod:`timers` - time-relative re-evaluations (ticks);
* :mod:`commands` - an automation command decided, logged and fanned out;
* :mod:`guard` - the dead-lettering policy around all of them;
* :mod:`replay` - the re-emission rules after a crash (shared by the first three);
* :mod:`users` - the users agent's dispatch (user events and control messages).
"""
