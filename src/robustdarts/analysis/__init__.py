"""Analysis of a search: dominant Hessian eigenvalue, sparsity/leakage metrics, selective stop.

Modules are imported on their own (``from robustdarts.analysis.selective_stop import selective_stop_epoch``), so
this package pulls in nothing on import.
"""
