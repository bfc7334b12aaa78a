"""Pattern sessions (seeds 001/004): the Keyboardia-compatible sharing API, remix lineage and
live co-editing of a step-sequencer pattern."""
