"""``snowg.rpc.call(node, fn, *args)``: run a ``@spawnable`` function on another node and get its value.

The implementation is the cluster layer's (:mod:`snowg.cluster.rpc`); this
module is where users import it from (``import snowg.rpc``).
"""

from .cluster.rpc import call

__all__ = ["call"]
