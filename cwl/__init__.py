"""CWL front-end (see issue: flow-cwl). Not implemented yet."""
