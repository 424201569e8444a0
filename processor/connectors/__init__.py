"""Edges that connect the processor to a particular external system (an LMS).

A *connector* speaks one system's own interfaces on one side and only the processor's public
contract (its topics and its HTTP API) on the other, so it can run anywhere, be replaced, and
never reaches into the processor's state. ``processor.connectors.moodle`` is the Moodle one.
"""
