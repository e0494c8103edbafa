"""Deploy: optimal placement across cloud and edge nodes, packages, profiles and
Kubernetes/KServe manifests.

Modules are imported on use; the solver needs the ``deploy`` extra (OR-Tools).
"""
