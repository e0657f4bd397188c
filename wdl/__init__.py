"""WDL front-end (see issue: flow-wdl). Not implemented yet."""
