"""The Moodle connector: user changes in, cohort memberships out, drift found and repaired.

Named ``connectors/moodle`` because it is the edge between the processor and one external
system, Moodle, and talks to Moodle only through its documented REST web services
(``/webservice/rest/server.php``) and to the processor only through its public contract
(the membership-changes topic, the ingest endpoint and the admin API). Another LMS would be a
sibling package.

Modules:

* ``ws``: the web-service client (request encoding, Moodle's error semantics, retries).
* ``mapping``: which cohort a segment is and which Moodle user a user id is.
* ``cohorts``: applies membership assertions to cohorts (batched, cached id resolution,
  split-and-retry on whole-batch failures); shared by ``sync`` and ``reconcile --repair``.
* ``sync``: the long-running consumer of membership changes (``moodle sync``).
* ``profiles``: Moodle user records -> our profile format; custom field definitions.
* ``importer``: ``moodle import`` and ``moodle resync``.
* ``reconcile``: ``moodle reconcile``.
* ``processor_api``: the processor's HTTP API as the connector uses it.
* ``cli``: the ``python -m processor moodle ...`` command group.
"""
