"""Tables and figures of the study report."""
