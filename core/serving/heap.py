"""Keep the garbage collector's full passes off the request path.

A serving process holds hundreds of thousands of long-lived objects once TensorFlow or torch and
a model are loaded (hundreds of thousands with TensorFlow and torchvision imported). Every full
collection walks all of them, and a request that allocates many containers, such as a JSON body
of an image (one list per row and pixel), sets off such passes every few requests, so the parse's
tail latency grows several-fold (the README's request breakdown has the numbers). After models
load, :func:`settle_heap`
moves everything alive into the collector's permanent generation, so later passes walk only what
requests allocate.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def settle_heap() -> int:
    """Collect what is garbage now, then freeze every live object out of later collections.

    Call it after a set of models has loaded or unloaded (not per request). Objects frozen
    before are unfrozen first, so what an unload left unreachable is collected, not kept.
    Returns how many objects are frozen.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.debug("heap settled: %d objects out of the collector's passes", frozen)
    return frozen
