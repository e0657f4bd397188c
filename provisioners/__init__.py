"""Machines for a workflow: node shapes, the provisioner contract, the planner, the cluster
scaler and a simulated cluster in virtual time.

The core reaches this package only through :mod:`flow.provisioners.contract` and
:mod:`flow.provisioners.registry`; batch systems and job stores never import it.
"""
