"""WDL front-end: ``flow-wdl workflow.wdl inputs.json`` runs WDL on flow's core engine, with
miniwdl doing the WDL work (see :mod:`flow.wdl.adapter`)."""
