"""Test support, kept out of the runtime package: the cluster harness (``harness``), the
correctness oracle and workload generator (``oracle``), doubles of external systems that cannot
run here (``moodle_double``), and the rebuild's process doubles (``rebuild_doubles``)."""
